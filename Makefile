# Sparkify Pipelines: the developer interface.
#
#   make up | down | status | reset          the local stack (PostgreSQL, S3 emulation, Airflow) on 127.0.0.1
#   make data [DATA_DIR=folder]              upload a folder (default: generated sample data) to the bucket
#   make run START=... END=...               run the pipeline for an interval; `backfill` likewise
#   make demo                                install, up, data, then the demo run
#   make celery-demo                         the same on CeleryExecutor (Redis + a Celery worker), then stop it
#   make sql Q="select count(*) from songs"  query the warehouse (psql -At style output)
#   make test | lint | bench                 lint: ruff (pyproject.toml); test runs it first
#
# Ports/bucket come from SPARKIFY_PG_PORT, SPARKIFY_S3_PORT, SPARKIFY_API_PORT and SPARKIFY_BUCKET;
# SPARKIFY_PG_BIN=/usr/lib/postgresql/15/bin runs a system PostgreSQL instead of the pinned wheel's.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV = .venv
PY = $(VENV)/bin/python
STACK = $(PY) -m scripts.stack
INSTALLED = $(VENV)/.installed

# Sample data (make data without DATA_DIR)
SEED ?= 42
SONGS ?= 300
START_DAY ?= 2018-11-01
DAYS ?= 2
EVENTS_PER_DAY ?= 3000
# Beside the stack's other state, so a stack in another SPARKIFY_STATE_DIR (tests) leaves .state alone.
SAMPLE_DIR = $(or $(SPARKIFY_STATE_DIR),.state)/sample_data
DATA_DIR ?=

# Prefix for recipe lines that need the stack's environment (connections, ports, credentials).
# Fails the recipe if `scripts.stack env` fails instead of running with an empty environment.
WITH_STACK_ENV = set -euo pipefail; stack_env="$$($(STACK) env)"; eval "$$stack_env";

# Shell-quote a make variable: $(call q,$(VAR))
q = '$(subst ','\'',$(1))'

# Fail fast (before starting anything) when required variables are missing.
ifneq ($(filter run backfill,$(MAKECMDGOALS)),)
  ifeq ($(and $(START),$(END)),)
    $(error usage: make $(firstword $(filter run backfill,$(MAKECMDGOALS))) START=2018-11-01T00:00:00 END=2018-11-01T03:00:00)
  endif
endif
ifneq ($(filter sql,$(MAKECMDGOALS)),)
  ifeq ($(strip $(Q)),)
    $(error usage: make sql Q="select 1")
  endif
endif

.PHONY: help venv install env up down status reset sql data run backfill demo celery-demo test lint bench logs

help:
	@sed -n '3,12s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

# --------------------------------------------------------------------------- environment

venv install: $(INSTALLED)

# Runs once, and again whenever requirements.txt or constraints.txt change. uv (pinned, from PyPI,
# into the venv) installs the same pins as pip in seconds instead of minutes; plain pip when uv
# can't be had. Either way the venv holds exactly constraints.txt (tests/tooling/test_install.py checks).
UV_PIN = $(shell grep -m1 '^uv==' constraints.txt)
$(INSTALLED): requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if $(PY) -m pip install -q --disable-pip-version-check '$(UV_PIN)'; then \
		$(VENV)/bin/uv pip install --python $(PY) -r requirements.txt -c constraints.txt; \
	else \
		echo "uv could not be installed; installing with pip (slower)"; \
		$(PY) -m pip install -r requirements.txt -c constraints.txt; \
	fi
	$(PY) -m pip check
	touch $@

# eval "$(make -s env)" to get the stack's environment in your shell.
env: $(INSTALLED)
	@$(STACK) env

# --------------------------------------------------------------------------- local stack

up: $(INSTALLED)
	$(STACK) up

down:
	@if [ -x $(PY) ]; then $(STACK) down; else echo "no $(VENV): nothing to stop"; fi

status:
	@if [ -x $(PY) ]; then $(STACK) status; else echo "no $(VENV): run make install"; fi

reset: $(INSTALLED)
	$(STACK) reset

sql: $(INSTALLED)
	@$(STACK) sql $(call q,$(Q))

