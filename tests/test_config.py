import textwrap

import pytest

from gaitrec.config import apply_overrides, load_config, merge
from gaitrec.registry import ConfigError

BASELINE_MODEL = textwrap.dedent("""
    model_cfg:
      model: Baseline
      backbone_cfg:
        type: Plain
        in_channels: 1
        layers_cfg: [BC-8, M, BC-16]
      SeparateFCs: {in_channels: 16, out_channels: 16, parts_num: 3}
      SeparateBNNecks: {class_num: 4, in_channels: 16, parts_num: 3}
      bin_num: [2, 1]
""")


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_merge_dicts_recursively_lists_replace():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    out = merge(base, {"a": {"y": [3]}, "c": 4})
    assert out == {"a": {"x": 1, "y": [3]}, "b": 2, "c": 4}
    assert base["a"]["y"] == [1, 2]  # inputs untouched


def test_defaults_fill_missing_keys(tmp_path):
    cfg = load_config(write(tmp_path, BASELINE_MODEL + "trainer_cfg:\n  total_iter: 7\n"))
    assert cfg["trainer_cfg"]["total_iter"] == 7
    assert cfg["trainer_cfg"]["log_iter"] == 100  # from the defaults
    assert cfg["optimizer_cfg"] == {"lr": 0.1, "momentum": 0.9, "solver": "SGD", "weight_decay": 0.0005}
    assert cfg["trainer_cfg"]["sampler"]["batch_size"] == [8, 16]


def test_user_loss_list_replaces_default_loss(tmp_path):
    extra = "loss_cfg:\n  - {type: CrossEntropyLoss, scale: 16, log_prefix: softmax, loss_term_weight: 0.1}\n"
    cfg = load_config(write(tmp_path, BASELINE_MODEL + extra))
    assert cfg["loss_cfg"] == [{"type": "CrossEntropyLoss", "scale": 16, "log_prefix": "softmax",
                                "loss_term_weight": 0.1}]


