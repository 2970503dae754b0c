# siyu — the two commands a user needs: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then command -v $$p; break; fi; done)
BIN := $(VENV)/bin
CUSTOMERS ?= 2000
SEED ?= 7
PORT ?= 8000

.PHONY: demo test install dev lint typecheck migrations-check pytest browser bench clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "siyu needs Python >= 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

## make demo: install, migrate ./var/siyu.db, generate Taste of Su, serve http://127.0.0.1:$(PORT) (8000)
demo: install
	$(BIN)/siyu demo --customers $(CUSTOMERS) --seed $(SEED) --port $(PORT)

## make test: lint, type-check, migration check, the whole suite on SQLite and PostgreSQL
test: dev browser lint typecheck migrations-check pytest

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: dev
	$(BIN)/mypy

migrations-check: dev
	@rm -f var/alembic-check.db
	SIYU_DATABASE_URL=sqlite:///var/alembic-check.db $(BIN)/siyu db upgrade
	SIYU_DATABASE_URL=sqlite:///var/alembic-check.db $(BIN)/alembic check
	@rm -f var/alembic-check.db*

pytest: dev
	$(BIN)/pytest -q -n 2 --dist loadfile

# The console tests drive Debian's Chromium; never a browser downloaded by a test tool.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else echo "note: /usr/bin/chromium missing (apt-get install chromium); browser tests will be skipped"; fi; \
	fi

bench: install
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