logs:
	@tail -n 20 .state/logs/*.log

# --------------------------------------------------------------------------- pipeline

# Uploading needs only the S3 endpoint, so this starts just that part of the stack.
# --overwrite: the sample data is deterministic per seed and knobs, so a rerun just regenerates it.
data: $(INSTALLED)
	$(STACK) start-s3
ifeq ($(strip $(DATA_DIR)),)
	$(PY) -m scripts.sample_data --out $(call q,$(SAMPLE_DIR)) --overwrite --seed $(SEED) --songs $(SONGS) \
		--start-day $(START_DAY) --days $(DAYS) --events-per-day $(EVENTS_PER_DAY)
	$(WITH_STACK_ENV) $(PY) -m scripts.upload_data --dir $(call q,$(SAMPLE_DIR)) \
		--bucket "$$SPARKIFY_BUCKET" --endpoint-url "$$SPARKIFY_S3_ENDPOINT"
else
	$(WITH_STACK_ENV) $(PY) -m scripts.upload_data --dir $(call q,$(DATA_DIR)) \
		--bucket "$$SPARKIFY_BUCKET" --endpoint-url "$$SPARKIFY_S3_ENDPOINT"
endif

run: up
	$(WITH_STACK_ENV) $(PY) -m scripts.pipeline run --start $(call q,$(START)) --end $(call q,$(END))

backfill: up
	$(WITH_STACK_ENV) $(PY) -m scripts.pipeline backfill --start $(call q,$(START)) --end $(call q,$(END))

demo: up data
	$(WITH_STACK_ENV) $(PY) -m scripts.pipeline demo

# CeleryExecutor: the stack with a Redis broker and a separate Celery worker, in its own state dir
# and on its own ports (so it runs next to `make up`); sample data, a backfill, the summary, then down.
CELERY_STATE ?= .state/celery
CELERY_PG_PORT ?= 25432
CELERY_S3_PORT ?= 29000
CELERY_API_PORT ?= 28080
CELERY_REDIS_PORT ?= 26379
CELERY_START ?= 2018-11-01T00:00:00Z
CELERY_END ?= 2018-11-01T04:00:00Z

celery-demo: $(INSTALLED)
	@set -euo pipefail; \
	export SPARKIFY_STATE_DIR=$(call q,$(abspath $(CELERY_STATE))) SPARKIFY_EXECUTOR=CeleryExecutor \
		SPARKIFY_PG_PORT=$(CELERY_PG_PORT) SPARKIFY_S3_PORT=$(CELERY_S3_PORT) \
		SPARKIFY_API_PORT=$(CELERY_API_PORT) SPARKIFY_REDIS_PORT=$(CELERY_REDIS_PORT); \
	trap '$(STACK) down' EXIT; \
	$(STACK) up; \
	$(PY) -m scripts.sample_data --out $(call q,$(CELERY_STATE)/sample_data) --overwrite --seed $(SEED) \
		--songs $(SONGS) --start-day $(START_DAY) --days 1 --events-per-day $(EVENTS_PER_DAY); \
	stack_env="$$($(STACK) env)"; eval "$$stack_env"; \
	$(PY) -m scripts.upload_data --dir $(call q,$(CELERY_STATE)/sample_data) \
		--bucket "$$SPARKIFY_BUCKET" --endpoint-url "$$SPARKIFY_S3_ENDPOINT"; \
	status=0; $(PY) -m scripts.pipeline backfill --start $(call q,$(CELERY_START)) --end $(call q,$(CELERY_END)) || status=$$?; \
	finished=$$(awk '/^=== .* starting:/ {n = 0} /Workload finished/ {n++} END {print n + 0}' "$$SPARKIFY_STATE_DIR/logs/celery-worker.log"); \
	echo "Celery worker: $$finished task workloads finished (log: $(CELERY_STATE)/logs/celery-worker.log)"; \
	exit $$status

# --------------------------------------------------------------------------- checks

# The linter first (pinned ruff, settings in pyproject.toml): a lint error fails `make test`, and so CI.
lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

# The tests start their own servers on free ports in temporary directories.
test: lint
	$(PY) -m pytest -ra tests

bench: $(INSTALLED)
	$(PY) -m bench
