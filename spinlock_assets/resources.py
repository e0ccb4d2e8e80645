"""Resources: where the data lives and which device runs the rollouts."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from spinlock_core.config import ExperimentConfig
from spinlock_core.storage.paths import ExperimentPaths

__all__ = ["SpinlockStorage"]


class SpinlockStorage(dg.ConfigurableResource):
    """The Spinlock home folder (``$SPINLOCK_HOME``, default ``./.spinlock``): data under
    ``<home>/data``. ``device`` overrides ``simulation.device`` when not empty."""

    home: str
    device: str = ""

    def paths(self, cfg: ExperimentConfig) -> ExperimentPaths:
        return ExperimentPaths.for_config(cfg, Path(self.home))
