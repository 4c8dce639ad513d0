"""Every gait benchmark gaitrec knows, one record each: the single place a dataset's facts live.

A record holds the dataset's names, its shipped partition, its full type x view grid, its raw layout for
pretreatment, and its test protocols (probe and gallery types, OpenGait's ``eval_func`` and options).
``data.dataset``, ``data.pretreat``, ``data.summary``, ``evaluation.protocols`` and the CLI read these
records. Adding a benchmark means adding one record here, plus a procedure in ``evaluation.protocols``
when none of the existing ones (single-view gallery, cross-view gallery, GREW, Gait3D) fits.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Sequence

from .registry import closest

PARTITION_DIR = Path(__file__).resolve().parent / "partitions"


@dataclass(frozen=True)
class ProtocolRule:
    """One test protocol of a benchmark: which sequences are probes and gallery, and how they are compared.

    ``procedure`` names the procedure in ``evaluation.protocols`` that runs it. ``probes`` maps each
    condition to its probe types; ``gallery`` lists the gallery types. ``substring``: types match when
    they contain a listed type (SUSTech1K). ``excluded_views`` are left out as probe and gallery.
    ``eval_func`` and ``cross_view`` are the OpenGait config (``evaluator_cfg.eval_func`` and its
    ``cross_view_gallery`` option) that select this protocol; ``any_dataset``: the eval_func selects it
    whatever the config's ``dataset_name`` (else the dataset must be this benchmark). ``plain_figures``: the
    one condition's figures are named without it (``rank1``, not ``NM-rank1``), as OpenGait prints OU-MVLP's.
    """
    name: str
    procedure: str
    eval_func: str
    probes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    gallery: tuple[str, ...] = ()
    cross_view: bool = False
    excluded_views: tuple[str, ...] = ()
    num_rank: int = 1
    substring: bool = False
    any_dataset: bool = False
    plain_figures: bool = False


@dataclass(frozen=True)
class Benchmark:
    """A gait dataset: ``name`` as OpenGait's ``dataset_name`` spells it, other accepted ``spellings``.

    ``partition``: the partition JSON shipped in ``gaitrec/partitions`` (None: none shipped).
    ``types``/``views``: the grid every subject should fill (None where subjects do not share one).
    ``gallery_types``: what ``data_cfg.remove_no_gallery`` keeps subjects for (empty: not supported).
    ``raw_layout``: how ``gaitrec pretreat`` reads the raw frames (None: not supported); ``aligned``: the raw
    frames are already aligned (GREW), so pretreatment keeps them as read.
    """
    name: str
    spellings: tuple[str, ...] = ()
    partition: str | None = None
    types: tuple[str, ...] | None = None
    views: tuple[str, ...] | None = None
    gallery_types: tuple[str, ...] = ()
    raw_layout: str | None = None
    aligned: bool = False
    protocols: tuple[ProtocolRule, ...] = ()

    @property
    def partition_path(self) -> Path | None:
        return None if self.partition is None else PARTITION_DIR / self.partition


def _frozen(probes: dict[str, list[str]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({condition: tuple(types) for condition, types in probes.items()})


_CASIA_E_PROBES = {
    condition: [f"{height}-{scene}-{condition.lower()}-{n}" for scene in ("scene2", "scene3", "scene3_s")
                for height in ("H", "L") for n in (1, 2)]
    for condition in ("NM", "BG", "CL")
}

BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        name="CASIA-B", spellings=("CASIA-B*",), partition="CASIA-B.json",
        types=tuple([f"nm-{i:02d}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]),
        views=tuple(f"{a:03d}" for a in range(0, 181, 18)),
        raw_layout="nested",
        protocols=(
            # OpenGait's evaluator: gallery nm-01..04 of one view; identical views excluded.
            ProtocolRule("casia-b", "single_view", "evaluate_indoor_dataset",
                         probes=_frozen({"NM": ["nm-05", "nm-06"], "BG": ["bg-01", "bg-02"],
                                         "CL": ["cl-01", "cl-02"]}),
                         gallery=("nm-01", "nm-02", "nm-03", "nm-04")),
            # One gallery of every view (Yu et al.'s comprehensive study, TPAMI 2022).
            ProtocolRule("casia-b-cross-view", "cross_view", "evaluate_indoor_dataset", cross_view=True,
                         probes=_frozen({"NM": ["nm-01"], "BG": ["bg-01"], "CL": ["cl-01"]}),
                         gallery=("nm-02", "bg-02", "cl-02")),
        ),
    ),
    Benchmark(
        name="OUMVLP", partition="OUMVLP.json",
        types=("00", "01"), views=tuple(f"{a:03d}" for a in [*range(0, 91, 15), *range(180, 271, 15)]),
        gallery_types=("01",), raw_layout="oumvlp",
        protocols=(
            ProtocolRule("oumvlp", "single_view", "evaluate_indoor_dataset", plain_figures=True,
                         probes=_frozen({"NM": ["00"]}), gallery=("01",)),
            ProtocolRule("oumvlp-cross-view", "cross_view", "evaluate_indoor_dataset", cross_view=True,
                         plain_figures=True, probes=_frozen({"NM": ["00"]}), gallery=("01",)),
        ),
    ),
    Benchmark(
        name="CASIA-E", partition="CASIA-E.json",
        protocols=(
            ProtocolRule("casia-e", "single_view", "evaluate_indoor_dataset", probes=_frozen(_CASIA_E_PROBES),
                         gallery=("H-scene1-nm-1", "H-scene1-nm-2", "L-scene1-nm-1", "L-scene1-nm-2"),
                         excluded_views=("270",)),
        ),
    ),
    Benchmark(
        name="SUSTech1K", partition="SUSTech1K.json",
        protocols=(
            # Types match as substrings (e.g. "01-nm" inside "01-nm-...", "bg" in "02-bg").
            ProtocolRule("sustech1k", "single_view", "evaluate_indoor_dataset",
                         probes=_frozen({"Normal": ["01-nm"], "Bag": ["bg"], "Clothing": ["cl"],
                                         "Carrying": ["cr"], "Umbrella": ["ub"], "Uniform": ["uf"],
                                         "Occlusion": ["oc"], "Night": ["nt"],
                                         "Overall": ["01", "02", "03", "04"]}),
                         gallery=("00-nm",), num_rank=5, substring=True),
        ),
    ),
    Benchmark(
        name="GREW", partition="GREW.json", raw_layout="grew", aligned=True,
        protocols=(
            ProtocolRule("grew", "grew", "evaluate_real_scene", probes=_frozen({"all": ["02"]}), gallery=("01",)),
            # The test server's split: unlabelled probes (type 03), both gallery types.
            ProtocolRule("grew-submission", "grew_submission", "GREW_submission", any_dataset=True,
                         probes=_frozen({"all": ["03"]}), gallery=("01", "02")),
        ),
    ),
    Benchmark(
        name="Gait3D", partition="Gait3D.json", raw_layout="nested",
        protocols=(
            # Probes come from the partition's PROBE_SET; FreeGait runs the same procedure with its own.
            ProtocolRule("gait3d", "gait3d", "evaluate_Gait3D", any_dataset=True),
        ),
    ),
)

# OpenGait eval_funcs gaitrec has no protocol for (named so that the error says "not yet", not "unknown").
UNSUPPORTED_EVAL_FUNCS = ("evaluate_CCPG", "evaluate_CCGR_MINI", "HID_submission", "evaluate_segmentation",
                          "evaluate_scoliosis")
# eval_funcs that run another one's procedure with other data.
EVAL_FUNC_ALIASES = {"evaluate_FreeGait": "evaluate_Gait3D"}


def _squash(name: str) -> str:
    return re.sub(r"[-_ ]", "", name).lower()


def find_benchmark(name: str | None) -> Benchmark | None:
    """The benchmark ``name`` spells (exactly, as a listed spelling, or ignoring case, dashes and
    underscores: ``casia-b``), or None."""
    if not name:
        return None
    for bench in BENCHMARKS:
        if name == bench.name or name in bench.spellings:
            return bench
    for bench in BENCHMARKS:
        if _squash(name) == _squash(bench.name):
            return bench
    return None


def benchmark(name: str, among: Sequence[Benchmark] = BENCHMARKS, purpose: str = "") -> Benchmark:
    """The benchmark of ``among`` that ``name`` spells (see ``find_benchmark``); otherwise ValueError listing
    them with the closest one. ``purpose`` ends the message's first part (``" for pretreatment"``)."""
    found = find_benchmark(name)
    if found is None or found not in among:
        names = {_squash(b.name): b.name for b in among}
        hint = names.get(closest(_squash(name), names) or "")
        raise ValueError(f"unknown dataset {name!r}{purpose}: known {', '.join(names.values())}"
                         + (f" (did you mean {hint}?)" if hint else ""))
    return found


def protocol_rules() -> dict[str, ProtocolRule]:
    """Every protocol by its gaitrec name, in benchmark order."""
    return {rule.name: rule for bench in BENCHMARKS for rule in bench.protocols}


def protocol_rule(name: str) -> ProtocolRule:
    """The protocol named ``name`` (a KeyError for an unknown one: callers check names first)."""
    return protocol_rules()[name]


def benchmark_of_protocol(name: str) -> Benchmark:
    """The benchmark a protocol belongs to."""
    return next(b for b in BENCHMARKS for rule in b.protocols if rule.name == name)


def benchmarks_with(attribute: str) -> list[Benchmark]:
    """Benchmarks where ``attribute`` is set (``raw_layout``, ``types``, ``gallery_types``, ``partition``)."""
    return [b for b in BENCHMARKS if getattr(b, attribute)]
