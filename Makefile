# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv on first use; nothing is installed outside it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# torch is pinned to the machine-local CPU build before the extras resolve, so the extras'
# range is already satisfied and nothing large is downloaded.
$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[torch,opacus,mlflow,pandas,polars,dev]'
	touch $@ $(VENV)/.installed-core

demo: $(VENV)/.installed-core
	$(BIN)/fedlearn simulate examples/digits_sklearn.toml --out runs/demo

test: $(VENV)/.installed-all
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2  # two workers: most tests wait on processes and sockets, not on a core

lint: $(VENV)/.installed-all
	$(BIN)/ruff check .
	$(BIN)/mypy src/fedlearn

bench: $(VENV)/.installed-all
	$(BIN)/python benchmarks/simulation_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
