"""The Dagster code location: ``defs`` for the active experiment (``$SPINLOCK_CONFIG``).

``build_definitions(path, key_prefix=...)`` builds the same graph for any config; the generated
multi-experiment workspace (``python -m spinlock_assets.workspace``) uses it with a key prefix per
experiment.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from spinlock_core.config import load_experiment
from spinlock_core.storage.paths import spinlock_home

from . import automation, integrity, sensors
from spinlock_core.features.families import enabled_families

from .assets import dashboards, dataset, features, generation, reports, sampling, simulation, tokenizer
from .experiment import Experiment, active_config_path
from .executors import spinlock_executor
from .resources import ComputeResource, SpinlockStorage

__all__ = ["build_definitions", "defs"]


def build_definitions(config_path: str | Path, key_prefix: list[str] | None = None) -> dg.Definitions:
    path = Path(config_path)
    cfg = load_experiment(path)
    exp = Experiment(cfg, path, key_prefix)
    fams = enabled_families(cfg)
    assets = [
        *sampling.build(exp),
        *generation.build(exp),
        *simulation.build(exp),
        *features.build(exp),
        *dataset.build(
            exp,
            stages=["initial_conditions", "rollouts", *(f.stage for f in fams)],
            upstream=["parameters", "initial_conditions", "rollouts", *(f"features/{f.name}" for f in fams)],
        ),
        *tokenizer.build(exp),
        *dashboards.build(exp),
        # after the last stage, so that its phase in `make demo` comes after every check it reports
        *reports.build(exp, ["dataset", *(["tokenizer", "tokens"] if cfg.tokenizer is not None else [])]),
    ]
    jobs, schedules = automation.build(exp)
    integrity_checks, integrity_jobs = integrity.build(exp)
    return dg.Definitions(
        assets=assets,
        asset_checks=integrity_checks,
        jobs=[*jobs, *integrity_jobs],
        schedules=schedules,
        sensors=sensors.build(exp),
        resources={
            "storage": SpinlockStorage(home=str(spinlock_home())),
            # the device and threads of a run: the launchpad's resources.compute.config
            "compute": ComputeResource(),
        },
        # per run: in_process (default of the demo), multiprocess, celery or k8s (executors.py)
        executor=spinlock_executor(cfg.orchestration),
    )


defs = build_definitions(active_config_path())
