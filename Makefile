# Two commands work on a fresh clone with only Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.DEFAULT_GOAL := help
.PHONY: help venv demo test lint format typecheck imports pytest matrix bench docs clean unasync

help:
	@echo "make demo       start an embedded server (or use FERRITE_URL) and print a live pool report"
	@echo "make test       lint, format check, mypy --strict, import rules, then the test suite"
	@echo "make matrix     the tox matrix: Python 3.11-3.13 x Django 5.2/6.x, Flask, FastAPI"
	@echo "make format     apply ruff's formatter and autofixes"
	@echo "make unasync    rewrite the sync twins of async modules (ferrite_integrations/_wire.py)"
	@echo "make docs       build the documentation site into site/"

$(VPY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ferrite-integrations needs Python 3.11 or newer; run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VPY) example_projects/showcase/main.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

unasync: $(STAMP)
	$(VPY) scripts/unasync.py
	$(VENV)/bin/ruff format --check ferrite_integrations

typecheck: $(STAMP)
	$(VENV)/bin/mypy ferrite_integrations

imports: $(STAMP)
	$(VENV)/bin/lint-imports

pytest: $(STAMP)
	$(VENV)/bin/pytest

test: lint typecheck imports pytest

# Interpreters come from PATH; with pyenv, each installed 3.11/3.12/3.13 is added to it.
matrix: $(STAMP)
	PATH="$$(for v in 3.11 3.12 3.13; do \
	    p=$$(pyenv prefix "$$(pyenv versions --bare 2>/dev/null | grep "^$$v\." | tail -1)" 2>/dev/null) \
	    && printf '%s/bin:' "$$p"; done)$$PATH" $(VENV)/bin/tox run

docs: $(STAMP)
	$(VPY) -m pip install --quiet -e ".[docs]"
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) .tox .mypy_cache .ruff_cache .pytest_cache site build dist
