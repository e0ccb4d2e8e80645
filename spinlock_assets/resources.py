"""Resources: where the data lives and which device runs the rollouts."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from spinlock_core.config import ExperimentConfig
from spinlock_core.storage.paths import ExperimentPaths

__all__ = ["SpinlockStorage"]


class SpinlockStorage(dg.ConfigurableResource):
    """The Spinlock home folder (``$SPINLOCK_HOME``, default ``./.spinlock``): data under
    ``<home>/data``. ``device`` overrides ``simulation.device`` when not empty; ``threads`` (> 0)
    caps torch's intra-op threads of a run, so concurrent runs (UI backfills) do not oversubscribe
    the cores."""

    home: str
    device: str = ""
    threads: int = 0

    def apply_threads(self) -> None:
        if self.threads > 0:
            import torch

            torch.set_num_threads(self.threads)

    def paths(self, cfg: ExperimentConfig) -> ExperimentPaths:
        return ExperimentPaths.for_config(cfg, Path(self.home))
