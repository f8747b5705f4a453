# Two commands for a new user: `make up` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PORT   ?= 4566
EVENTS ?= 10000
PIPELINE := $(BIN)/pipeline

.DEFAULT_GOAL := help
.PHONY: help install up down status logs produce test lint bench load package tf-check deploy clean
ENV    ?= prod
BACKEND ?= embedded

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP) ## create .venv and install the project with its test tools

up: $(STAMP) ## start the embedded stack and the ESM runner, run a demo burst (PORT=, EVENTS=, BACKEND=localstack)
	@$(PIPELINE) up --port $(PORT) --events $(EVENTS) --backend $(BACKEND)

down: $(STAMP) ## stop what `make up` started
	@$(PIPELINE) down

status: $(STAMP) ## processes, per-shard positions and checkpoints
	@$(PIPELINE) status

logs: $(STAMP) ## tail the stack's and the functions' logs
	@$(PIPELINE) logs

produce: $(STAMP) ## produce EVENTS more events into the running stack
	@$(PIPELINE) produce --count $(EVENTS)

test: $(STAMP) ## lint and run the test suite
	$(BIN)/ruff check pipeline producers consumers infra tests bench
	$(BIN)/python -m pytest -q

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check pipeline producers consumers infra tests bench
	$(BIN)/ruff format --check pipeline producers consumers infra tests bench
	$(BIN)/mypy

bench: $(STAMP) ## benchmarks, each against a baseline measured in the same run
	$(BIN)/python -m bench

load: $(STAMP) ## sustained load through the embedded pipeline, verified (EVENTS=1000000 default)
	EVENTS=$(if $(filter command line,$(origin EVENTS)),$(EVENTS),1000000) $(BIN)/python -m bench load

package: $(STAMP) ## build build/function.zip and build/layer.zip for Lambda (sizes, SHA-256)
	$(BIN)/python -m infra.package

tf-check: ## terraform fmt, init+validate of every env, checkov (installs .venv-checkov once)
	infra/check.sh

deploy: package ## terraform init/plan/apply of infra/terraform/envs/$(ENV) (ENV=prod|local, PORT= for local)
	PORT=$(PORT) infra/deploy.sh $(ENV)

clean: ## remove the virtualenv and local state (stop the stack first)
	rm -rf $(VENV) .state reports
