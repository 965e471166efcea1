# The two commands the README starts with:
#   make demo   install into .venv and run a short tour on the embedded default (no cluster, no server)
#   make test   install into .venv (plus the test servers) and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test install install-dev lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

# The C scan of chain verification (arxctl/chain/_native.c) is optional for users; tests require it.
install-dev: $(BIN)/python
	ARXCTL_REQUIRE_NATIVE=1 $(BIN)/python -m pip install --quiet -e ".[dev]"

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: install-dev
	bash scripts/test-deps.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .

bench: install-dev
	$(BIN)/python bench/foundation.py

clean:
	rm -rf $(VENV) .arx demo-state .pytest_cache .ruff_cache .hypothesis
