# Two commands for a newcomer: `make demo` and `make test`. Both bootstrap uv when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv on PATH, else the copy that `python3 -m pip install uv` puts next to python3.
UV := $(shell command -v uv >/dev/null 2>&1 && echo uv || echo python3 -m uv)

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export BENTOML_DO_NOT_TRACK := true
# The demo keeps BentoML's model and Bento stores with the rest of its generated data.
export BENTOML_HOME ?= $(CURDIR)/var/bentoml

FRONTEND_SOURCES := $(shell find frontend/src frontend/public frontend/index.html frontend/vite.config.js 2>/dev/null)

.PHONY: help uv venv frontend demo test lint bench stack stack-down

help:
	@echo "make demo   set up, run data + training on the embedded MovieLens sample, serve on :3000"
	@echo "make test   set up and run the whole test suite"
	@echo "make lint   ruff over the project"
	@echo "make bench  run the benchmarks under benchmarks/"
	@echo "make stack  PostgreSQL + MLflow + Prefect servers on loopback, flows run against them"
	@echo "make stack-down  stop that stack"

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
	  || { echo "uv not found: installing it with pip"; python3 -m pip install --quiet uv; }

venv: uv
	@$(UV) sync --frozen --quiet

# The web page: npm ci when the lock changed, a build when a source changed.
frontend/node_modules/.package-lock.json: frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund

frontend/dist/index.html: frontend/node_modules/.package-lock.json $(FRONTEND_SOURCES)
	cd frontend && npm run build

frontend: frontend/dist/index.html

demo: venv frontend
	$(UV) run movierec demo
	@echo "Serving the champion: the page and the API on http://127.0.0.1:3000 (Ctrl-C stops it)"
	$(UV) run bentoml serve bentos.service:MovieRecommender --host 127.0.0.1 --port 3000

test: venv frontend
	cd frontend && npm test
	$(UV) run pytest

lint: venv
	$(UV) run ruff check .
	$(UV) run ruff format --check .

bench: venv
	@for script in benchmarks/*.py; do echo "== $$script"; $(UV) run python "$$script" || exit 1; done

# A production-like stack on loopback: PostgreSQL, an MLflow and a Prefect server backed by it.
stack: venv
	$(UV) run python deployments/local_stack.py up $(STACK_ARGS)

stack-down: venv
	$(UV) run python deployments/local_stack.py down
