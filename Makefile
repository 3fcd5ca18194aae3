# Two commands do all the set-up (see README):
#   make lab    create .venv if no environment is active, install, open the course in JupyterLab
#   make test   same set-up, then run every test (library, notebooks, exercises, grader)
#
# An active virtualenv or conda environment (other than base) is used as it is; otherwise .venv
# is created.
# PyTorch is installed only when the environment has none, so an existing (e.g. CUDA) build
# is never replaced. Override the one that gets installed with `make TORCH=... test`.

PYTHON ?= python3
TORCH ?= torch==2.13.0
SHARED_DATA := $(abspath ../shared/data)

# conda's `base` does not count as a chosen environment: nothing is installed into it.
ACTIVE_ENV := $(VIRTUAL_ENV)$(if $(filter-out base,$(CONDA_DEFAULT_ENV)),$(CONDA_PREFIX))
ifneq ($(ACTIVE_ENV),)
  PY := python
  STAMP := .minilm_cache/installed-$(notdir $(ACTIVE_ENV))
else
  PY := .venv/bin/python
  STAMP := .venv/.minilm-installed
endif

# Tests use the offline mirror next to the checkout when it exists (CI has no internet).
ifeq ($(MINILM_DATA_DIR),)
  ifneq ($(wildcard $(SHARED_DATA)/README.md),)
    export MINILM_DATA_DIR := $(SHARED_DATA)
  endif
endif

.PHONY: lab test setup exercises clean

setup: $(STAMP)

.venv/bin/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "minilm needs Python 3.10 or newer"'
	$(PYTHON) -m venv .venv

$(STAMP): pyproject.toml | $(if $(findstring .venv,$(PY)),.venv/bin/python)
	$(PY) -m pip install --upgrade pip
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install '$(TORCH)'
	$(PY) -m pip install -e '.[lab,hf,dev]'
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

# Root (e.g. a container) needs --allow-root; add more with `make lab LAB_ARGS=--no-browser`.
lab: setup
	$(PY) -m jupyter lab --ServerApp.root_dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS) \
		notebooks/00_start_here.ipynb

test: setup
	MINILM_PRESET=smoke OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --nbval-lax --dist loadfile $(PYTEST_ARGS)

exercises: setup
	$(PY) -m minilm.cli make-exercises

clean:
	rm -rf .venv .minilm_cache .pytest_cache
