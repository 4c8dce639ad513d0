# Two entry points for a fresh clone: `make demo` and `make test`. Both build .venv first.
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install demo test test-fast bench clean

install: $(VENV)/.installed

# torch goes first so that the CPU wheel (or the one named by TORCH_SPEC) is what satisfies the package's range.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

demo: install
	$(BIN)/gaitrec demo

test: install
	$(BIN)/python -m pytest tests

# The development loop: every test not marked slow (training runs, exports, subprocesses), in seconds.
test-fast: install
	$(BIN)/python -m pytest tests -q -m "not slow"

# The self-contained measurements, printed only (each script's --append/--write records into RESULTS.md);
# bench_extract, bench_real_video, bench_identify and gpu_check.sh need a video, more time or a GPU.
bench: install
	$(BIN)/python benchmarks/bench_models.py --quick
	$(BIN)/python benchmarks/bench_distance.py --probes 500 --gallery 500
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_synth.py --no-dataset

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
