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

.PHONY: install demo test ui worker instance bench production-smoke mutation clean

# torch==2.13.0 first, with pip: a bare `torch` requirement would pull a multi-GB CUDA build (pip
# takes the CPU build from local disk). Then the rest with uv, which downloads and installs in
# parallel (17 s instead of 57 s; it keeps the torch already there, which satisfies the
# requirement), and pip if uv fails. --compile-bytecode as pip does: with PYTHONDONTWRITEBYTECODE
# set (as on our CI machines) every Dagster process would otherwise compile its imports anew
# (11.5 s instead of 6.2 s to import the code location), and the suite took half as long again.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0 'uv>=0.9,<1'
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[test]' \
	  || $(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/.installed

# $(DAGSTER_HOME)/dagster.yaml from dagster.yaml + storage chosen by SPINLOCK_PG_URL / SPINLOCK_PG_HOST
# (else sqlite); regenerated each time unless written by hand (see spinlock_assets/instance.py)
instance: install
	$(BIN)/python -m spinlock_assets.instance --dagster-home "$(DAGSTER_HOME)"

demo: install instance
	$(BIN)/python -m spinlock_assets.materialize

# two pytest-xdist workers (SPINLOCK_TEST_WORKERS), one OpenMP thread each (tests/conftest.py), a
# test file at a time per worker (module fixtures built once), the slowest folders handed out first
test: install
	$(BIN)/python -m pytest -q -n $${SPINLOCK_TEST_WORKERS:-2} --dist loadfile --no-loadscope-reorder

# the webserver and the daemon (schedules, sensors, automation, backfills, the run queue)
ui: install instance
	$(BIN)/dagster dev -w workspace.yaml -h $${SPINLOCK_UI_HOST:-127.0.0.1} -p $${SPINLOCK_UI_PORT:-3000}

# a Celery worker for the fleet (README "Scale-out"): SPINLOCK_QUEUES=dagster (CPU host) or
# dagster,gpu (default; one comma-separated -q: a repeated -q keeps only the last queue); the broker
# is $$SPINLOCK_CELERY_BROKER, the result backend $$SPINLOCK_CELERY_BACKEND (default: the broker)
worker: install instance
	@test -n "$$SPINLOCK_CELERY_BROKER" || { echo "set SPINLOCK_CELERY_BROKER (e.g. redis://host:6379/0)" >&2; exit 2; }
	PATH=$(CURDIR)/$(BIN):$$PATH SPINLOCK_CELERY_BACKEND=$${SPINLOCK_CELERY_BACKEND:-$$SPINLOCK_CELERY_BROKER} \
	  $(BIN)/dagster-celery worker start -A dagster_celery.app -y deploy/celery/worker.yaml \
	  -q $${SPINLOCK_QUEUES:-dagster,gpu} -- --concurrency $${SPINLOCK_WORKER_CONCURRENCY:-1}

bench: install
	$(BIN)/python benchmarks/rollout.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/tokenizer.py

# one 32-operator shard at the production settings (T=256, M=5, 64x64): ~35 min on 2 cores
production-smoke: install
	$(BIN)/python benchmarks/production_smoke.py

# mutation testing ([tool.mutmut] in pyproject.toml; not part of `test`): mutation/sample.py draws
# the sample (mutation/scope.toml), mutmut runs it incrementally (it resumes and re-tests only
# changed functions; `rm -rf mutants` starts over), then benchmarks/results/mutation.{json,md}.
# MUTATION_RETEST=1 re-tests the survivors and timeouts against new tests; MUTMUT_MAX_CHILDREN
# workers (default 2).
$(BIN)/.installed-mutation: $(BIN)/.installed pyproject.toml
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,mutation]'
	touch $@

mutation: $(BIN)/.installed-mutation
	$(BIN)/python mutation/sample.py $${MUTATION_RETEST:+--retest}
	$(BIN)/mutmut run --max-children $${MUTMUT_MAX_CHILDREN:-2}
	$(BIN)/python benchmarks/mutation_report.py

clean:
	rm -rf $(SPINLOCK_HOME)
