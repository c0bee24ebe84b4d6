# Shortcuts for the README's commands (each works without make too: see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test benchmarks clean
$(BIN)/molks:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"

setup: $(BIN)/molks

demo: setup
	$(BIN)/molks demo

test: setup
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) .pytest_cache .molks_cache runs
