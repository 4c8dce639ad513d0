#!/usr/bin/env bash
# GPU check of gaitrec: finds a Python with torch, says plainly what is missing, then runs gpu_check.py.
#
#   bash benchmarks/gpu_check.sh [--quick]     # on a machine with CUDA; records into benchmarks/RESULTS.md
#   bash benchmarks/gpu_check.sh --dry-run     # on the CPU at tiny sizes; writes nothing unless --write
#   bash benchmarks/gpu_check.sh --smoke       # the dry run's fastest subset
#
# Python: $PYTHON if set, else .venv/bin/python, else a python3 that can import torch, else `make install`
# creates .venv (which needs the network, or a local wheel through TORCH_SPEC). Nothing is installed otherwise.
# Exit status: 0 every check passed, 1 a check or a step failed, 2 bad arguments, 3 torch or CUDA missing.
set -u
cd "$(dirname "$0")/.." || exit 3

want_cuda=1
prev=""
for arg in "$@"; do
    case "$arg" in
        --dry-run|--smoke|--device=cpu|-h|--help) want_cuda=0 ;;
    esac
    if [ "$prev" = "--device" ] && [ "$arg" = "cpu" ]; then want_cuda=0; fi
    prev="$arg"
done

missing() {
    echo "gpu_check: $*" >&2
    exit 3
}

if [ -n "${PYTHON:-}" ]; then
    py="$PYTHON"
    command -v "$py" >/dev/null 2>&1 || missing "PYTHON=$py is not an executable"
elif [ -x .venv/bin/python ]; then
    py=.venv/bin/python
elif command -v python3 >/dev/null 2>&1 && python3 -c "import torch" >/dev/null 2>&1; then
    py=python3
else
    log="${TMPDIR:-/tmp}/gpu_check_install.log"
    echo "gpu_check: no .venv and no python3 with torch; trying 'make install' to create .venv" >&2
    if ! make install >"$log" 2>&1; then
        tail -n 5 "$log" >&2
        missing "'make install' failed (full log: $log). Without a network pip cannot fetch torch: create a" \
            "virtual environment with a CUDA build of torch (e.g. make install TORCH_SPEC=/path/to/torch.whl)" \
            "and run again, or point PYTHON at an interpreter that has one."
    fi
    py=.venv/bin/python
fi

# One interpreter start checks torch, gaitrec's dependencies and CUDA (the package need not be installed:
# PYTHONPATH points at this tree). It prints what is missing, one line each, and nothing when all is there.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
problems=$(GPU_CHECK_WANT_CUDA=$want_cuda "$py" - <<'PY' 2>&1
import importlib.util
import os

try:
    import torch
except Exception as err:  # any import failure is the message
    print(f"cannot import torch ({type(err).__name__}: {err}); install a torch build into this interpreter "
          "(make install TORCH_SPEC=...) or set PYTHON to one that has it")
    raise SystemExit(0)
names = {"numpy": "numpy", "yaml": "pyyaml", "tqdm": "tqdm", "cv2": "opencv-python-headless",
         "tensorboard": "tensorboard"}
lacking = [pkg for mod, pkg in names.items() if importlib.util.find_spec(mod) is None]
if lacking:
    print(f"missing gaitrec dependencies: {' '.join(lacking)} (pip install -e .[dev] in this tree)")
if os.environ["GPU_CHECK_WANT_CUDA"] == "1":
    if torch.version.cuda is None:
        print(f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None): install a CUDA build, "
              "e.g. make install TORCH_SPEC='torch==2.13.0 --index-url <CUDA wheel index>'")
    elif not torch.cuda.is_available():
        print(f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no GPU (driver missing "
              "or too old, or CUDA_VISIBLE_DEVICES hides them); check nvidia-smi")
PY
)
if [ -n "$problems" ]; then
    echo "gpu_check: with $py:" >&2
    echo "$problems" | sed 's/^/  - /' >&2
    if [ "$want_cuda" = 1 ]; then
        if command -v nvidia-smi >/dev/null 2>&1; then
            nvidia-smi -L >&2 || true
        else
            echo "  (nvidia-smi not found)" >&2
        fi
    fi
    missing "nothing was run. For a CPU check of the script itself: bash benchmarks/gpu_check.sh --dry-run"
fi

exec "$py" benchmarks/gpu_check.py "$@"
