"""`gaitrec bench`: a documented command that runs the benchmark scripts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gaitrec.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_bench_help_names_the_suites(capsys):
    with pytest.raises(SystemExit) as done:
        main(["bench", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--smoke" in out and "gaitrec bench --quick" in out


def test_bench_smoke_runs_the_evaluation_benchmark_and_writes_nothing():
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "gaitrec", "bench", "--smoke"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "bench_eval_scale.py" in done.stdout and "evaluated in" in done.stdout
    assert results.read_bytes() == before
