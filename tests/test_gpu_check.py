"""benchmarks/gpu_check.sh: valid bash, a CPU smoke run through every step's code, a clear refusal without CUDA."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # the GPU check script end to end

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def run_script(*args, timeout=300):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_wrapper_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_smoke_run_passes_every_check_and_leaves_results_md_alone(tmp_path):
    before = RESULTS.read_bytes()
    proc = run_script("--smoke", "--json", str(tmp_path / "check.json"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert RESULTS.read_bytes() == before  # a dry run writes nothing unless asked
    out = proc.stdout
    for heading in ("### 1. CUDA forward equals CPU forward (fp32)", "### 2. Training with mixed precision",
                    "### 3. Two processes against one", "### 4. Inference throughput", "### 5. CASIA-B-sized test"):
        assert heading in out
    assert "step(s) failed" in out and "0 failed; 0 step(s) failed" in out
    saved = json.loads((tmp_path / "check.json").read_text())
    names = [name for name, _, _ in saved["checks"]]
    assert saved["ok"] is True and saved["failures"] == {}
    assert "correctness GaitSet" in names
    assert "training GaitSet bf16: checkpoint reloads" in names
    assert "casia-b-sized test GaitSet" in names
    assert all(passed for _, passed, _ in saved["checks"])


def load_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    return gpu_check


def test_write_goes_only_where_asked(tmp_path, capsys):
    gpu_check = load_module()
    target = tmp_path / "RESULTS.md"
    target.write_text("# Benchmarks\n\n## Other (other.py)\n\nkept\n")
    threads = torch.get_num_threads()
    try:
        assert gpu_check.main(["--smoke", "--steps", "ddp", "--write", str(target)]) == 0  # ddp: skipped in smoke
    finally:
        torch.set_num_threads(threads)
    text = target.read_text()
    assert "## Other (other.py)\n\nkept" in text
    assert "## GPU check (gpu_check.py)" in text and "skipped: not run with --smoke" in text
    assert "not asked for (--steps)" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_the_wrapper_says_what_is_missing():
    proc = run_script("--quick", timeout=120)
    assert proc.returncode == 3
    assert "CPU-only build" in proc.stderr or "sees no GPU" in proc.stderr
    assert "--dry-run" in proc.stderr


def test_bad_arguments_exit_2(capsys):
    gpu_check = load_module()
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.parse_args(["--smoke", "--models", "NoSuchNet"])
    assert exit_info.value.code == 2
    assert "unknown model(s) NoSuchNet" in capsys.readouterr().err
