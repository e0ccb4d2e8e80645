"""Which experiment this code location serves, and the partitions derived from it.

The active experiment is ``$SPINLOCK_CONFIG`` (default ``configs/experiments/demo.yaml`` of this
repository); no code change is needed to switch.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from spinlock_core.config import ExperimentConfig, load_experiment
from spinlock_core.storage.paths import shard_key

__all__ = ["PROJECT_ROOT", "DEFAULT_CONFIG", "active_config_path", "load_active_config", "shard_partitions"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "experiments" / "demo.yaml"


def active_config_path() -> Path:
    """``$SPINLOCK_CONFIG`` (relative paths resolve against the working directory, then the
    project root) or the demo config."""
    raw = os.environ.get("SPINLOCK_CONFIG")
    if not raw:
        return DEFAULT_CONFIG
    p = Path(raw)
    if not p.is_absolute() and not p.exists() and (PROJECT_ROOT / p).exists():
        p = PROJECT_ROOT / p
    return p.resolve()


def load_active_config() -> tuple[Path, ExperimentConfig]:
    path = active_config_path()
    return path, load_experiment(path)


def shard_partitions(cfg: ExperimentConfig) -> dg.StaticPartitionsDefinition:
    """``shard-0000`` ... one partition per ``dataset.storage.shard_size`` operators."""
    return dg.StaticPartitionsDefinition([shard_key(i) for i in range(cfg.num_shards)])


class Experiment:
    """The active experiment as the asset factories see it: config, partitions and asset keys
    (optionally under a key prefix when several experiments share one Dagster UI)."""

    def __init__(self, cfg: ExperimentConfig, config_path: Path, key_prefix: list[str] | None = None):
        self.cfg = cfg
        self.config_path = config_path
        self.prefix = list(key_prefix or [])
        self.partitions = shard_partitions(cfg)

    @property
    def feature_keys(self) -> list[dg.AssetKey]:
        from spinlock_core.features.families import enabled_families

        return [self.key(f"features/{f.name}") for f in enabled_families(self.cfg)]

    def key(self, name: str) -> dg.AssetKey:
        """``"features/summary"`` -> ``AssetKey([*prefix, "features", "summary"])``."""
        return dg.AssetKey([*self.prefix, *name.split("/")])

    def op_name(self, name: str) -> str:
        return "__".join([*self.prefix, *name.split("/")]).replace("-", "_").replace(".", "_")
