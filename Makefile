# Two commands for a newcomer: `make demo` and `make test`. Both bootstrap uv when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv on PATH, else the copy that `python3 -m pip install uv` puts next to python3.
UV := $(shell command -v uv >/dev/null 2>&1 && echo uv || echo python3 -m uv)

export OPENBLAS_NUM_THREADS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: help uv venv demo test lint bench

help:
	@echo "make demo   set up, run the pipeline on the embedded MovieLens sample, print where results are"
	@echo "make test   set up and run the whole test suite"
	@echo "make lint   ruff over the project"
	@echo "make bench  run the benchmarks under benchmarks/"

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
	  || { echo "uv not found: installing it with pip"; python3 -m pip install --quiet uv; }

venv: uv
	@$(UV) sync --frozen --quiet

demo: venv
	$(UV) run movierec demo

test: venv
	$(UV) run pytest

lint: venv
	$(UV) run ruff check .
	$(UV) run ruff format --check .

bench: venv
	@for script in benchmarks/*.py; do echo "== $$script"; $(UV) run python "$$script" || exit 1; done
