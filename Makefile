# Two commands set everything up on a fresh machine:
#   make demo   install, then run the main job and print where the report is
#   make test   install, then run the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, pinned by constraints.txt to the CPU build on these machines:
# installing it before the package keeps pip from resolving pyproject's torch
# range by itself (gigabytes of CUDA packages).
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e ".[test,dask]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/aelab run

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) runs build src/*.egg-info
