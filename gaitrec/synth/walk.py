"""The walking body in 3D: joint angles over the gait cycle -> joint positions -> solid body parts.

World axes: x is the walking direction, y the walker's left, z up, metres; the ground is z = 0. Every
array carries time first, so a whole walk is computed at once: ``[T, 3]`` for a point, ``[T, N, 3]`` for
a set of points.

The gait cycle starts at the right heel strike. Joint angles are smooth periodic curves shaped like
textbook sagittal gait kinematics (hip flexion peaks late in swing, the knee flexes a little after heel
strike and a lot in swing, the ankle plantar-flexes at push-off). The hip amplitude follows from the
stride so that the stance foot roughly stays put; the pelvis height follows from the legs, so the
vertical bounce of the body comes out of the legs' geometry rather than being added.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import FPS, Subject, Walk

UP = np.array([0.0, 0.0, 1.0])
STANCE = 0.6  # fraction of the cycle a foot is on the ground


@dataclass
class BodyShape:
    """The solids of one walk, ready to project.

    ``capsules[t, k]`` holds the two end points of capsule ``k`` and ``radii[k]`` its radius at each end;
    each entry of ``hulls`` is a convex solid given by points on its surface (torso, head, coat, bag).
    ``limbs`` indexes the arm and leg capsules, ``torso`` the capsules where holes show up in practice.
    """

    capsules: np.ndarray        # [T, K, 2, 3]
    radii: np.ndarray           # [K, 2]
    hulls: list[np.ndarray]     # each [T, N, 3]
    pelvis: np.ndarray          # [T, 3]
    feet: np.ndarray            # [T, 3] ground point between the feet (shadows start here)
    limbs: list[int]
    torso_axis: tuple[np.ndarray, np.ndarray]  # ([T, 3] bottom, [T, 3] top): holes are placed along it


def _bump(phase: np.ndarray, centre: float, width: float) -> np.ndarray:
    """A periodic Gaussian bump on the unit cycle."""
    distance = (phase - centre + 0.5) % 1.0 - 0.5
    return np.exp(-0.5 * (distance / width) ** 2)


def joint_angles(phase: np.ndarray, body: Subject, hip_amplitude: float, side_scale: float) -> dict:
    """Hip, knee and ankle flexion of one leg (radians) at ``phase`` (cycles since its heel strike)."""
    wave = np.cos(2 * np.pi * (phase - 0.95))
    hip = body.hip_mean + hip_amplitude * side_scale * wave
    knee = 3.0 + body.knee_stance * _bump(phase, 0.13, 0.07) + body.knee_swing * side_scale * _bump(phase, 0.72, 0.11)
    ankle = body.ankle_scale * (-6 * _bump(phase, 0.04, 0.04) + 10 * _bump(phase, 0.42, 0.12)
                                - 18 * _bump(phase, 0.63, 0.06) + 4 * _bump(phase, 0.85, 0.08))
    return {"hip": np.radians(hip), "knee": np.radians(knee), "ankle": np.radians(ankle), "wave": wave}


def _yaw_axes(yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward and left unit vectors [T, 3] of a frame turned by ``yaw`` about the vertical."""
    zeros = np.zeros_like(yaw)
    forward = np.stack([np.cos(yaw), np.sin(yaw), zeros], axis=-1)
    left = np.stack([-np.sin(yaw), np.cos(yaw), zeros], axis=-1)
    return forward, left


def _ring(centre, forward, left, half_depth, half_width, count=10):
    """Points [T, count, 3] on a horizontal ellipse around ``centre``."""
    angle = np.linspace(0, 2 * np.pi, count, endpoint=False)
    return (centre[:, None] + half_depth * np.cos(angle)[None, :, None] * forward[:, None]
            + half_width * np.sin(angle)[None, :, None] * left[:, None])


def _box(centre, forward, left, half_depth, half_width, half_height):
    """The 8 corners [T, 8, 3] of a box aligned with ``forward``/``left``/up."""
    corners = [centre + a * half_depth * forward + b * half_width * left + c * half_height * UP
               for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]
    return np.stack(corners, axis=1)


