# Two commands for a fresh clone: `make demo` and `make test`. Each creates .venv if missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test bench schemas clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.base: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

# CI and `make test` take torch's CPU build (constraints/ci.txt); users are not pinned to it.
$(VENV)/.dev: pyproject.toml constraints/ci.txt | $(BIN)/python
	$(PIP) -e '.[dev,torch,ray]' -c constraints/ci.txt
	touch $@ $(VENV)/.base

demo: $(VENV)/.base
	rm -rf out/demo out/demo-shards
	$(BIN)/gamelog convert samples --out out/demo
	$(BIN)/gamelog validate out/demo
	$(BIN)/gamelog pack out/demo --out out/demo-shards --seq-len 1024
	$(BIN)/gamelog validate out/demo-shards

test: $(VENV)/.dev chromium
	$(BIN)/python -m pytest -q

# the report test renders the HTML page in a real headless browser (Debian's chromium)
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed: the browser test will fail"

$(VENV)/.bench: pyproject.toml constraints/ci.txt | $(BIN)/python
	$(PIP) -e '.[dev,torch,ray,bench]' -c constraints/ci.txt
	touch $@

# LLaMA-Factory pins older TRL and transformers: it gets a venv of its own. Its torchvision and
# torchaudio builds do not load beside CPU torch, so they go; benchmarks/speed.py stands in for torchaudio.
.venv-llamafactory/.done:
	python3 -m venv .venv-llamafactory
	.venv-llamafactory/bin/python -m pip install --quiet --disable-pip-version-check llamafactory torch==2.13.0
	.venv-llamafactory/bin/python -m pip uninstall --quiet -y torchvision torchaudio
	touch $@

bench: $(VENV)/.bench .venv-llamafactory/.done
	$(BIN)/python benchmarks/speed.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/ray_engine.py
	$(BIN)/python benchmarks/convert_memory.py
	$(BIN)/python benchmarks/roles.py

schemas: $(VENV)/.base
	$(BIN)/gamelog schemas --out schemas

clean:
	rm -rf out .pytest_cache .hypothesis
