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

# Container images (`make image`): the Bento, by `bentoml build` + `bentoml containerize`, and the
# project image of the flows and the MLflow server (k8s/images/Dockerfile), named as k8s/ expects.
# BASE_IMAGE is any Debian-based Python 3.11 image: without Docker Hub, build one from Debian
# packages (`make base-image`, deployments/base_image.sh) and pass BASE_IMAGE=$(LOCAL_BASE_IMAGE).
BASE_IMAGE ?= python:3.11-slim
LOCAL_BASE_IMAGE := movierec-base:bookworm
REGISTRY ?=
IMAGE_TAG ?= latest
BENTO_IMAGE := $(if $(REGISTRY),$(REGISTRY)/)movie-recommender:$(IMAGE_TAG)
PROJECT_IMAGE := $(if $(REGISTRY),$(REGISTRY)/)movierec:$(IMAGE_TAG)
# The model the Bento packages (the service's Settings.bento_model_tag).
BENTO_MODEL_TAG := $(or $(MOVIEREC_BENTO_MODEL_TAG),movie-recommender:latest)

.PHONY: help uv venv frontend demo experiment experiment-report test lint bench stack stack-down image image-bento image-project base-image

help:
	@echo "make demo   set up, run data + training on the embedded MovieLens sample, serve on :3000"
	@echo "make experiment  after make demo: the popularity baseline as a challenger, served to half the users"
	@echo "make experiment-report  the monitoring flow's report and decision on that experiment"
	@echo "make test   set up and run the whole test suite"
	@echo "make lint   ruff over the project"
	@echo "make bench  run the benchmarks under benchmarks/"
	@echo "make stack  PostgreSQL + MLflow + Prefect servers on loopback, flows run against them"
	@echo "make stack-down  stop that stack"
	@echo "make image  build the Bento and project images (BASE_IMAGE=..., REGISTRY=..., IMAGE_TAG=...)"
	@echo "make base-image  build $(LOCAL_BASE_IMAGE) from Debian packages (root, debootstrap)"

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

# An online experiment on the demo (docs/experiments.md): the demo's champion against the
# popularity baseline, each shown to half of the users. The service and the monitoring flow must
# read the same experiment settings, hence one variable for both.
EXPERIMENT_ENV := MOVIEREC_EXPERIMENT_MODE=ab MOVIEREC_EXPERIMENT_SHARE=50 MOVIEREC_PROMOTION=online

experiment: venv frontend
	$(EXPERIMENT_ENV) $(UV) run movierec train --model popularity --trials 1
	@echo "Serving champion and challenger on http://127.0.0.1:3000; in another shell:"
	@echo "  uv run movierec simulate     # a simulated audience"
	@echo "  make experiment-report      # the experiment's report and decision"
	$(EXPERIMENT_ENV) MOVIEREC_TRUSTED_PROXY_HOPS=1 $(UV) run bentoml serve bentos.service:MovieRecommender --host 127.0.0.1 --port 3000

experiment-report: venv
	$(EXPERIMENT_ENV) $(UV) run movierec monitor

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

image: image-bento image-project
	@docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' $(BENTO_IMAGE)
	@docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' $(PROJECT_IMAGE)

# bentoml containerize runs from the temporary directory because BentoML 1.4.40 refuses a
# dockerfile_template outside its working directory, and it copies the Bento to a temporary one.
image-bento: venv frontend
	@$(UV) run bentoml models get $(BENTO_MODEL_TAG) >/dev/null 2>&1 || { echo "no model \
	  $(BENTO_MODEL_TAG) in $(BENTOML_HOME): run 'make demo' or 'uv run movierec train' first"; exit 1; }
	tag=$$($(UV) run bentoml build --output tag | sed -n 's/^__tag__://p') && test -n "$$tag" \
	  && cd "$${TMPDIR:-/tmp}" && $(UV) run --project "$(CURDIR)" bentoml containerize "$$tag" \
	    --image-tag $(BENTO_IMAGE) --build-arg BASE_IMAGE=$(BASE_IMAGE)

image-project:
	DOCKER_BUILDKIT=1 docker build --file k8s/images/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  --tag $(PROJECT_IMAGE) .

base-image:
	deployments/base_image.sh $(LOCAL_BASE_IMAGE)
