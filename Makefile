# attnseq: `make demo` and `make test` set up .venv when it is missing, then run.
PYTHON ?= python3
VENV ?= .venv
# torch 2.13.0: on a machine where nvidia-smi finds no GPU, the CPU build from PyTorch's CPU index (plain
# `torch==2.13.0` from PyPI is the multi-GB CUDA build on Linux); where it finds one, the CUDA build from
# PyPI. Or choose: make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
ifeq ($(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu),gpu)
TORCH ?= torch==2.13.0
else
# (--retries 1: where that index cannot be reached, each package's lookup gives up at once, not after
# pip's five retries with backoff, and the local or configured index answers)
TORCH ?= torch==2.13.0+cpu --extra-index-url $(TORCH_CPU_INDEX) --retries 1
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.attnseq-installed

.PHONY: setup browser demo test test-avx2 lint bench bench-serve clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the page's browser test (skips with the reason where it cannot be installed)
browser:
	@bash scripts/debian-package.sh chromium "$${ATTNSEQ_CHROMIUM:-}" chromium chromium-browser

demo: setup
	$(BIN)/attnseq demo configs/dates.yaml --out runs/demo

test: setup browser
	$(BIN)/python -m pytest

# The suite again as a CPU without AVX-512 answers (no native bf16): ATen, oneDNN, MKL and FBGEMM are
# capped at AVX2, so the capability checks answer as on such a CPU (tests/test_precision.py checks it)
AVX2_ONLY := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2
test-avx2: setup browser
	$(AVX2_ONLY) $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

# attnseq against OpenNMT-py 3.5.1 on the same model, on any CPU, then the scaling tables (about 65 minutes on
# the 2-core bench machine, estimated; installs OpenNMT-py into .venv-onmt). Part of it: bench/speed.py --part ...
bench: setup
	$(BIN)/python bench/speed.py

# the server under load (bench/serve.py; wrk from Debian is its load generator)
bench-serve: setup
	@bash scripts/debian-package.sh wrk wrk
	$(BIN)/python bench/serve.py

clean:
	rm -rf runs data/dates .pytest_cache
