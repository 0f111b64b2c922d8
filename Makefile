# The two commands a newcomer types: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test clean

$(BIN)/runner: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/runner

venv: $(BIN)/runner

demo: venv
	$(BIN)/runner tasks check --benchmark starter --solution reference

test: venv
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
