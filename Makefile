# Every target does its own set-up on a fresh machine: a virtual environment in .venv with the
# package and its dev extra installed (re-run only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= outputs/demo
SYNTH_DIR ?= data/synthtrack

.PHONY: setup test test-slow demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

demo: $(STAMP)
	DEMO_DIR=$(DEMO_DIR) SYNTH_DIR=$(SYNTH_DIR) bash scripts/demo.sh

clean:
	rm -rf $(DEMO_DIR) $(SYNTH_DIR)
