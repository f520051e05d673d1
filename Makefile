# The two commands: `make run` sets everything up and starts the bot; `make test` sets up and runs the tests.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: run test setup lint typecheck check postgres quality clean

run: setup
	$(VENV)/kb serve

test: setup
	@export KB_TEST_DATABASE_URL="$$(bash scripts/postgres.sh | tail -n 1)" && \
	$(VENV)/ruff check bot store handlers tests benchmarks && \
	$(VENV)/mypy && \
	$(VENV)/pytest

setup:
	@bash scripts/setup.sh

postgres:
	@bash scripts/postgres.sh

lint:
	$(VENV)/ruff check bot store handlers tests benchmarks

typecheck:
	$(VENV)/mypy

quality: setup
	$(VENV)/python benchmarks/quality.py ../shared/corpus/dev.jsonl

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