def test_overrides(tmp_path):
    cfg = load_config(write(tmp_path, BASELINE_MODEL), ["trainer_cfg.total_iter=100", "optimizer_cfg.lr=1e-3",
                                                       "trainer_cfg.sampler.batch_size=[2, 3]"])
    assert cfg["trainer_cfg"]["total_iter"] == 100
    assert cfg["optimizer_cfg"]["lr"] == pytest.approx(1e-3)
    assert cfg["trainer_cfg"]["sampler"]["batch_size"] == [2, 3]
    cfg = apply_overrides({"loss_cfg": [{"margin": 0.2}]}, ["loss_cfg.0.margin=0.3"])
    assert cfg["loss_cfg"][0]["margin"] == 0.3
    with pytest.raises(ConfigError, match="not an index"):
        apply_overrides({"loss_cfg": [{}]}, ["loss_cfg.3.margin=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["trainer_cfg.total_iter"])


def test_typo_names_key_file_and_closest(tmp_path):
    path = write(tmp_path, BASELINE_MODEL + "trainer_cfg:\n  totl_iter: 5\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "trainer_cfg.totl_iter" in msg and "did you mean trainer_cfg.total_iter" in msg


def test_wrong_type_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="trainer_cfg.total_iter must be int, got 'many'"):
        load_config(write(tmp_path, BASELINE_MODEL + "trainer_cfg:\n  total_iter: many\n"))
    with pytest.raises(ConfigError, match="trainer_cfg.with_test must be bool"):
        load_config(write(tmp_path, BASELINE_MODEL + "trainer_cfg:\n  with_test: 1\n"))


def test_model_and_loss_keys_checked_against_constructors(tmp_path):
    with pytest.raises(ConfigError, match=r"model_cfg.bin_nums \(did you mean model_cfg.bin_num\?\)"):
        load_config(write(tmp_path, BASELINE_MODEL + "  bin_nums: [1]\n"))
    with pytest.raises(ConfigError, match=r"loss_cfg\[0\].marign \(did you mean loss_cfg\[0\].margin\?\)"):
        load_config(write(tmp_path, BASELINE_MODEL + "loss_cfg:\n  - {type: TripletLoss, marign: 0.2}\n"))


def test_unknown_names_list_known(tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'Baselin'. Did you mean 'Baseline'"):
        load_config(write(tmp_path, BASELINE_MODEL.replace("model: Baseline", "model: Baselin")))
    with pytest.raises(ConfigError, match="unknown optimizer_cfg.solver 'Adm' \\(did you mean 'Adam'"):
        load_config(write(tmp_path, BASELINE_MODEL + "optimizer_cfg:\n  solver: Adm\n"))
    with pytest.raises(ConfigError, match="unknown transform 'BaseSilCutting'"):
        load_config(write(tmp_path, BASELINE_MODEL + "trainer_cfg:\n  transform:\n    - type: BaseSilCutting\n"))
    with pytest.raises(ConfigError, match="sample_type 'fixed_unorderd'.*did you mean 'fixed_unordered'"):
        load_config(write(tmp_path, BASELINE_MODEL + "trainer_cfg:\n  sampler:\n    sample_type: fixed_unorderd\n"))


def test_unknown_section_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="unknown section 'trainer' \\(did you mean 'trainer_cfg'"):
        load_config(write(tmp_path, BASELINE_MODEL + "trainer:\n  total_iter: 1\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model_cfg: [unclosed\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_opengait_only_keys_are_accepted_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="trainer_cfg.enable_distributed is not used"):
        load_config(write(tmp_path, BASELINE_MODEL + "trainer_cfg:\n  enable_distributed: true\n"))


def test_defaults_of_another_optimizer_or_scheduler_do_not_leak(tmp_path):
    cfg = load_config(write(tmp_path, BASELINE_MODEL + "optimizer_cfg:\n  solver: Adam\n  lr: 0.001\n"
                                                        "scheduler_cfg:\n  scheduler: StepLR\n  step_size: 10\n"))
    assert cfg["optimizer_cfg"] == {"solver": "Adam", "lr": 0.001}
    assert cfg["scheduler_cfg"] == {"scheduler": "StepLR", "step_size": 10}
    cfg = load_config(write(tmp_path, BASELINE_MODEL + "optimizer_cfg:\n  lr: 0.05\n"))
    assert cfg["optimizer_cfg"]["momentum"] == 0.9 and cfg["optimizer_cfg"]["lr"] == 0.05


def test_keys_opengait_ignores_load_with_a_warning_and_are_dropped(tmp_path):
    extra = ("optimizer_cfg:\n  solver: Adam\n  lr: 0.0001\n  momentum: 0.9\n  weight_decay: 0\n"
             "trainer_cfg:\n  transform:\n    - type: BaseSilCuttingTransform\n      img_w: 64\n")
    with pytest.warns(UserWarning) as caught:
        cfg = load_config(write(tmp_path, BASELINE_MODEL + extra))
    messages = " | ".join(str(w.message) for w in caught)
    assert "optimizer_cfg.momentum does not apply to Adam" in messages
    assert "img_w does not apply to BaseSilCuttingTransform" in messages
    assert "momentum" not in cfg["optimizer_cfg"] and cfg["trainer_cfg"]["transform"] == [
        {"type": "BaseSilCuttingTransform"}]
    with pytest.raises(ConfigError, match=r"optimizer_cfg.moment \(did you mean optimizer_cfg.momentum\?\)"):
        load_config(write(tmp_path, BASELINE_MODEL + "optimizer_cfg:\n  moment: 0.9\n"))


def test_every_shipped_config_loads():
    from gaitrec.config import CONFIG_DIR

    paths = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if p.name != "default.yaml")
    assert len(paths) >= 20
    import warnings

    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a shipped config warns about none of its own keys at every use
            cfg = load_config(path)
        assert cfg["model_cfg"]["model"]


def test_unknown_protocol_is_caught_at_load_time(tmp_path):
    with pytest.raises(ConfigError, match="evaluator_cfg.eval_func: OpenGait's evaluate_indoor_dataset has an indoor "
                                          "protocol for .* not for dataset 'MyData'"):
        load_config(write(tmp_path, BASELINE_MODEL + "data_cfg:\n  dataset_name: MyData\n  test_dataset_name: MyData\n"))
    with pytest.raises(ConfigError, match="unknown eval_func 'evaluate_indor_dataset'"):
        load_config(write(tmp_path, BASELINE_MODEL + "evaluator_cfg:\n  eval_func: evaluate_indor_dataset\n"))


def test_each_stage_takes_its_own_sampler(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer_cfg.sampler.type must be one of .*TripletSampler.*, "
                                          r"got 'InferenceSampler'"):
        load_config(write(tmp_path, BASELINE_MODEL + "trainer_cfg:\n  sampler:\n    type: InferenceSampler\n"))
    # OpenGait's other training samplers are accepted, each with its own batch_size form.
    cfg = load_config(write(tmp_path, BASELINE_MODEL + "trainer_cfg:\n  sampler:\n    type: CommonSampler\n"
                                                       "    batch_size: 12\n"))
    assert cfg["trainer_cfg"]["sampler"]["type"] == "CommonSampler"
    with pytest.raises(ConfigError, match="trainer_cfg.sampler.batch_size must be a positive integer, got \\[2, 3\\]"):
        load_config(write(tmp_path, BASELINE_MODEL + "trainer_cfg:\n  sampler:\n    type: CommonSampler\n"
                                                     "    batch_size: [2, 3]\n"))


@pytest.mark.parametrize("value", ["-5", "0"])
def test_a_schedule_of_no_iterations_is_refused_naming_the_key(tmp_path, value):
    with pytest.raises(ConfigError, match=f"trainer_cfg.total_iter must be a positive number of iterations, got {value}"):
        load_config(write(tmp_path, BASELINE_MODEL), [f"trainer_cfg.total_iter={value}"])


def test_the_evaluator_follows_an_overridden_schedule_unless_told_otherwise(tmp_path):
    path = write(tmp_path, BASELINE_MODEL + "trainer_cfg:\n  total_iter: 400\nevaluator_cfg:\n  restore_hint: 400\n")
    assert load_config(path, ["trainer_cfg.total_iter=100"])["evaluator_cfg"]["restore_hint"] == 100
    assert load_config(path, ["trainer_cfg.total_iter=100", "evaluator_cfg.restore_hint=400"]
                       )["evaluator_cfg"]["restore_hint"] == 400


def test_shipped_configs_by_name_from_any_directory(tmp_path, monkeypatch):
    from gaitrec.config import CONFIG_DIR, find_config

    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert find_config("gaitset/gaitset.yaml") == CONFIG_DIR / "gaitset" / "gaitset.yaml"
    assert find_config("configs/gaitgl/gaitgl.yaml") == CONFIG_DIR / "gaitgl" / "gaitgl.yaml"
    assert find_config("gaitset") == CONFIG_DIR / "gaitset" / "gaitset.yaml"
    assert load_config("gaitset")["model_cfg"]["model"] == "GaitSet"
    with pytest.raises(ConfigError, match="names several shipped configs: gln/gln_phase1.yaml, gln/gln_phase2.yaml"):
        find_config("gln")
    with pytest.raises(ConfigError, match="config file not found: gaitsett \\(shipped configs with a close name: "
                                          "gaitset/gaitset.yaml"):
        find_config("gaitsett")
    (tmp_path / "gaitset").write_text("model_cfg: {model: Baseline}\n")  # a file here wins over a shipped name
    assert find_config("gaitset").resolve() == tmp_path / "gaitset"


def test_files_that_are_not_configs_are_named_in_one_line(tmp_path):
    png = tmp_path / "sheet.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(ConfigError, match="sheet.png: not a YAML text file \\(a PNG image\\)"):
        load_config(png)
    with pytest.raises(ConfigError, match="is a directory, not a config file"):
        load_config(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "model_cfg:\n  bin_num: [1, 2\ntrainer_cfg: {}\n"))
    message = str(err.value)
    assert "\n" not in message and "not valid YAML, line 3, column" in message
    assert "opened at line 2" in message


def test_default_yaml_shows_exactly_the_dataclass_defaults():
    from gaitrec.config import DEFAULT_CONFIG, default_config, read_yaml

    assert read_yaml(DEFAULT_CONFIG) == default_config()


def test_validation_never_modifies_the_config_it_checks(tmp_path):
    import copy
    import warnings

    from gaitrec.config import validate

    extra = ("optimizer_cfg:\n  solver: Adam\n  lr: 0.0001\n  momentum: 0.9\n"
             "trainer_cfg:\n  enable_distributed: true\n  sampler: {points_in_use: [x]}\n"
             "  transform:\n    - type: BaseSilCuttingTransform\n      img_w: 64\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = load_config(write(tmp_path, BASELINE_MODEL + extra), validate_config=False)
        del cfg["trainer_cfg"]["channels_last"], cfg["data_cfg"]["num_workers"]  # a config from an older gaitrec
        before = copy.deepcopy(cfg)
        checked = validate(cfg, source="run.yaml")
    assert cfg == before
    # The returned copy is complete and without the keys gaitrec ignores.
    assert checked["trainer_cfg"]["channels_last"] is False and checked["data_cfg"]["num_workers"] == 1
    assert "enable_distributed" not in checked["trainer_cfg"]
    assert "points_in_use" not in checked["trainer_cfg"]["sampler"]
    assert checked["optimizer_cfg"] == {"solver": "Adam", "lr": 0.0001}
    assert checked["trainer_cfg"]["transform"] == [{"type": "BaseSilCuttingTransform"}]


def test_a_loaded_config_holds_every_field_of_the_typed_sections(tmp_path):
    from dataclasses import fields

    from gaitrec.config import TYPED_SECTIONS

    cfg = load_config(write(tmp_path, BASELINE_MODEL))
    for section, cls in TYPED_SECTIONS.items():
        assert set(cfg[section]) == {f.name for f in fields(cls)}, section


def test_typed_sections_check_keys_and_types_naming_the_file(tmp_path):
    path = write(tmp_path, BASELINE_MODEL + "data_cfg:\n  num_workers: two\n")
    with pytest.raises(ConfigError, match=f"{path}: data_cfg.num_workers must be int, got 'two'"):
        load_config(path)
    path = write(tmp_path, BASELINE_MODEL + "evaluator_cfg:\n  sampler: {frames_all_limt: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown key evaluator_cfg.sampler.frames_all_limt "
                                          r"\(did you mean evaluator_cfg.sampler.frames_all_limit\?\)"):
        load_config(path)
    path = write(tmp_path, BASELINE_MODEL + "data_cfg:\n  dataset_partition: 3\n")
    with pytest.raises(ConfigError, match="data_cfg.dataset_partition must be str or null, got 3"):
        load_config(path)


def test_the_collator_takes_its_frame_defaults_from_the_sampler_dataclass():
    from gaitrec.config import SamplerConfig
    from gaitrec.data.sampler import SequenceCollator

    collator = SequenceCollator({"sample_type": "all_ordered"}, [{"type": "BaseSilTransform"}])
    defaults = SamplerConfig()
    assert (collator.frames_num_fixed, collator.frames_num_min, collator.frames_num_max, collator.frames_skip_num,
            collator.frames_all_limit) == (defaults.frames_num_fixed, defaults.frames_num_min,
                                           defaults.frames_num_max, defaults.frames_skip_num,
                                           defaults.frames_all_limit)


def test_a_section_overridden_by_a_scalar_is_refused_even_where_the_hint_follows_the_schedule(tmp_path):
    path = write(tmp_path, BASELINE_MODEL + "trainer_cfg:\n  total_iter: 400\nevaluator_cfg:\n  restore_hint: 400\n")
    with pytest.raises(ConfigError, match="trainer_cfg must be a mapping"):
        load_config(path, ["trainer_cfg=a string"])
