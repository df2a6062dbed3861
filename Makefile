# Two commands for a fresh clone: `make demo` and `make test`. Each creates .venv if missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test bench schemas clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.base: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.base

demo: $(VENV)/.base
	rm -rf out/demo out/demo-shards
	$(BIN)/gamelog convert samples --out out/demo
	$(BIN)/gamelog validate out/demo
	$(BIN)/gamelog pack out/demo --out out/demo-shards --seq-len 1024
	$(BIN)/gamelog validate out/demo-shards

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/convert_memory.py

schemas: $(VENV)/.base
	$(BIN)/gamelog schemas --out schemas

clean:
	rm -rf out .pytest_cache .hypothesis