def _leg(hip, forward, left, side, angles, body: Subject):
    """Knee, ankle, heel and toe [T, 3] of one leg hanging from ``hip``; ``side`` -1 right, +1 left."""
    h, k, a = angles["hip"], angles["knee"], angles["ankle"]
    abduction = np.radians(2.0)
    thigh_dir = (np.sin(h)[:, None] * forward - np.cos(h)[:, None] * UP) * np.cos(abduction) + side * np.sin(abduction) * left
    knee = hip + body.thigh * thigh_dir
    shank = h - k  # shank angle from vertical, positive when the ankle is in front of the knee
    ankle = knee + body.shank * (np.sin(shank)[:, None] * forward - np.cos(shank)[:, None] * UP)
    toe_out = np.radians(body.toe_out)
    heading = np.cos(toe_out) * forward + side * np.sin(toe_out) * left
    pitch = (shank + a)[:, None]  # 0: foot flat; positive: toes up
    foot_dir = np.cos(pitch) * heading + np.sin(pitch) * UP
    foot_up = -np.sin(pitch) * heading + np.cos(pitch) * UP
    sole = ankle - (body.ankle_height - body.foot_radius) * foot_up
    heel = sole - 0.22 * body.foot * foot_dir
    toe = sole + 0.74 * body.foot * foot_dir
    return knee, ankle, heel, toe


def _arm(shoulder, forward, left, side, flexion, elbow_flexion, body: Subject):
    """Elbow and hand tip [T, 3] of one arm; flexion angles in radians, positive forward."""
    abduction = np.radians(body.arm_abduction)
    upper = (np.cos(abduction) * (np.sin(flexion)[:, None] * forward - np.cos(flexion)[:, None] * UP)
             + side * np.sin(abduction) * left)
    elbow = shoulder + body.upper_arm * upper
    fore = flexion + elbow_flexion
    lower = (np.cos(abduction) * (np.sin(fore)[:, None] * forward - np.cos(fore)[:, None] * UP)
             + 0.5 * side * np.sin(abduction) * left)
    lower /= np.linalg.norm(lower, axis=-1, keepdims=True)
    hand = elbow + body.forearm * lower
    return elbow, hand


