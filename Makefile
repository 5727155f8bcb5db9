# Read me first. Everything runs in the project's own virtual environment, .venv, which the
# targets below create from nothing but python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready

.PHONY: setup demo test lint dist bench compare emulator clean

setup: $(READY)

$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(READY)

## The main job: embed the project's own docs with both frameworks and answer questions.
demo: $(READY)
	$(BIN)/python examples/quickstart.py

## The whole suite: lint, format check, strict typing, then every test (notebooks included).
test: $(READY) lint
	$(BIN)/python -m pytest

lint: $(READY)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## The sdist and the wheel, in dist/, with their metadata checked as PyPI would.
dist: $(READY)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python -m twine check --strict dist/*

## Client CPU time against a bare requests+orjson loop (see README "Performance").
bench: $(READY)
	$(BIN)/python benchmarks/client_overhead.py

## This project next to the OpenAI-compatible integrations, on one local server.
compare: $(READY)
	$(BIN)/python benchmarks/compare.py

## A local NebulaBlock emulator on port 8765, for your own experiments.
emulator: $(READY)
	$(BIN)/python -m nebula_core.testing --port 8765

clean:
	rm -rf $(VENV) dist .mypy_cache .ruff_cache .pytest_cache .hypothesis .demo-data
