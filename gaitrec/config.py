"""Run configuration: OpenGait's YAML schema, merged over defaults, overridden from the command line, validated.

A config is a plain nested dict (what a run stores in ``config.yaml`` and in each checkpoint). The fixed
sections are described by dataclasses (``DataConfig``, ``TrainerConfig`` with its ``SamplerConfig``,
``EvaluatorConfig``, ``OptimizerConfig``, ``SchedulerConfig``) whose fields are OpenGait's keys and hold the
only copy of each default; ``configs/default.yaml`` shows them. ``load_config`` is the single way in: it
merges the file over those defaults (mappings key by key, everything else replaces), applies ``--set``
overrides and validates every section through the dataclasses, so that a typo fails at start-up with the key,
the file and the closest valid key instead of being ignored. The config it returns holds every key of the
typed sections, so code reads ``cfg["trainer_cfg"]["seed"]`` without a fallback of its own.
"""
from __future__ import annotations

import copy
import inspect
import re
import types
import typing
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Iterable

import torch
import yaml

from .registry import LOSSES, MODELS, SAMPLERS, TRANSFORMS, ConfigError, closest

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

SECTIONS = ("data_cfg", "model_cfg", "loss_cfg", "optimizer_cfg", "scheduler_cfg", "trainer_cfg", "evaluator_cfg")

INT, FLOAT, BOOL, STR, DICT = int, (int, float), bool, str, dict
OPTIONAL_STR = (str, type(None))

SAMPLE_TYPES = ("fixed_ordered", "fixed_unordered", "unfixed_ordered", "unfixed_unordered", "all_ordered",
                "all_unordered")

# The fixed sections are dataclasses whose field names are OpenGait's keys: each default lives here and
# nowhere else (configs/default.yaml mirrors them and a test keeps it so). Keys listed in ``IGNORED`` exist in
# OpenGait configs for modalities or features gaitrec does not have; they load with a warning and are dropped.


@dataclass
class SamplerConfig:
    """``trainer_cfg.sampler`` / ``evaluator_cfg.sampler``: how sequences are batched and frames chosen
    (see ``SequenceCollator``). The defaults are the training sampler's; the evaluator's differs in three keys."""
    type: str = "TripletSampler"
    batch_size: int | list = field(default_factory=lambda: [8, 16])  # [subjects, sequences each] when training
    sample_type: str = "fixed_unordered"
    frames_num_fixed: int = 30
    frames_num_min: int = 25
    frames_num_max: int = 50
    frames_skip_num: int = 0
    frames_all_limit: int = -1  # -1: no limit
    batch_shuffle: bool = False

    IGNORED: ClassVar[tuple[str, ...]] = ("points_in_use",)


def _sampler_defaults(*keys: str, **changes) -> dict:
    """The keys a section's default sampler mapping spells out, valued from ``SamplerConfig``. The mapping (not
    every field) is what a config carries, so that a sampler's stored form (and the model identity hashed from
    the evaluator's) stays what it was."""
    values = SamplerConfig(**changes)
    return {key: copy.deepcopy(getattr(values, key)) for key in keys}


@dataclass
class DataConfig:
    """``data_cfg``: where the sequences are and how they are read."""
    dataset_name: str = "CASIA-B"
    dataset_root: str = "your_path"
    dataset_partition: str | None = None  # None: every subject on disk is used for both sets
    num_workers: int = 1
    remove_no_gallery: bool = False
    cache: bool = False
    test_dataset_name: str = "CASIA-B"
    data_in_use: list | None = None
    skip_bad_sequences: bool = False  # gaitrec: drop unreadable/empty sequences with a warning

    IGNORED: ClassVar[tuple[str, ...]] = ("frame_threshold", "self_supervised", "train_data_preload")


