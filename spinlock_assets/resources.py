"""Resources: where the data lives (``storage``) and what a run computes on (``compute``)."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
from pydantic import Field

from spinlock_core.config import ExperimentConfig
from spinlock_core.storage.paths import ExperimentPaths

__all__ = ["SpinlockStorage", "ComputeResource", "DEVICE_PATTERN"]

#: accepted values of ``compute.device``
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


class SpinlockStorage(dg.ConfigurableResource):
    """The Spinlock home folder (``$SPINLOCK_HOME``, default ``./.spinlock``): data under
    ``<home>/data``. On several hosts this folder must be the same shared storage everywhere."""

    home: str

    def paths(self, cfg: ExperimentConfig) -> ExperimentPaths:
        return ExperimentPaths.for_config(cfg, Path(self.home))


class ComputeResource(dg.ConfigurableResource):
    """The device and CPU threads of one run, set in the run's config (the UI launchpad's
    ``resources.compute.config``), never read from the environment.

    ``device``: ``auto`` lets each stage use its config (``simulation.device`` for rollouts,
    ``training.device`` for the tokenizer; both default to CUDA when present); ``cpu``, ``cuda``
    or ``cuda:N`` forces that device for every step of the run. ``threads`` > 0 caps torch's
    intra-op threads, so that concurrent runs (UI backfills) do not oversubscribe the cores."""

    device: str = Field(default="auto", description="auto (each stage's config), cpu, cuda or cuda:N")
    threads: int = Field(default=0, ge=0, description="torch intra-op threads (0: torch's default)")

    def torch_device(self) -> str | None:
        """The forced device, or ``None`` for ``auto``; a bad value fails the step without retry."""
        if not DEVICE_PATTERN.match(self.device):
            raise dg.Failure(description=f"resources.compute.config.device: {self.device!r} is not auto, cpu, cuda "
                             "or cuda:N", allow_retries=False)
        return None if self.device == "auto" else self.device

    def apply_threads(self) -> None:
        if self.threads > 0:
            import torch

            torch.set_num_threads(self.threads)
