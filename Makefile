# Moked: `make up` runs the whole stack locally, `make test` proves it.
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: help install up down status test lint bench demo chaos

help:  ## this list
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install:  ## install what is missing (Debian packages, .venv)
	@scripts/bootstrap

.env: .env.example
	@test -f .env || $(VENV)/python -c "from pathlib import Path; from moked.stack.native import create_env_file; create_env_file(Path('.env.example'), Path('.env'))" && echo "created .env with generated secrets"

up: install .env  ## start the whole stack (idempotent)
	@$(VENV)/moked stack up

down:  ## stop everything `make up` started
	@test -x $(VENV)/moked && $(VENV)/moked stack down || true

status:  ## what is running
	@$(VENV)/moked stack status

test: install  ## the whole suite, on real Postgres, Redis and nginx
	@$(VENV)/pytest $(PYTEST_ARGS)

lint: install  ## ruff and mypy
	@$(VENV)/ruff check . && $(VENV)/ruff format --check . && $(VENV)/mypy moked services/webhooks services/transcriber services/notifier && scripts/mypy-crm-ui

bench: install  ## benchmarks, printed as tables and written to docs/benchmarks-latest.md
	@$(VENV)/python -m scripts.bench

demo: install .env  ## simulated calls (Hebrew, English, silent) to the demo business on the running stack
	@$(VENV)/python -m scripts.demo

chaos: install  ## 500 simulated calls while a worker is killed and Redis/Postgres/webhooks restart (CHAOS_ARGS=--help)
	@$(VENV)/python -m scripts.chaos $(CHAOS_ARGS)