@dataclass
class TrainerConfig:
    """``trainer_cfg``: the schedule, precision, checkpoints and the training sampler and transform."""
    enable_float16: bool = True
    with_test: bool = False
    fix_BN: bool = False
    log_iter: int = 100
    restore_ckpt_strict: bool = True
    optimizer_reset: bool = False
    scheduler_reset: bool = False
    restore_hint: int | str = 0
    save_iter: int = 2000
    save_name: str = "tmp"
    sync_BN: bool = False
    find_unused_parameters: bool = False
    total_iter: int = 80000
    seed: int = 0  # gaitrec: seeds torch, numpy and the samplers
    output_root: str = "output"  # gaitrec: runs go to <output_root>/<dataset>/<model>/<save_name>
    sampler: dict = field(default_factory=lambda: _sampler_defaults(
        "type", "batch_size", "sample_type", "frames_num_fixed", "frames_num_min", "frames_num_max",
        "batch_shuffle"))
    transform: list = field(default_factory=lambda: [{"type": "BaseSilCuttingTransform"}])
    amp_dtype: str | None = None  # gaitrec: autocast dtype with enable_float16 (None: float16 on CUDA, off on CPU)
    keep_checkpoints: int = 0  # gaitrec: keep the newest N checkpoints (0: all)
    skip_nonfinite: bool = False  # gaitrec: skip a step whose loss is NaN/inf instead of stopping
    best_metric: str | None = None  # gaitrec: with_test keeps <save_name>-best.pt by this result key
    compile: bool = False  # gaitrec: torch.compile the model
    channels_last: bool = False  # gaitrec: channels-last memory format for the model

    IGNORED: ClassVar[tuple[str, ...]] = ("enable_distributed", "fix_layers", "T_max_iter")


@dataclass
class EvaluatorConfig:
    """``evaluator_cfg``: the checkpoint to test, the test sampler and transform, the protocol and metric."""
    enable_float16: bool = False
    restore_ckpt_strict: bool = True
    restore_hint: int | str = 0
    save_name: str = "tmp"
    eval_func: str = "evaluate_indoor_dataset"
    sampler: dict = field(default_factory=lambda: _sampler_defaults(
        "type", "batch_size", "sample_type", type="InferenceSampler", batch_size=4, sample_type="all_ordered"))
    transform: list = field(default_factory=lambda: [{"type": "BaseSilCuttingTransform"}])
    metric: str = "euc"
    cross_view_gallery: bool = False
    rerank: bool = False

    IGNORED: ClassVar[tuple[str, ...]] = ("enable_distributed",)


@dataclass
class OptimizerConfig:
    """``optimizer_cfg``: a ``torch.optim`` class by name and its keyword arguments (checked against it).
    The default arguments belong to the default class: another ``solver`` starts from none."""
    solver: str = "SGD"
    arguments: dict = field(default_factory=lambda: {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0005})

    CLASS_KEY: ClassVar[str] = "solver"


@dataclass
class SchedulerConfig:
    """``scheduler_cfg``: a ``torch.optim.lr_scheduler`` class by name and its keyword arguments; as with the
    optimizer, the default arguments apply to the default class only."""
    scheduler: str = "MultiStepLR"
    arguments: dict = field(default_factory=lambda: {"gamma": 0.1, "milestones": [20000, 40000, 60000]})

    CLASS_KEY: ClassVar[str] = "scheduler"


TYPED_SECTIONS = {"data_cfg": DataConfig, "trainer_cfg": TrainerConfig, "evaluator_cfg": EvaluatorConfig}
CLASS_SECTIONS = {"optimizer_cfg": OptimizerConfig, "scheduler_cfg": SchedulerConfig}
# The dict sections are checked against constructor signatures; these are their defaults.
DEFAULT_MODEL_CFG = {"model": "Baseline"}
DEFAULT_LOSS_CFG = {"loss_term_weight": 1.0, "margin": 0.2, "type": "TripletLoss", "log_prefix": "triplet"}


def _runtime_types(annotation) -> tuple:
    """What ``isinstance`` accepts for a field's annotation: ``int | str`` -> (int, str); a float takes an int."""
    if annotation is float:
        return (int, float)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(t for arg in typing.get_args(annotation) for t in _runtime_types(arg))
    return (typing.get_origin(annotation) or annotation,)


def _field_types(cls) -> dict[str, tuple]:
    hints = typing.get_type_hints(cls)
    return {f.name: _runtime_types(hints[f.name]) for f in fields(cls)}


def section_from_dict(cls, values: dict, where: str, source: str):
    """``values`` as a ``cls``: unknown keys fail with the closest key, values must have the field's type,
    ``IGNORED`` keys warn and are dropped, absent keys take the field's default. ``values`` is not modified."""
    expected = _field_types(cls)
    known = list(expected) + list(cls.IGNORED)
    given = {}
    for key, value in values.items():
        if key not in expected:
            if key in cls.IGNORED:
                warnings.warn(f"{source}: {where}.{key} is not used by gaitrec and is ignored", stacklevel=3)
                continue
            hint = closest(key, known)
            raise ConfigError(f"{source}: unknown key {where}.{key}"
                              + (f" (did you mean {where}.{hint}?)" if hint else ""))
        _check_type(value, expected[key], f"{where}.{key}", source)
        given[key] = copy.deepcopy(value)
    return cls(**given)


