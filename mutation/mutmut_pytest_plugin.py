"""pytest plugin for the mutation runs (``[tool.mutmut] pytest_add_cli_args``; mutmut runs pytest
in mutants/, where ``also_copy`` puts this folder).

* Every mutant's verdict must not depend on which mutants ran before it or on a random draw:
  hypothesis draws its examples deterministically and keeps no example database (by default it
  would replay, from mutants/.hypothesis, the failing examples earlier mutants produced).
* OpenMP threads sleep instead of spinning while they wait (``OMP_WAIT_POLICY=PASSIVE``, read
  when torch loads libgomp, which happens after pytest loads this plugin): two mutmut workers of
  torch's two threads each on two cores spun against each other, 4x the CPU time per test, and
  mutants timed out that only survived slowly. The thread count stays torch's default, so the
  code paths are those of ``make test`` (``spinlock_core.rng.cpu_threads`` splits by it).
* While a mutant is under test (``MUTANT_UNDER_TEST`` names one), the cheapest test modules run
  first, by the per-test durations mutmut recorded in mutmut-stats.json, so ``-x`` stops a killed
  mutant early. mutmut's fork runner sorts the tests itself; its fork-server runner (the one torch
  needs, see pyproject.toml) passes them in set order. Tests stay grouped by module, in their
  order within it, so module fixtures are set up once.
"""

from __future__ import annotations

import json
import os
import sys

if "torch" not in sys.modules:  # libgomp reads it once, when torch loads it
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hypothesis import settings  # noqa: E402

settings.register_profile("mutmut", derandomize=True, database=None, print_blob=False)
settings.load_profile("mutmut")


def pytest_collection_modifyitems(session, config, items):
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return  # stats, clean and forced-fail runs keep the usual order
    try:
        durations = json.loads((config.rootpath / "mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    cost: dict[str, float] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        cost[module] = cost.get(module, 0.0) + durations.get(item.nodeid, 0.0)
    items.sort(key=lambda item: cost[item.nodeid.split("::", 1)[0]])  # stable: order within a module kept
