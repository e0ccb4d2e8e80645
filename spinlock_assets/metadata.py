"""Definition metadata shared by the asset modules: owners, tags, table schemas of the feature
assets, and the file facts (path, size) every materialization reports."""

from pathlib import Path

import dagster as dg
import numpy as np

from spinlock_core.config import ExperimentConfig
from spinlock_core.features.families import documented_nan, feature_names

__all__ = ["OWNERS", "tags", "feature_schema", "parameter_schema", "file_metadata"]

#: who answers for the data (Dagster shows owners on every asset page)
OWNERS = ["team:spinlock"]


def tags(stage: str, **extra: str) -> dict[str, str]:
    """Asset tags: the pipeline stage and anything else worth filtering on in the UI."""
    return {"stage": stage, **extra}


def feature_schema(cfg: ExperimentConfig, family: str) -> dict:
    """``{"dagster/column_schema": TableSchema}`` of a feature family's main dataset: one float32
    column per feature name, with its dataset and whether it may hold (documented) NaN."""
    datasets = feature_names(family, cfg)
    path, names = next(iter(datasets.items()))
    nan = documented_nan(path, cfg)
    cols = [dg.TableColumn(n, "float32", description=f"{path}[:, {j}]" + ("; NaN allowed (documented)" if nan[j] else ""))
            for j, n in enumerate(names)]
    return {"dagster/column_schema": dg.TableSchema(columns=cols)}


def parameter_schema(cfg: ExperimentConfig) -> dict:
    """``{"dagster/column_schema": ...}`` of ``parameters/params``: one unit-cube column per parameter."""
    cols = [dg.TableColumn(n, "float32", description=f"parameters/params[:, {j}] in [0, 1)")
            for j, n in enumerate(cfg.parameter_space.names)]
    return {"dagster/column_schema": dg.TableSchema(columns=cols)}


def file_metadata(path: Path | str | None) -> dict:
    """``path`` and ``size_mb`` of a written file (``"not written"`` when it is not there: quarantined)."""
    if path is None or not Path(path).exists():
        return {"path": "not written"}
    p = Path(path)
    return {"path": dg.MetadataValue.path(str(p)), "size_mb": float(np.round(p.stat().st_size / 2**20, 4))}