def body_shape(walk: Walk, frames: int) -> BodyShape:
    """The 3D body of ``walk`` over ``frames`` frames at CASIA-B's frame rate."""
    body = walk.subject
    time = (np.arange(frames) - (frames - 1) / 2) / FPS
    phase_right = (walk.phase + body.cadence * time) % 1.0
    phase_left = (phase_right + 0.5 + body.phase_asymmetry) % 1.0
    leg_length = body.thigh + body.shank + body.ankle_height
    # Over the stance the foot travels back about 2 L sin(A) relative to the hip while the body moves
    # STANCE * stride forward: matching the two keeps the planted foot from sliding.
    hip_amplitude = np.degrees(np.arcsin(np.clip(STANCE * body.stride / (2 * leg_length), 0.1, 0.7)))
    right = joint_angles(phase_right, body, hip_amplitude, 1 + body.step_asymmetry)
    left = joint_angles(phase_left, body, hip_amplitude, 1 - body.step_asymmetry)
    right["knee"] = right["knee"] * (1 + body.knee_asymmetry)

    # Pelvis: yaw brings the swinging leg's hip forward; the trunk turns the other way.
    pelvis_yaw = np.radians(body.pelvis_rotation) * right["wave"]
    pelvis_forward, pelvis_left = _yaw_axes(pelvis_yaw)
    thorax_forward, thorax_left = _yaw_axes(-0.6 * pelvis_yaw)
    drop = 0.5 * body.hip_width * np.sin(np.radians(body.pelvis_obliquity) * np.sin(2 * np.pi * (phase_right - 0.1)))

    origin = np.zeros((frames, 3))
    hip_r = origin - 0.5 * body.hip_width * pelvis_left - drop[:, None] * UP
    hip_l = origin + 0.5 * body.hip_width * pelvis_left + drop[:, None] * UP
    knee_r, ankle_r, heel_r, toe_r = _leg(hip_r, pelvis_forward, pelvis_left, -1, right, body)
    knee_l, ankle_l, heel_l, toe_l = _leg(hip_l, pelvis_forward, pelvis_left, 1, left, body)

    # Place the pelvis so that the lowest foot point touches the ground.
    lowest = np.min(np.stack([heel_r, toe_r, heel_l, toe_l])[..., 2], axis=0) - body.foot_radius
    speed = body.stride * body.cadence
    pelvis = np.stack([walk.start + speed * time,
                       body.sway * np.sin(2 * np.pi * (phase_right - 0.2)),
                       -lowest], axis=-1)
    hip_r, knee_r, ankle_r, heel_r, toe_r, hip_l, knee_l, ankle_l, heel_l, toe_l = (
        p + pelvis for p in (hip_r, knee_r, ankle_r, heel_r, toe_r, hip_l, knee_l, ankle_l, heel_l, toe_l))

    # Trunk, shoulders, head.
    lean = np.radians(body.lean)
    axis = np.cos(lean) * UP + np.sin(lean) * thorax_forward
    neck = pelvis + body.trunk * axis
    # Shoulder joints sit a little below the base of the neck: shoulders slope.
    shoulder_r = neck - 0.5 * body.shoulder_width * thorax_left - (0.03 * body.height / 1.7 + body.shoulder_drop) * UP
    shoulder_l = neck + 0.5 * body.shoulder_width * thorax_left - 0.03 * body.height / 1.7 * UP
    head_tilt = lean + np.radians(body.head_lean)
    head = neck + body.head_offset * (np.cos(head_tilt) * UP + np.sin(head_tilt) * thorax_forward) + 0.015 * body.height * thorax_forward

    # Arms swing against the legs on their side: the right arm comes forward with the left leg.
    arm_r = np.radians(body.arm_mean - body.arm_swing * (1 + body.arm_asymmetry) * right["wave"])
    arm_l = np.radians(body.arm_mean - body.arm_swing * (1 - body.arm_asymmetry) * left["wave"])
    if walk.bag == "hand":  # the carrying arm hangs nearly still and slightly bent
        if walk.bag_side < 0:
            arm_r = np.radians(body.arm_mean + 0.25 * (np.degrees(arm_r) - body.arm_mean))
        else:
            arm_l = np.radians(body.arm_mean + 0.25 * (np.degrees(arm_l) - body.arm_mean))
    elbow_r_flex = np.radians(body.elbow) + body.elbow_gain * np.maximum(arm_r, 0)
    elbow_l_flex = np.radians(body.elbow) + body.elbow_gain * np.maximum(arm_l, 0)
    elbow_r, hand_r = _arm(shoulder_r, thorax_forward, thorax_left, -1, arm_r, elbow_r_flex, body)
    elbow_l, hand_l = _arm(shoulder_l, thorax_forward, thorax_left, 1, arm_l, elbow_l_flex, body)

    sleeve = body.coat_looseness * 0.5 if walk.coat else 0.0
    segments = [
        (hip_r, knee_r, body.thigh_radius, body.knee_radius),
        (hip_l, knee_l, body.thigh_radius, body.knee_radius),
        (knee_r, ankle_r, body.knee_radius, body.ankle_radius),
        (knee_l, ankle_l, body.knee_radius, body.ankle_radius),
        (heel_r, toe_r, body.foot_radius, body.foot_radius * 0.8),
        (heel_l, toe_l, body.foot_radius, body.foot_radius * 0.8),
        (shoulder_r, elbow_r, body.upper_arm_radius + sleeve, body.forearm_radius + sleeve),
        (shoulder_l, elbow_l, body.upper_arm_radius + sleeve, body.forearm_radius + sleeve),
        (elbow_r, hand_r, body.forearm_radius + sleeve, body.forearm_radius * 0.75),
        (elbow_l, hand_l, body.forearm_radius + sleeve, body.forearm_radius * 0.75),
        (neck, head, body.neck_radius, body.neck_radius),
    ]
    capsules = np.stack([np.stack([a, b], axis=1) for a, b, _, _ in segments], axis=1)
    radii = np.array([[ra, rb] for _, _, ra, rb in segments])

    # Torso: horizontal cross-sections from the hips to the shoulders.
    waist = pelvis + 0.45 * body.trunk * axis + body.belly * thorax_forward
    chest = pelvis + 0.75 * body.trunk * axis
    torso = np.concatenate([
        _ring(pelvis - 0.02 * UP, pelvis_forward, pelvis_left, 0.45 * body.waist_depth,
              0.5 * body.hip_width + 0.9 * body.thigh_radius),
        _ring(waist, thorax_forward, thorax_left, 0.5 * body.waist_depth, 0.5 * body.waist_width),
        _ring(chest, thorax_forward, thorax_left, 0.5 * body.chest_depth, 0.5 * body.shoulder_width),
        _ring(neck, thorax_forward, thorax_left, 0.3 * body.chest_depth, 0.3 * body.shoulder_width),
    ], axis=1)
    hulls = [torso]

    # Head: an ellipsoid, taller than wide and deeper than wide.
    rings = []
    for height, radius in ((-0.5, 0.0), (-0.3, 0.95), (0.0, 1.0), (0.3, 0.95), (0.5, 0.0)):
        centre = head + height * body.head_height * UP
        rings.append(_ring(centre, thorax_forward, thorax_left, 0.5 * body.head_depth * max(radius, 0.2),
                           0.5 * body.head_width * max(radius, 0.2), count=8))
    hulls.append(np.concatenate(rings, axis=1))

    if walk.coat:
        hulls.append(_coat(body, pelvis, waist, chest, neck, pelvis_forward, pelvis_left, thorax_forward,
                           thorax_left, (hip_r, knee_r, ankle_r), (hip_l, knee_l, ankle_l)))
    if walk.bag is not None:
        bag, strap = _bag(walk, phase_right, chest, neck, pelvis, thorax_forward, thorax_left,
                          pelvis_left, shoulder_r, shoulder_l, hand_r, hand_l)
        hulls.append(bag)
        if strap is not None:
            capsules = np.concatenate([capsules, strap[:, None]], axis=1)
            radii = np.concatenate([radii, [[0.012, 0.012]]])

    feet = 0.5 * (ankle_r + ankle_l) * np.array([1.0, 1.0, 0.0])
    return BodyShape(capsules=capsules, radii=radii, hulls=hulls, pelvis=pelvis, feet=feet,
                     limbs=list(range(10)), torso_axis=(pelvis, chest))