def read_section(cls, values: dict):
    """The typed view of a section mapping that ``validate`` already checked (or a partial one built in code):
    absent keys take the field defaults, keys gaitrec ignores are skipped."""
    names = {f.name for f in fields(cls)}
    return cls(**{key: value for key, value in values.items() if key in names})


def class_section_from_dict(cls, values: dict):
    """An optimizer or scheduler section as a ``cls``: the class name and its arguments; the defaults'
    arguments only when the class is the default one (SGD's momentum means nothing to Adam)."""
    values = dict(values)
    default = cls()
    name = values.pop(cls.CLASS_KEY, getattr(default, cls.CLASS_KEY))
    base = default.arguments if name == getattr(default, cls.CLASS_KEY) else {}
    return cls(name, copy.deepcopy({**base, **values}))


def class_section_to_dict(section) -> dict:
    """The flat mapping OpenGait's configs use: ``{solver: SGD, lr: 0.1, ...}``."""
    return {section.CLASS_KEY: getattr(section, section.CLASS_KEY), **copy.deepcopy(section.arguments)}


def default_config() -> dict:
    """Every section's defaults as a config mapping (what ``configs/default.yaml`` shows)."""
    cfg = {name: asdict(cls()) for name, cls in TYPED_SECTIONS.items()}
    cfg.update({name: class_section_to_dict(cls()) for name, cls in CLASS_SECTIONS.items()})
    cfg["model_cfg"] = copy.deepcopy(DEFAULT_MODEL_CFG)
    cfg["loss_cfg"] = copy.deepcopy(DEFAULT_LOSS_CFG)
    return cfg


LOSS_COMMON_KEYS = ("type", "log_prefix")


def merge(base: dict, override: dict) -> dict:
    """Recursive merge: mappings merge key by key, anything else in ``override`` replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a config means a number."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


# Leading bytes of files people pass by mistake where a config belongs.
BINARY_SIGNATURES = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"PK\x03\x04": "a zip archive",
                     b"\x93NUMPY": "a NumPy array"}


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from a text file; every way of not being one is a ConfigError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not a config file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = path.read_bytes()
    kind = next((what for magic, what in BINARY_SIGNATURES.items() if raw.startswith(magic)), None)
    try:
        if kind or b"\x00" in raw[:4096]:
            raise UnicodeDecodeError("utf-8", raw[:1], 0, 1, "binary")
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML text file ({kind or 'binary content'})") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML, {yaml_problem(err, text)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    return data


def yaml_problem(err: yaml.YAMLError, text: str) -> str:
    """PyYAML's multi-line report (with a caret diagram) as one line: where, what, and the line's text."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return problem
    lines = text.splitlines()
    source = lines[mark.line].strip() if mark.line < len(lines) else ""
    where = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context = getattr(err, "context", None)
    context_mark = getattr(err, "context_mark", None)
    if context and context_mark is not None:
        where += f" ({context} opened at line {context_mark.line + 1})"
    return where + (f": {source!r}" if source else "")


