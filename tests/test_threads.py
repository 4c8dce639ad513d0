"""The thread-count rule: free cores, not every core, unless the user says otherwise."""
from __future__ import annotations

import pytest
import torch

from gaitrec.cli import main
from gaitrec.config import CONFIG_DIR
from gaitrec.threads import apply_thread_count, choose_threads


def test_busy_machine_gets_the_free_cores_only():
    assert choose_threads({}, cores=2, load=2.4) == 1  # two busy neighbours on 2 cores: one thread, not two
    assert choose_threads({}, cores=8, load=2.0) == 6
    assert choose_threads({}, cores=4, load=0.0) == 4
    assert choose_threads({}, cores=4, load=9.0) == 1


def test_torchrun_processes_share_the_free_cores():
    assert choose_threads({"LOCAL_WORLD_SIZE": "4"}, cores=16, load=0.0) == 4
    # Two processes on 2 cores: one thread each, quiet or busy, never two each.
    assert choose_threads({"LOCAL_WORLD_SIZE": "2"}, cores=2, load=0.0) == 1
    assert choose_threads({"LOCAL_WORLD_SIZE": "2"}, cores=2, load=6.0) == 1
    assert choose_threads({"LOCAL_WORLD_SIZE": "2"}, cores=16, load=4.0) == 6


