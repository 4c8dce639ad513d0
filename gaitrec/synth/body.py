"""Who walks and how: the parameters of SynthGait's subjects and of each of their walks.

Identity lives in a ``Subject`` (body proportions, girth, gait style, asymmetries, the coat they wear and
the bags they prefer), drawn once per subject. A ``Walk`` is one recording of that subject under one
condition: the same body with a slightly different speed, phase, start and posture, plus the condition's
covariate (a bag or a coat). All views of one walk share it, as CASIA-B's 11 cameras film one walk at once.

Proportions follow the usual anthropometric fractions of stature (e.g. hip height 0.53, knee 0.285,
shoulder 0.818). Each subject perturbs them by a few per cent, so two subjects of similar build and gait
are genuinely hard to tell apart from shape alone.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

TYPES = ("nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "nm-06", "bg-01", "bg-02", "cl-01", "cl-02")
VIEWS = tuple(f"{angle:03d}" for angle in range(0, 181, 18))
FPS = 25.0  # CASIA-B's frame rate
BAG_KINDS = ("backpack", "shoulder", "hand")


@dataclass(frozen=True)
class Subject:
    """One person: lengths in metres, angles in degrees, cadence in gait cycles per second."""

    height: float
    thigh: float
    shank: float
    ankle_height: float
    foot: float
    trunk: float            # hip joints to the shoulder line
    head_offset: float      # shoulder line to the head centre
    head_height: float
    head_width: float
    head_depth: float
    upper_arm: float
    forearm: float          # elbow to the tip of the relaxed hand
    shoulder_width: float   # between the shoulder joints
    hip_width: float        # between the hip joints
    waist_width: float
    chest_depth: float
    waist_depth: float
    belly: float            # forward shift of the waist: a heavier build carries it in front
    thigh_radius: float
    knee_radius: float
    ankle_radius: float
    upper_arm_radius: float
    forearm_radius: float
    neck_radius: float
    foot_radius: float
    # gait style
    cadence: float
    stride: float           # metres per gait cycle (two steps)
    hip_mean: float         # mean hip flexion
    knee_stance: float      # knee flexion peak after heel strike
    knee_swing: float       # knee flexion peak in swing (the knee lift)
    ankle_scale: float
    arm_swing: float        # shoulder flexion amplitude
    arm_mean: float
    elbow: float            # resting elbow flexion
    elbow_gain: float       # extra elbow flexion per degree of forward arm swing
    arm_abduction: float
    lean: float             # forward trunk lean
    head_lean: float        # extra forward tilt of the neck
    pelvis_rotation: float
    pelvis_obliquity: float
    sway: float             # lateral sway of the body, metres
    toe_out: float
    # asymmetries (right side minus left side, relative or absolute)
    step_asymmetry: float
    arm_asymmetry: float
    knee_asymmetry: float
    phase_asymmetry: float  # the left leg's lag from half a cycle, in cycles
    shoulder_drop: float    # right shoulder lower by this much, metres
    # covariates
    coat_length: float      # the coat's hem, in thigh lengths below the hip (above 1: below the knee)
    coat_looseness: float
    bag_preference: tuple[float, float, float]  # probabilities of BAG_KINDS
    bag_side: int           # -1 right, +1 left: the side the subject carries a bag on


@dataclass(frozen=True)
class Walk:
    """One recorded walk (one type) of a subject; shared by all its views."""

    subject: Subject        # the body and gait of this walk (identity plus per-walk jitter)
    phase: float            # gait phase at the first frame, in cycles
    start: float            # position along the path at the middle frame, metres
    coat: bool
    bag: str | None         # one of BAG_KINDS
    bag_side: int
    bag_size: float         # scale of the bag around its kind's typical size
    bag_swing: float        # pendulum amplitude of a hanging bag, degrees
    bag_swing_phase: float


def _normal(rng: np.random.Generator, mean: float, sd: float, low: float, high: float) -> float:
    return float(np.clip(rng.normal(mean, sd), low, high))


def sample_subject(rng: np.random.Generator) -> Subject:
    """Draw one person. ``masculinity`` and ``build`` are latent traits that move several
    measurements together (shoulders against hips, girth with belly), as in real populations."""
    masculinity = float(rng.beta(0.7, 0.7))  # bimodal: two overlapping body types
    build = _normal(rng, 0.0, 1.0, -2.0, 2.5)
    height = _normal(rng, 1.62 + 0.14 * masculinity, 0.06, 1.48, 1.98)
    girth = 1.0 + 0.11 * build

    def length(fraction: float, sd: float = 0.025) -> float:
        return height * fraction * (1.0 + _normal(rng, 0.0, sd, -2.5 * sd, 2.5 * sd))

    leg_scale = 1.0 + _normal(rng, 0.0, 0.025, -0.06, 0.06)  # long- or short-legged for the height
    thigh = length(0.245) * leg_scale
    shank = length(0.246) * leg_scale
    ankle_height = length(0.039, 0.05)
    leg = thigh + shank + ankle_height
    trunk = height * 0.818 - leg - 0.01 + height * _normal(rng, 0.0, 0.006, -0.015, 0.015)
    scale = height / 1.70
    left_vs_right = rng.normal(0.0, 1.0, 4)
    preference = rng.dirichlet((0.6, 0.6, 0.6))
    return Subject(
        height=height,
        thigh=thigh,
        shank=shank,
        ankle_height=ankle_height,
        foot=length(0.152),
        trunk=trunk,
        head_offset=length(0.117, 0.05),
        head_height=length(0.13, 0.04),
        head_width=length(0.088, 0.05),
        head_depth=length(0.112, 0.05),
        upper_arm=length(0.186),
        forearm=length(0.228),
        shoulder_width=length(0.215 + 0.03 * masculinity, 0.035) * (1.0 + 0.03 * build),
        hip_width=length(0.105 - 0.012 * masculinity, 0.05) * (1.0 + 0.04 * build),
        waist_width=length(0.16 - 0.01 * masculinity, 0.05) * girth ** 1.5,
        chest_depth=length(0.125, 0.05) * girth,
        waist_depth=length(0.11, 0.05) * girth ** 2,
        belly=max(0.0, 0.035 * build) * scale,
        thigh_radius=0.080 * scale * girth * (1.0 + 0.06 * (0.5 - masculinity)),
        knee_radius=0.052 * scale * girth ** 0.5,
        ankle_radius=0.036 * scale,
        upper_arm_radius=0.043 * scale * girth,
        forearm_radius=0.036 * scale * girth ** 0.5,
        neck_radius=0.054 * scale * girth ** 0.5,
        foot_radius=0.034 * scale,
        cadence=_normal(rng, 0.93, 0.06, 0.76, 1.12),
        stride=leg * _normal(rng, 1.52, 0.10, 1.2, 1.85),
        hip_mean=_normal(rng, 9.0, 3.0, 2.0, 16.0),
        knee_stance=_normal(rng, 15.0, 4.0, 5.0, 25.0),
        knee_swing=_normal(rng, 60.0, 5.0, 48.0, 72.0),
        ankle_scale=_normal(rng, 1.0, 0.15, 0.6, 1.4),
        arm_swing=_normal(rng, 20.0, 7.0, 4.0, 40.0),
        arm_mean=_normal(rng, -2.0, 4.0, -10.0, 8.0),
        elbow=_normal(rng, 18.0, 7.0, 5.0, 40.0),
        elbow_gain=_normal(rng, 0.6, 0.2, 0.1, 1.1),
        arm_abduction=_normal(rng, 7.0, 3.0, 1.0, 15.0),
        lean=_normal(rng, 4.0, 2.5, -2.0, 11.0),
        head_lean=_normal(rng, 6.0, 6.0, -6.0, 20.0),
        pelvis_rotation=_normal(rng, 6.0, 2.0, 2.0, 11.0),
        pelvis_obliquity=_normal(rng, 4.0, 1.5, 1.0, 8.0),
        sway=_normal(rng, 0.025, 0.008, 0.008, 0.045),
        toe_out=_normal(rng, 7.0, 4.0, -3.0, 18.0),
        step_asymmetry=float(0.04 * np.clip(left_vs_right[0], -2.5, 2.5)),
        arm_asymmetry=float(0.12 * np.clip(left_vs_right[1], -2.5, 2.5)),
        knee_asymmetry=float(0.05 * np.clip(left_vs_right[2], -2.5, 2.5)),
        phase_asymmetry=float(0.012 * np.clip(left_vs_right[3], -2.5, 2.5)),
        shoulder_drop=_normal(rng, 0.0, 0.012, -0.03, 0.03),
        coat_length=float(rng.uniform(0.8, 1.5)),
        coat_looseness=float(rng.uniform(0.045, 0.1)) * scale,
        bag_preference=tuple(float(p) for p in preference),
        bag_side=int(rng.choice((-1, 1))),
    )


def sample_walk(subject: Subject, walk_type: str, rng: np.random.Generator) -> Walk:
    """One walk of ``subject`` under condition ``walk_type`` (``nm-*``, ``bg-*`` or ``cl-*``)."""
    condition = walk_type.split("-")[0]
    speed = _normal(rng, 1.0, 0.035, 0.9, 1.1)  # split between cadence and stride, as people do
    arm_swing = subject.arm_swing * _normal(rng, 1.0, 0.08, 0.75, 1.25)
    lean = subject.lean + rng.normal(0.0, 0.8)
    bag = None
    bag_side = subject.bag_side
    if condition == "bg":
        bag = BAG_KINDS[int(rng.choice(3, p=subject.bag_preference))]
        if rng.random() < 0.2:
            bag_side = -bag_side
        if bag == "backpack":
            lean += 2.5  # leaning against the load
    if condition == "cl":
        arm_swing *= 0.7  # a heavy coat damps the arms
    body = replace(
        subject,
        cadence=subject.cadence * speed ** 0.5,
        stride=subject.stride * speed ** 0.5,
        arm_swing=arm_swing,
        lean=lean,
        knee_swing=subject.knee_swing + rng.normal(0.0, 2.0),
        head_lean=subject.head_lean + rng.normal(0.0, 2.0),
        sway=subject.sway * _normal(rng, 1.0, 0.1, 0.7, 1.3),
    )
    return Walk(
        subject=body,
        phase=float(rng.random()),
        start=float(rng.uniform(-0.25, 0.25)),
        coat=condition == "cl",
        bag=bag,
        bag_side=bag_side,
        bag_size=_normal(rng, 1.0, 0.12, 0.75, 1.3),
        bag_swing=_normal(rng, 9.0, 3.0, 2.0, 16.0),
        bag_swing_phase=float(rng.uniform(0.0, 1.0)),
    )