def find_config(name: str | Path) -> Path:
    """The config file ``name`` names: a path that exists, else a shipped config by its path under
    ``configs/`` (``gaitset/gaitset.yaml``) or its bare name when unique (``gaitset``). A miss lists the
    shipped configs with close names."""
    path = Path(name)
    if path.exists():
        return path
    shipped = sorted(p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.rglob("*.yaml")
                     if p != DEFAULT_CONFIG)
    text = path.as_posix()
    text = text[len("configs/"):] if text.startswith("configs/") else text
    for candidate in (text, text + ".yaml"):
        if candidate in shipped:
            return CONFIG_DIR / candidate
    if "/" not in text:
        bare = text.lower().removesuffix(".yaml")
        matches = ([s for s in shipped if Path(s).stem.lower() == bare]
                   or [s for s in shipped if s.split("/")[0].lower() == bare])
        if len(matches) == 1:
            return CONFIG_DIR / matches[0]
        if matches:
            raise ConfigError(f"config {name!r} is not a file here and names several shipped configs: "
                              f"{', '.join(matches)}")
    import difflib

    stems = {Path(s).stem.lower(): s for s in shipped}
    close = [stems[s] for s in difflib.get_close_matches(Path(text).stem.lower(), list(stems), n=5, cutoff=0.6)]
    raise ConfigError(f"config file not found: {name}"
                      + (f" (shipped configs with a close name: {', '.join(close)})" if close else ""))


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    """Apply ``section.key.sub=value`` strings; the value is parsed as YAML (``1e-3``, ``[1, 2]``, ``true``).

    A list element is addressed by its index: ``loss_cfg.1.scale=8``.
    """
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        if keys[0] not in SECTIONS:
            hint = closest(keys[0], SECTIONS)
            raise ConfigError(f"override {item!r}: unknown section {keys[0]!r}"
                              + (f" (did you mean {hint!r}?)" if hint else ""))
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({' '.join(str(err).split())})") from None
        node = cfg
        for i, key in enumerate(keys[:-1]):
            node = _step(node, key, ".".join(keys[: i + 1]))
        last = keys[-1]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {item!r}: {'.'.join(keys[:-1])} is a {type(node).__name__}, not a mapping")
        if isinstance(node, list):
            node[_list_index(node, last, dotted)] = value
        else:
            node[last] = value
    return cfg


def _list_index(node: list, key: str, where: str) -> int:
    if not key.lstrip("-").isdigit() or not -len(node) <= int(key) < len(node):
        raise ConfigError(f"override {where!r}: {key!r} is not an index of a list of {len(node)}")
    return int(key)


def _step(node, key: str, where: str):
    """One level down an override's path; a missing mapping is created."""
    if isinstance(node, list):
        return node[_list_index(node, key, where)]
    if not isinstance(node, dict):
        raise ConfigError(f"override {where!r}: cannot descend into a {type(node).__name__}")
    return node.setdefault(key, {})


