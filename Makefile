# Spinlock: `make demo` (set up + materialize the active experiment), `make test`, `make ui`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

export SPINLOCK_HOME ?= $(CURDIR)/.spinlock
export DAGSTER_HOME ?= $(SPINLOCK_HOME)/dagster
export DAGSTER_DISABLE_TELEMETRY := 1
# glibc would mmap/munmap every large tensor on every step (1.3-1.8x slower rollouts)
export MALLOC_MMAP_THRESHOLD_ := 33554432
export MALLOC_TRIM_THRESHOLD_ := 4294967296

.PHONY: install demo test ui instance bench production-smoke clean

# torch==2.13.0 first: a bare `torch` requirement would pull a multi-GB CUDA build.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/.installed

instance:
	mkdir -p $(DAGSTER_HOME)
	cp -n dagster.yaml $(DAGSTER_HOME)/dagster.yaml 2>/dev/null || true

demo: install instance
	$(BIN)/python -m spinlock_assets.materialize

test: install
	$(BIN)/python -m pytest -q

# the daemon runs 2 runs at a time (dagster.yaml): one torch thread each
ui: install instance
	SPINLOCK_THREADS=$${SPINLOCK_THREADS:-1} $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $${SPINLOCK_UI_PORT:-3000}

bench: install
	$(BIN)/python benchmarks/rollout.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/tokenizer.py

# one 32-operator shard at the production settings (T=256, M=5, 64x64): ~35 min on 2 cores
production-smoke: install
	$(BIN)/python benchmarks/production_smoke.py

clean:
	rm -rf $(SPINLOCK_HOME)
