"""The thread-count rule: free cores, not every core, unless the user says otherwise."""
from __future__ import annotations

import pytest
import torch

from gaitrec.cli import main
from gaitrec.config import CONFIG_DIR
from gaitrec.threads import choose_threads


def test_busy_machine_gets_the_free_cores_only():
    assert choose_threads({}, cores=2, load=2.4) == 1  # two busy neighbours on 2 cores: one thread, not two
    assert choose_threads({}, cores=8, load=2.0) == 6
    assert choose_threads({}, cores=4, load=0.0) == 4
    assert choose_threads({}, cores=4, load=9.0) == 1


def test_torchrun_processes_share_the_free_cores():
    assert choose_threads({"LOCAL_WORLD_SIZE": "4"}, cores=16, load=0.0) == 4


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
