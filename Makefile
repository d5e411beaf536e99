# Two commands a newcomer needs (see README): `make demo` and `make test`.
# Both create the virtual environment in .venv first (Python 3.10-3.12 + pip).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kcaption-installed
OUT ?= runs/demo
MODEL ?= lstm
# pytest-xdist workers for `make test` (each test file stays on one worker: conftest.py).
TEST_WORKERS ?= 2

.PHONY: setup demo test lint steps clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The main job: train a captioner on the built-in shapes data, on the reference solutions
# (--force: running it again replaces the earlier demo run in $(OUT)).
demo: setup
	KCAPTION_SOLUTIONS=1 $(BIN)/kcaption demo --model $(MODEL) --out $(OUT) --force

# Lint, then the whole suite: graders on the solutions, graders proven on the stubs, notebooks.
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=40

steps: setup
	$(BIN)/kcaption steps

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
