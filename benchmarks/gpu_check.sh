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
for arg in "$@"; do
    case "$arg" in
        --dry-run|--smoke|--device=cpu) want_cuda=0 ;;
        -h|--help) want_cuda=0 ;;
    esac
done
prev=""
for arg in "$@"; do
    if [ "$prev" = "--device" ] && [ "$arg" = "cpu" ]; then want_cuda=0; fi
    prev="$arg"
done

missing() {
    echo "gpu_check: $*" >&2
    exit 3
}

has_torch() {
    "$1" -c "import torch" >/dev/null 2>&1
}

if [ -n "${PYTHON:-}" ]; then
    py="$PYTHON"
    command -v "$py" >/dev/null 2>&1 || [ -x "$py" ] || missing "PYTHON=$py is not an executable"
elif [ -x .venv/bin/python ]; then
    py=.venv/bin/python
elif command -v python3 >/dev/null 2>&1 && has_torch python3; then
    py=python3
else
    echo "gpu_check: no .venv and no python3 with torch; trying 'make install' to create .venv" >&2
    if ! make install >/tmp/gpu_check_install.log 2>&1; then
        tail -n 5 /tmp/gpu_check_install.log >&2
        missing "'make install' failed (full log: /tmp/gpu_check_install.log). Without a network pip cannot fetch" \
            "torch: create a virtual environment with a CUDA build of torch (e.g. TORCH_SPEC='/path/to/torch.whl'" \
            "make install) and run again, or point PYTHON at an interpreter that has one."
    fi
    py=.venv/bin/python
fi

has_torch "$py" || missing "$py cannot import torch ($("$py" -c 'import torch' 2>&1 | tail -n 1)); install a" \
    "torch build into it (make install TORCH_SPEC=...) or set PYTHON to an interpreter that has one"

# gaitrec's own dependencies (the package need not be installed: PYTHONPATH points at this tree).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
deps=$("$py" - <<'EOF' 2>/dev/null
import importlib.util
names = {"numpy": "numpy", "yaml": "pyyaml", "tqdm": "tqdm", "cv2": "opencv-python-headless",
         "tensorboard": "tensorboard"}
print(" ".join(pkg for mod, pkg in names.items() if importlib.util.find_spec(mod) is None))
EOF
)
[ -z "$deps" ] || missing "$py lacks gaitrec's dependencies: $deps (pip install -e '.[dev]' in this tree)"

if [ "$want_cuda" = 1 ]; then
    status=$("$py" - <<'EOF'
import torch
if torch.version.cuda is None:
    print(f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None): install a CUDA build, "
          "e.g. make install TORCH_SPEC='torch==2.13.0 --index-url <CUDA wheel index>'")
elif not torch.cuda.is_available():
    print(f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no GPU "
          "(driver missing or too old, or CUDA_VISIBLE_DEVICES hides them); check nvidia-smi")
EOF
)
    if [ -n "$status" ]; then
        if command -v nvidia-smi >/dev/null 2>&1; then
            nvidia-smi -L >&2 2>&1 || true
        else
            echo "gpu_check: nvidia-smi not found" >&2
        fi
        missing "$status. For a CPU check of the script itself: bash benchmarks/gpu_check.sh --dry-run"
    fi
fi

exec "$py" benchmarks/gpu_check.py "$@"
