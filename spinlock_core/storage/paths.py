"""Where an experiment's files live: ``$SPINLOCK_HOME`` (default ``./.spinlock``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config.experiment import ExperimentConfig

__all__ = ["spinlock_home", "ExperimentPaths", "shard_key", "parse_shard_key"]


def spinlock_home() -> Path:
    """``$SPINLOCK_HOME`` if set, else ``.spinlock`` in the working directory (absolute)."""
    return Path(os.environ.get("SPINLOCK_HOME") or Path.cwd() / ".spinlock").resolve()


def shard_key(shard: int) -> str:
    return f"shard-{shard:04d}"


def parse_shard_key(key: str) -> int:
    if not key.startswith("shard-") or not key[6:].isdigit():
        raise ValueError(f"partition key {key!r} is not of the form shard-NNNN")
    return int(key[6:])


@dataclass(frozen=True)
class ExperimentPaths:
    """Data folder ``<home>/data``; an experiment's working files under ``<home>/data/<name>/``;
    the consolidated dataset at ``dataset.output_path`` (relative paths resolve under the data folder)."""

    cfg: ExperimentConfig
    home: Path

    @classmethod
    def for_config(cls, cfg: ExperimentConfig, home: Path | str | None = None) -> "ExperimentPaths":
        return cls(cfg, Path(home).resolve() if home else spinlock_home())

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def root(self) -> Path:
        return self.data / self.cfg.metadata.name

    @property
    def parameters(self) -> Path:
        return self.root / "parameters.h5"

    def shard(self, stage: str, shard: int) -> Path:
        return self.root / "shards" / stage / f"{shard_key(shard)}.h5"

    @property
    def quarantine_root(self) -> Path:
        """Writes whose blocking checks failed land here, never where readers look."""
        return self.root / "quarantine"

    def quarantined_shard(self, stage: str, shard: int) -> Path:
        return self.quarantine_root / stage / f"{shard_key(shard)}.h5"

    @property
    def quarantined_parameters(self) -> Path:
        return self.quarantine_root / "parameters.h5"

    @property
    def quarantined_dataset(self) -> Path:
        return self.quarantine_root / "dataset" / self.dataset.name

    @property
    def dataset(self) -> Path:
        p = Path(self.cfg.dataset.output_path)
        return p if p.is_absolute() else self.data / p

    @property
    def dashboards(self) -> Path:
        return self.root / "dashboards"

    @property
    def feature_matrix(self) -> Path:
        """The fitted tokenizer input (cleaning, encoders, categories, matrix): a folder."""
        return self.root / "tokenizer" / "feature_matrix"

    @property
    def tokenizer(self) -> Path:
        """The tokenizer checkpoint folder (:mod:`spinlock_core.tokenizer.checkpoint`)."""
        return self.root / "tokenizer" / "checkpoint"

    def tokens(self, shard: int) -> Path:
        """Tokens of one shard (:mod:`spinlock_core.tokenizer.tokens_file`)."""
        return self.root / "tokens" / f"{shard_key(shard)}.h5"