def _coat(body, pelvis, waist, chest, neck, pelvis_forward, pelvis_left, thorax_forward, thorax_left,
          leg_r, leg_l):
    """A long garment: the torso inflated by the coat's looseness, down to a hem around both legs.
    The hull of both legs' hems makes the coat swing open and shut like a skirt as the legs move."""
    loose = body.coat_looseness
    parts = [
        _ring(pelvis, pelvis_forward, pelvis_left, 0.45 * body.waist_depth + loose,
              0.5 * body.hip_width + body.thigh_radius + loose),
        _ring(waist, thorax_forward, thorax_left, 0.5 * body.waist_depth + loose, 0.5 * body.waist_width + loose),
        _ring(chest, thorax_forward, thorax_left, 0.5 * body.chest_depth + loose,
              0.5 * body.shoulder_width + 0.5 * loose),
        _ring(neck, thorax_forward, thorax_left, 0.3 * body.chest_depth + loose, 0.3 * body.shoulder_width + loose),
    ]
    for hip, knee, ankle in (leg_r, leg_l):
        if body.coat_length <= 1.0:
            hem = hip + body.coat_length * (knee - hip)
        else:
            hem = knee + (body.coat_length - 1.0) * (ankle - knee)
        flare = 1.0 + 0.5 * min(body.coat_length, 1.3)
        parts.append(_ring(hem, pelvis_forward, pelvis_left, body.knee_radius * flare + loose,
                           body.knee_radius * flare + loose, count=8))
    return np.concatenate(parts, axis=1)


def _bag(walk, phase, chest, neck, pelvis, thorax_forward, thorax_left, pelvis_left, shoulder_r, shoulder_l,
         hand_r, hand_l):
    """The bag's corners [T, 8, 3] and, for a shoulder bag, its strap [T, 2, 3] (else None)."""
    body, side, size = walk.subject, walk.bag_side, walk.bag_size
    swing = np.radians(walk.bag_swing) * np.sin(2 * np.pi * (phase + walk.bag_swing_phase))
    if walk.bag == "backpack":
        depth, width, height = 0.09 * size, 0.15 * size, 0.21 * size
        bounce = 0.008 * np.sin(4 * np.pi * (phase + walk.bag_swing_phase))
        centre = chest - (0.5 * body.chest_depth + depth) * thorax_forward - (0.06 - bounce)[:, None] * UP
        return _box(centre, thorax_forward, thorax_left, depth, width, height), None
    if walk.bag == "shoulder":
        shoulder = shoulder_l if side > 0 else shoulder_r
        hang = 0.62 * body.trunk
        depth, width, height = 0.05 * size, 0.15 * size, 0.12 * size
        rest = pelvis + side * (0.5 * body.hip_width + body.thigh_radius + depth) * pelvis_left + 0.04 * UP
        top = rest + hang * np.sin(swing)[:, None] * thorax_forward
        centre = top - height * UP
        strap = np.stack([shoulder, top], axis=1)
        return _box(centre, thorax_forward, thorax_left, width, depth, height), strap
    hand = hand_l if side > 0 else hand_r
    depth, width, height = 0.06 * size, 0.16 * size, 0.12 * size
    centre = hand - (0.01 + height) * UP + 0.15 * np.sin(swing)[:, None] * thorax_forward
    return _box(centre, thorax_forward, thorax_left, width, depth, height), None
