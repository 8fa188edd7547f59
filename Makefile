# One-command set-up: every target that runs code first builds .venv from the pinned lock file.
# The venv is rebuilt only when requirements.lock or pyproject.toml change (stamp file), so repeat runs are fast.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline, headless, reproducible defaults for tests and the demo.
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= disabled
export MUJOCO_GL ?= egl

.PHONY: venv lint test demo bench clean slurm

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The lint rules are pyproject.toml's [tool.ruff]; `$(BIN)/ruff check --fix .` mends the sortable ones.
lint: $(STAMP)
	$(BIN)/ruff check .

# -rs: skipped tests are listed with their reason (e.g. the Slurm test where Slurm cannot start).
test: lint
	$(BIN)/python -m pytest -q -rs tests

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# A single-node Slurm cluster on this machine (root; installs Debian packages the first time).
slurm:
	bash scripts/start_slurm.sh

# d3rlpy, the peer of the update-speed benchmark, lives in its own venv (its pins are not ours).
PEER_STAMP := .venv-d3rlpy/.installed
$(PEER_STAMP): benchmarks/requirements-d3rlpy.txt
	test -x .venv-d3rlpy/bin/python || $(PYTHON) -m venv .venv-d3rlpy
	.venv-d3rlpy/bin/python -m pip install --quiet -r benchmarks/requirements-d3rlpy.txt
	touch $(PEER_STAMP)

bench: $(STAMP) $(PEER_STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