def load_config(path: str | Path, overrides: Iterable[str] = (), validate_config: bool = True,
                training: bool = True) -> dict:
    """Read a run config, merge it over the defaults, apply overrides and validate it; the result is a new
    plain dict holding every key of the typed sections.

    ``path`` may also name a shipped config (see ``find_config``). ``training``: see ``validate``."""
    path = find_config(path)
    user = read_yaml(path)
    unknown = [k for k in user if k not in SECTIONS]
    for key in unknown:
        hint = closest(key, SECTIONS)
        raise ConfigError(f"{path}: unknown section {key!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
    for section, value in user.items():
        if section != "loss_cfg" and not isinstance(value, dict):
            raise ConfigError(f"{path}: {section} must be a mapping, got {value!r}"[:300])
    defaults = default_config()
    if "loss_cfg" in user:
        # A loss's keys belong to its type: a user's loss list or mapping replaces the default TripletLoss whole.
        defaults.pop("loss_cfg")
    for section, cls in CLASS_SECTIONS.items():
        # The default SGD's momentum means nothing to Adam: default arguments apply to the same class only.
        defaults[section] = class_section_to_dict(class_section_from_dict(cls, user.get(section, {})))
    cfg = merge(defaults, user)
    return config_from_dict(cfg, overrides, source=str(path), validate_config=validate_config, training=training)


def config_from_dict(cfg: dict, overrides: Iterable[str] = (), source: str = "<config>",
                     validate_config: bool = True, training: bool = True) -> dict:
    """Apply overrides to a complete config (a file merged over the defaults, or the one a checkpoint
    stores) and validate it.

    OpenGait's configs test the schedule's last checkpoint (``evaluator_cfg.restore_hint`` equals
    ``trainer_cfg.total_iter``); when ``--set`` changes ``total_iter`` alone, the hint follows it so that
    testing the run finds its last checkpoint.
    """
    overrides = list(overrides)

    def section(config: dict, name: str) -> dict:  # before validation a section may be anything
        value = config.get(name)
        return value if isinstance(value, dict) else {}

    planned = section(cfg, "trainer_cfg").get("total_iter")
    cfg = apply_overrides(cfg, overrides)
    trainer, evaluator = section(cfg, "trainer_cfg"), section(cfg, "evaluator_cfg")
    hint_set = any(item.split("=", 1)[0].strip() == "evaluator_cfg.restore_hint" for item in overrides)
    if (not hint_set and "total_iter" in trainer and trainer["total_iter"] != planned and "restore_hint" in evaluator
            and evaluator["restore_hint"] == planned and isinstance(planned, int) and planned > 0):
        evaluator["restore_hint"] = trainer["total_iter"]
    if validate_config:
        cfg = validate(cfg, source=source, training=training)
    return cfg


def loss_entries(cfg: dict) -> list[dict]:
    """``loss_cfg`` as a list (OpenGait allows one mapping or a list of them)."""
    losses = cfg["loss_cfg"]
    return [losses] if isinstance(losses, dict) else list(losses)


def _type_name(expected) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _check_type(value, expected, where: str, source: str):
    # bool is an int in Python; a flag given as 1 or an iteration given as true is a mistake all the same.
    types = expected if isinstance(expected, tuple) else (expected,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        raise ConfigError(f"{source}: {where} must be {_type_name(expected)}, got {value!r}")


def check_kwargs(func, kwargs: dict, where: str, source: str, extra: Iterable[str] = (),
                 ignorable: Iterable[str] = ()):
    """Every key of ``kwargs`` must be a parameter of ``func`` (a class or function).

    Keys in ``ignorable`` are ones OpenGait's own configs carry but its code silently drops (SGD's
    ``momentum`` under Adam, ``img_w`` on a transform): they are removed from ``kwargs`` with a warning, so
    those configs load unchanged while a real typo is still an error.
    """
    params = inspect.signature(func).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    valid = [name for name in params if name != "self"] + list(extra)
    ignorable = set(ignorable)
    for key in list(kwargs):
        if key not in valid and key in ignorable:
            warnings.warn(f"{source}: {where}.{key} does not apply to {getattr(func, '__name__', func)} and is ignored",
                          stacklevel=3)
            del kwargs[key]
            continue
        if key not in valid:
            hint = closest(key, valid)
            raise ConfigError(f"{source}: unknown key {where}.{key}"
                              + (f" (did you mean {where}.{hint}?)" if hint else "")
                              + f"; valid keys: {', '.join(sorted(valid))}")


# Constructor annotations (strings, under postponed evaluation) -> what a config value must be.
_LIST_OF_INT = ("list of int",)
_LIST_OF_STR = ("list of str",)
_LIST_OF_NUMBER = ("list of number",)
_ANNOTATIONS = {
    "int": INT, "float": FLOAT, "bool": BOOL, "str": STR, "dict": DICT, "dict|None": (dict, type(None)),
    "int|None": (int, type(None)), "float|None": (int, float, type(None)), "str|None": OPTIONAL_STR,
    "list[int]": _LIST_OF_INT, "Sequence[int]": _LIST_OF_INT, "tuple[int,...]": _LIST_OF_INT,
    "Iterable[int]": _LIST_OF_INT, "list[str]": _LIST_OF_STR, "Sequence[str]": _LIST_OF_STR,
}
MAX_PARAMETERS = 10**10  # 40 GB of fp32 weights; the largest OpenGait models hold about 3 * 10**8
# Sizes and counts that must be positive whatever their type says.
POSITIVE_KEYS = {"class_num", "parts_num", "in_channels", "out_channels", "bin_num", "channels", "lateral_dim",
                 "squeeze", "in_channel"}


def _expected_type(parameter: inspect.Parameter):
    """What a config value for ``parameter`` must be: from its annotation, else from its default."""
    annotation = parameter.annotation
    if isinstance(annotation, str):
        key = annotation.replace(" ", "")
        if key in _ANNOTATIONS:
            return _ANNOTATIONS[key]
    elif annotation in (int, float, bool, str):
        return FLOAT if annotation is float else annotation
    default = parameter.default
    if isinstance(default, bool):
        return BOOL
    if isinstance(default, (int, float)):
        return FLOAT  # an int default (weight_decay=0) still takes 0.5
    if isinstance(default, str):
        return STR
    if isinstance(default, (list, tuple)) and default and all(isinstance(x, (int, float)) for x in default):
        return _LIST_OF_NUMBER
    return None


def _value_ok(value, expected) -> bool:
    if expected in (_LIST_OF_INT, _LIST_OF_STR, _LIST_OF_NUMBER):
        item = {_LIST_OF_INT: (int,), _LIST_OF_STR: (str,), _LIST_OF_NUMBER: (int, float)}[expected]
        return isinstance(value, (list, tuple)) and all(isinstance(x, item) and not isinstance(x, bool) for x in value)
    types = expected if isinstance(expected, tuple) else (expected,)
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def check_values(func, kwargs: dict, where: str, source: str) -> None:
    """Each value of ``kwargs`` must have the type ``func``'s parameter declares (annotation or default), and
    sizes and counts (``POSITIVE_KEYS``) must be positive: a constructor must never see ``class_num: false``."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return
    for key, value in kwargs.items():
        if key not in params:
            continue
        expected = _expected_type(params[key])
        if expected is not None and not _value_ok(value, expected):
            name = expected[0] if expected in (_LIST_OF_INT, _LIST_OF_STR, _LIST_OF_NUMBER) else _type_name(expected)
            raise ConfigError(f"{source}: {where}.{key} must be {name}, got {value!r}"[:300])
        if key in POSITIVE_KEYS:
            numbers = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(n, (int, float)) and not isinstance(n, bool) and n <= 0 for n in numbers):
                raise ConfigError(f"{source}: {where}.{key} must be positive, got {value!r}")


def _check_model(model_cfg: dict, source: str) -> None:
    """Keys and values of the model and of the layer configs nested in it, then a build on the meta device
    (no memory) so that any value its constructor refuses fails now, naming model_cfg. Not initialised: on the
    meta device ``normal_`` imports torch's decompositions, 0.85 s of start-up for a parameter count."""
    from .models import create_model
    from .models import layers

    model_cls = MODELS.get(model_cfg["model"])
    kwargs = {k: v for k, v in model_cfg.items() if k != "model"}
    check_kwargs(model_cls, kwargs, "model_cfg", source)
    check_values(model_cls, kwargs, "model_cfg", source)
    for key, value in kwargs.items():
        nested = getattr(layers, key, None)  # SeparateFCs, SeparateBNNecks: configs named after their layer
        if key in ("backbone_cfg", "Backbone") and isinstance(value, dict) and isinstance(value.get("type"), str) \
                and value["type"] in layers.BACKBONES:
            nested = layers.BACKBONES.get(value["type"])
            value = {k: v for k, v in value.items() if k != "type"}
        if inspect.isclass(nested) and isinstance(value, dict):
            check_kwargs(nested, dict(value), f"model_cfg.{key}", source)
            check_values(nested, value, f"model_cfg.{key}", source)
    try:
        with torch.device("meta"):
            parameters = sum(p.numel() for p in create_model(model_cfg, init=False).parameters())
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except (TypeError, ValueError, ZeroDivisionError, IndexError, KeyError, RuntimeError, AttributeError) as err:
        raise ConfigError(f"{source}: model_cfg: {model_cfg['model']} cannot be built from these values "
                          f"({type(err).__name__}: {' '.join(str(err).split())})"[:400]) from None
    if parameters > MAX_PARAMETERS:  # a typo such as in_channels: 1e9 would try to allocate terabytes
        raise ConfigError(f"{source}: model_cfg: {model_cfg['model']} would have {parameters:,} parameters "
                          f"(more than {MAX_PARAMETERS:,}); check the channel and class counts")


def _check_sampler(sampler: dict, where: str, source: str, training: bool) -> dict:
    """The sampler mapping checked (keys and types through ``SamplerConfig``, then ranges), without its
    ignored keys."""
    kept = {k: v for k, v in sampler.items() if k not in SamplerConfig.IGNORED}
    settings = section_from_dict(SamplerConfig, sampler, where, source)
    # Training draws batches (P x K, or any sequences), testing walks every sequence once: each stage has its own.
    stage = "train" if training else "test"
    fitting = [name for name in SAMPLERS.names() if SAMPLERS.get(name).stage == stage]
    chosen = SAMPLERS.get(sampler["type"]) if sampler.get("type") in SAMPLERS else None
    if chosen is None or chosen.stage != stage:
        raise ConfigError(f"{source}: {where}.type must be one of {', '.join(fitting)}, got {sampler.get('type')!r}")
    sample_type = sampler.get("sample_type")
    if sample_type not in SAMPLE_TYPES:
        hint = closest(str(sample_type), SAMPLE_TYPES)
        raise ConfigError(f"{source}: {where}.sample_type {sample_type!r} is not one of {', '.join(SAMPLE_TYPES)}"
                          + (f" (did you mean {hint!r}?)" if hint else ""))
    batch_error = chosen.batch_size_error(sampler.get("batch_size"))
    if batch_error:
        raise ConfigError(f"{source}: {where}.{batch_error}")
    for key in ("frames_num_fixed", "frames_num_min", "frames_num_max", "frames_skip_num"):
        if key in sampler and sampler[key] < (0 if key == "frames_skip_num" else 1):
            raise ConfigError(f"{source}: {where}.{key} must be positive, got {sampler[key]!r}")
    if sample_type.startswith("unfixed") and settings.frames_num_min > settings.frames_num_max:
        raise ConfigError(f"{source}: {where}.frames_num_min is larger than frames_num_max")
    return kept


def _check_transforms(transforms, where: str, source: str):
    if not isinstance(transforms, list):
        transforms = [transforms]
    for i, entry in enumerate(transforms):
        if not isinstance(entry, dict) or "type" not in entry:
            raise ConfigError(f"{source}: {where}[{i}] must be a mapping with a 'type'")
        cls = TRANSFORMS.get(entry["type"])
        check_kwargs(cls, entry, f"{where}[{i}]", source, extra=("type",), ignorable=("img_w",))
        check_values(cls, {k: v for k, v in entry.items() if k != "type"}, f"{where}[{i}]", source)
        if entry["type"] == "Compose":
            _check_transforms(entry.get("trf_cfg", []), f"{where}[{i}].trf_cfg", source)


def _all_parameters(module, base: type) -> set[str]:
    """Parameter names of every class of ``module`` deriving from ``base``."""
    names = set()
    for obj in vars(module).values():
        if inspect.isclass(obj) and issubclass(obj, base):
            names.update(inspect.signature(obj).parameters)
    return names


def torch_class(module, name: str, base: type, kind: str):
    """A class of ``module`` named ``name`` that subclasses ``base`` (optimizers, schedulers)."""
    names = sorted(n for n, obj in vars(module).items()
                   if inspect.isclass(obj) and issubclass(obj, base) and obj is not base and not n.startswith("_"))
    if name not in names:
        hint = closest(str(name), names)
        raise ConfigError(f"unknown {kind} {name!r}" + (f" (did you mean {hint!r}?)" if hint else "")
                          + f". Known: {', '.join(names)}")
    return getattr(module, name)


def validate(cfg: dict, source: str = "<config>", training: bool = True) -> dict:
    """The config checked and completed: raise ConfigError naming the key and ``source`` for the first problem
    found, else return a new config in which every typed section holds all its keys (absent ones take their
    dataclass default) and keys OpenGait's configs carry but its code ignores are dropped with a warning.

    ``cfg`` itself is never modified. With ``training`` False (a config loaded to test or embed) the optimizer
    and scheduler are checked by name and keys but not built on a trial parameter: the first optimizer built
    in a process imports torch's compiler, 1.5-4 s of a test run's start-up, for a section testing never uses.
    """
    _import_registered()
    for section in SECTIONS:
        if section not in cfg:
            raise ConfigError(f"{source}: missing section {section}")
        if section != "loss_cfg" and not isinstance(cfg[section], dict):
            raise ConfigError(f"{source}: {section} must be a mapping")
    typed = {section: section_from_dict(cls, cfg[section], section, source) for section, cls in TYPED_SECTIONS.items()}
    classes = {section: class_section_from_dict(cls, cfg[section]) for section, cls in CLASS_SECTIONS.items()}
    cfg = {section: copy.deepcopy(cfg[section]) for section in SECTIONS}
    cfg.update({section: asdict(value) for section, value in typed.items()})
    cfg.update({section: class_section_to_dict(value) for section, value in classes.items()})
    data, trainer, evaluator = typed["data_cfg"], typed["trainer_cfg"], typed["evaluator_cfg"]
    if not isinstance(cfg["loss_cfg"], (dict, list)):
        raise ConfigError(f"{source}: loss_cfg must be a mapping or a list of mappings, got {cfg['loss_cfg']!r}"[:300])
    for key in ("total_iter", "save_iter", "log_iter"):
        if getattr(trainer, key) <= 0:
            raise ConfigError(f"{source}: trainer_cfg.{key} must be a positive number of iterations, "
                              f"got {getattr(trainer, key)!r}")
    for section, value in (("trainer_cfg", trainer), ("evaluator_cfg", evaluator)):
        hint = value.restore_hint
        if isinstance(hint, int) and hint < 0:
            raise ConfigError(f"{source}: {section}.restore_hint must be an iteration >= 0 or a file, got {hint}")
    if data.num_workers < 0:
        raise ConfigError(f"{source}: data_cfg.num_workers must be >= 0, got {data.num_workers}")
    if trainer.keep_checkpoints < 0:
        raise ConfigError(f"{source}: trainer_cfg.keep_checkpoints must be >= 0")
    cfg["trainer_cfg"]["sampler"] = _check_sampler(trainer.sampler, "trainer_cfg.sampler", source, training=True)
    cfg["evaluator_cfg"]["sampler"] = _check_sampler(evaluator.sampler, "evaluator_cfg.sampler", source,
                                                     training=False)
    _check_transforms(cfg["trainer_cfg"]["transform"], "trainer_cfg.transform", source)
    _check_transforms(cfg["evaluator_cfg"]["transform"], "evaluator_cfg.transform", source)
    if trainer.amp_dtype not in (None, "float16", "bfloat16"):
        raise ConfigError(f"{source}: trainer_cfg.amp_dtype must be float16 or bfloat16, got {trainer.amp_dtype!r}")
    if evaluator.metric not in ("euc", "cos"):
        raise ConfigError(f"{source}: evaluator_cfg.metric must be 'euc' or 'cos', got {evaluator.metric!r}")

    # The protocol is needed only at test time, hours into a run: check now that it exists.
    from .evaluation.protocols import protocol_for_eval_func

    try:
        protocol_for_eval_func(evaluator.eval_func, data.test_dataset_name or data.dataset_name,
                               evaluator.cross_view_gallery)
    except ValueError as err:
        raise ConfigError(f"{source}: evaluator_cfg.eval_func: {err} (set data_cfg.test_dataset_name to the "
                          "benchmark whose protocol applies)") from None

    model_cfg = cfg["model_cfg"]
    if "model" not in model_cfg:
        raise ConfigError(f"{source}: model_cfg.model is missing")
    _check_model(model_cfg, source)

    for i, loss in enumerate(loss_entries(cfg)):
        where = f"loss_cfg[{i}]" if isinstance(cfg["loss_cfg"], list) else "loss_cfg"
        if not isinstance(loss, dict) or "type" not in loss:
            raise ConfigError(f"{source}: {where} must be a mapping with a 'type'")
        cls = LOSSES.get(loss["type"])
        kwargs = {k: v for k, v in loss.items() if k not in LOSS_COMMON_KEYS}
        check_kwargs(cls, kwargs, where, source, extra=LOSS_COMMON_KEYS)
        check_values(cls, kwargs, where, source)
        if not isinstance(loss.get("log_prefix", ""), str):
            raise ConfigError(f"{source}: {where}.log_prefix must be a string, got {loss['log_prefix']!r}")

    opt = cfg["optimizer_cfg"]
    solver = torch_class(torch.optim, opt["solver"], torch.optim.Optimizer, "optimizer_cfg.solver")
    check_kwargs(solver, opt, "optimizer_cfg", source, extra=("solver",),
                 ignorable=_all_parameters(torch.optim, torch.optim.Optimizer))
    check_values(solver, opt, "optimizer_cfg", source)
    sched = cfg["scheduler_cfg"]
    scheduler = torch_class(torch.optim.lr_scheduler, sched["scheduler"],
                            torch.optim.lr_scheduler.LRScheduler, "scheduler_cfg.scheduler")
    check_kwargs(scheduler, sched, "scheduler_cfg", source, extra=("scheduler",),
                 ignorable=_all_parameters(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler))
    check_values(scheduler, sched, "scheduler_cfg", source)
    if not training:
        return cfg
    # Ranges the classes check themselves (a negative lr, betas outside [0, 1)): build both on one parameter.
    try:
        optimizer = solver([torch.nn.Parameter(torch.zeros(1))],
                           **{k: v for k, v in opt.items() if k != "solver"})
        scheduler(optimizer, **{k: v for k, v in sched.items() if k != "scheduler"})
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError) as err:
        raise ConfigError(f"{source}: optimizer_cfg/scheduler_cfg: {' '.join(str(err).split())}"[:300]) from None
    return cfg


def _import_registered():
    """Importing these modules fills the registries."""
    from . import losses  # noqa: F401
    from . import models  # noqa: F401
    from .data import sampler, transforms  # noqa: F401


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