def test_under_torchrun_omp_num_threads_is_not_the_users_word():
    # torchrun puts OMP_NUM_THREADS=1 into every process itself; one exported for single runs is not per rank.
    assert choose_threads({"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}, cores=16, load=0.0) == 8
    assert choose_threads({"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "2"}, cores=2, load=0.0) == 1
    assert choose_threads({"LOCAL_WORLD_SIZE": "2", "GAITREC_THREADS": "3"}, cores=2, load=0.0) == 3


def test_oversubscription_asked_for_is_granted_with_a_warning(monkeypatch):
    monkeypatch.setattr("gaitrec.threads.usable_cores", lambda: 2)
    try:
        with pytest.warns(UserWarning, match="GAITREC_THREADS: 2 process\\(es\\) x 2 thread\\(s\\) on 2 core"):
            assert apply_thread_count({"LOCAL_WORLD_SIZE": "2", "GAITREC_THREADS": "2"}) == 2
    finally:
        torch.set_num_threads(1)


def test_user_settings_win_over_the_load():
    assert choose_threads({"GAITREC_THREADS": "3", "OMP_NUM_THREADS": "5"}, cores=2, load=2.0) == 3
    assert choose_threads({"OMP_NUM_THREADS": "5"}, cores=2, load=2.0) == 5


def test_a_bad_thread_count_is_one_line_exit_2(monkeypatch, capsys):
    with pytest.raises(ValueError, match="GAITREC_THREADS='many'"):
        choose_threads({"GAITREC_THREADS": "many"})
    monkeypatch.setenv("GAITREC_THREADS", "0")
    assert main(["params", str(CONFIG_DIR / "gaitset" / "gaitset.yaml")]) == 2
    assert "GAITREC_THREADS='0' must be a positive number of threads" in capsys.readouterr().err


def test_cli_applies_the_count_at_start(monkeypatch):
    monkeypatch.setenv("GAITREC_THREADS", "2")
    try:
        assert main(["params", str(CONFIG_DIR / "gaitset" / "gaitset.yaml")]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_pretreatment_sizes_its_pool_by_the_same_rule(tmp_path, monkeypatch):
    import gaitrec.data.pretreat as pretreat_module
    from gaitrec.synth import generate_dataset

    generate_dataset(tmp_path / "raw", raw=True, subjects=1, frames=4, views=["000"], types=["nm-01", "nm-02"],
                     progress=False)
    sizes = []

    class RecordingPool:  # stands in for multiprocessing.Pool: records its size, runs the jobs here
        def __init__(self, processes):
            sizes.append(processes)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def imap_unordered(self, func, jobs, chunksize=1):
            return map(func, jobs)

    monkeypatch.setattr(pretreat_module.multiprocessing, "Pool", RecordingPool)
    monkeypatch.setenv("GAITREC_THREADS", "2")
    pretreat_module.pretreat(tmp_path / "raw", tmp_path / "two", progress=False)
    monkeypatch.setenv("GAITREC_THREADS", "1")
    pretreat_module.pretreat(tmp_path / "raw", tmp_path / "one", progress=False)
    assert sizes == [2]  # one free core: no pool at all
    assert len(list((tmp_path / "one").glob("*/*/*/*.pkl"))) == 2


def test_more_processes_than_cores_by_the_rule_is_quiet(monkeypatch, recwarn):
    monkeypatch.setattr("gaitrec.threads.usable_cores", lambda: 2)
    try:
        assert apply_thread_count({"LOCAL_WORLD_SIZE": "4"}) == 1
        assert apply_thread_count({"OMP_NUM_THREADS": "3"}) == 3
    finally:
        torch.set_num_threads(1)
    assert [str(w.message).split(":")[0] for w in recwarn] == ["OMP_NUM_THREADS"]


def test_the_running_count_is_read_from_the_kernel_statistics():
    from gaitrec.threads import current_load, tasks_running

    stat = "cpu  1 2 3\nctxt 99\nprocs_running 3\nprocs_blocked 0\n"
    assert tasks_running(stat) == 3
    assert tasks_running("cpu 1 2 3\n") is None
    load = current_load(readings=2, interval=0.0)
    assert 0.0 <= load < 10_000  # this process's own reading is not counted as load


def test_loader_workers_only_take_cores_the_forwards_leave():
    from gaitrec.threads import loader_workers

    assert loader_workers(1, threads=2, cores=2, environ={}) == 0  # both cores computing: read in the process
    assert loader_workers(1, threads=1, cores=2, environ={}) == 1  # a busy machine's run on one thread
    assert loader_workers(4, threads=14, cores=16, environ={}) == 2
    assert loader_workers(2, threads=4, cores=16, environ={}) == 2  # never more than asked for
    assert loader_workers(0, threads=1, cores=16, environ={}) == 0
    assert loader_workers(1, threads=1, cores=2, environ={"LOCAL_WORLD_SIZE": "2"}) == 0  # the sibling's core


@pytest.mark.parametrize("threads, expected", [(2, 0), (1, 1)])
def test_cpu_feature_extraction_reads_in_the_process_when_the_forwards_take_every_core(
        constructed_dataset, partition_file, monkeypatch, threads, expected):
    from gaitrec.config import load_config
    from gaitrec.data.dataset import build_datasets
    from gaitrec.engine.distributed import DistContext
    from gaitrec.engine.inference import extract_features
    from gaitrec.models import create_model

    cfg = load_config(CONFIG_DIR / "demo" / "baseline_synthgait.yaml",
                      [f"data_cfg.dataset_root={constructed_dataset}", f"data_cfg.dataset_partition={partition_file}",
                       "evaluator_cfg.transform=[{type: BaseSilTransform}]"], training=False)
    _, test_set = build_datasets(cfg["data_cfg"], train=False)
    model = create_model(cfg["model_cfg"])
    built = []

    class Recording(torch.utils.data.DataLoader):
        def __init__(self, *args, **kwargs):
            built.append(kwargs["num_workers"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(torch.utils.data, "DataLoader", Recording)
    monkeypatch.setattr("gaitrec.threads.usable_cores", lambda: 2)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        features = extract_features(model, test_set, cfg["evaluator_cfg"], DistContext(0, 1, 0, torch.device("cpu")),
                                    num_workers=1, progress=False)
    finally:
        torch.set_num_threads(previous)
    assert built == [expected]
    assert len(features["embeddings"]) == len(test_set) == 4
