# The developer workflow. `make help` lists the targets.
.DEFAULT_GOAL := help
VENV := .venv/bin
export CARGO_BUILD_JOBS ?= 2

.PHONY: help setup demo test test-rust test-py bench lint

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## venv, Python deps, Debian packages, release build of the extension
	@bash scripts/setup.sh

demo: setup  ## the main job: simulate an enterprise, ingest it, serve the console
	$(VENV)/scrm demo

test: setup test-rust test-py  ## every test: cargo and pytest

test-rust:  ## the Rust engine's unit tests
	cargo test -q -p scrm-core

test-py:  ## pytest (benchmarks run once as correctness tests)
	$(VENV)/python -m pytest -q

bench: setup  ## benchmarks with same-run baselines
	$(VENV)/scrm bench ingest
	$(VENV)/scrm bench words
	$(VENV)/scrm demo --no-serve --dir demo-data
	$(VENV)/scrm bench search --data demo-data/archive
	$(VENV)/python -m pytest benches -q --benchmark-enable

lint: setup  ## rustfmt, clippy, ruff
	cargo fmt --all -- --check
	cargo clippy -q -p scrm-core --all-targets -- -D warnings
	cargo clippy -q -p scrm-core --features python -- -D warnings
	$(VENV)/ruff check .
