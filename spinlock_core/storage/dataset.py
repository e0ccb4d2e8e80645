"""The consolidated, user-facing dataset file, and a reader that describes any Spinlock file."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..config.experiment import ExperimentConfig
from .layout import ATTR_FEATURE_NAMES, LAYOUT_VERSION, chunks_for, compression_kwargs, stage_specs
from .paths import ExperimentPaths
from .shards import StorageError, WriteStats, atomic_h5, check_stage_file, config_fingerprint, open_h5

__all__ = ["consolidate", "describe", "SHARDED_STAGES"]

log = logging.getLogger(__name__)

#: stages stored as one file per partition (the parameters are one file for the experiment)
SHARDED_STAGES = (
    "initial_conditions",
    "rollouts",
    "features_summary",
    "features_temporal",
    "features_architecture",
    "features_initial",
)


def consolidate(
    cfg: ExperimentConfig,
    paths: ExperimentPaths,
    stages: list[str],
    *,
    extra_attrs: dict[str, Any] | None = None,
) -> WriteStats:
    """Concatenate the parameters file and every shard of ``stages`` into ``paths.dataset``.

    Every shard must exist and conform (:func:`check_stage_file`); otherwise nothing is written and
    the error lists the offending files. Attributes: the config (JSON), sampling metrics,
    creation time, code and layout versions; dataset attributes (``feature_names``,
    ``version``) are carried over from the shards.
    """
    problems = []
    files: dict[str, list[Path]] = {}
    pp = check_stage_file(paths.parameters, "parameters", cfg)
    if pp:
        problems.append(f"{paths.parameters}: {'; '.join(pp)}")
    for stage in stages:
        if stage not in SHARDED_STAGES:
            raise ValueError(f"unknown sharded stage {stage!r}; known: {SHARDED_STAGES}")
        files[stage] = []
        for shard in range(cfg.num_shards):
            start, stop = cfg.shard_range(shard)
            p = paths.shard(stage, shard)
            bad = check_stage_file(p, stage, cfg, start=start, stop=stop)
            if bad:
                problems.append(f"{p}: {'; '.join(bad)}")
            files[stage].append(p)
    if problems:
        raise StorageError("cannot consolidate:\n  " + "\n  ".join(problems))

    n = cfg.sampling.total_samples
    filters = compression_kwargs(cfg)
    t0 = time.perf_counter()
    with atomic_h5(paths.dataset) as out:
        with open_h5(paths.parameters) as pf:
            for k, v in pf.attrs.items():
                if k.startswith("sampling_") or k in ("parameter_names",):
                    out.attrs[k] = v
            out.create_dataset("parameters/params", data=pf["parameters/params"][()], **_kw(filters, (n, cfg.parameter_space.dim), cfg))
            for k, v in pf["parameters/params"].attrs.items():
                out["parameters/params"].attrs[k] = v
        for stage in stages:
            for spec in stage_specs(stage, cfg):
                shape = spec.shape(cfg, n)
                kw = _kw(filters, shape, cfg) if spec.compress else {}
                ds = out.create_dataset(spec.path, shape=shape, dtype=spec.dtype, **kw)
                offset = 0
                for p in files[stage]:
                    with open_h5(p) as sf:
                        src = sf[spec.path]
                        if offset == 0:
                            for k, v in src.attrs.items():
                                ds.attrs[k] = v
                        ds[offset : offset + len(src)] = src[()]
                        offset += len(src)
                assert offset == n, (spec.path, offset, n)
        out.attrs["layout_version"] = LAYOUT_VERSION
        out.attrs["stage"] = "dataset"
        out.attrs["experiment"] = cfg.metadata.name
        out.attrs["config"] = cfg.model_dump_json()
        out.attrs["config_fingerprint"] = config_fingerprint(cfg)
        out.attrs["code_version"] = __version__
        out.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        out.attrs["n"] = n
        out.attrs["stages"] = json.dumps(stages)
        for k, v in (extra_attrs or {}).items():
            out.attrs[k] = v
    seconds = time.perf_counter() - t0
    log.info("consolidated %d operators from %s into %s in %.1fs", n, stages, paths.dataset, seconds)
    return WriteStats(paths.dataset, seconds, paths.dataset.stat().st_size)


def _kw(filters: dict, shape: tuple[int, ...], cfg: ExperimentConfig) -> dict:
    if shape[0] == 0:
        return {}
    return {**filters, "chunks": chunks_for(shape, cfg)}


def _attr_value(v):
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, np.ndarray):
        return v.tolist() if v.size <= 16 else f"array{list(v.shape)} {v.dtype}"
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, str) and len(v) > 200:
        return v[:200] + f"... ({len(v)} chars)"
    return v


def describe(path: Path | str, *, nan_counts: bool = True) -> dict[str, Any]:
    """Everything ``spinlock inspect`` shows: file attributes, and per dataset its shape, dtype,
    attributes and, for feature datasets, NaN counts per feature (last axis).

    Raises:
        StorageError: missing, non-HDF5, truncated or foreign (non-Spinlock) file.
    """
    with open_h5(path) as f:
        if "layout_version" not in f.attrs:
            raise StorageError(f"{path}: not a Spinlock file (no layout_version attribute)")
        info: dict[str, Any] = {"path": str(path), "attrs": {k: _attr_value(v) for k, v in f.attrs.items()}, "datasets": []}
        entries: list[tuple[str, h5py.Dataset]] = []
        try:
            f.visititems(lambda name, obj: entries.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
        except (OSError, RuntimeError) as e:
            raise StorageError(f"{path}: damaged HDF5 file ({e})") from None
        for name, ds in entries:
            d: dict[str, Any] = {
                "path": name,
                "shape": list(ds.shape),
                "dtype": str(ds.dtype),
                "compression": ds.compression,
                "chunks": list(ds.chunks) if ds.chunks else None,
                "attrs": {k: _attr_value(v) for k, v in ds.attrs.items() if k != ATTR_FEATURE_NAMES},
            }
            if nan_counts and name.startswith("features/") and ds.dtype.kind == "f" and ds.ndim >= 2:
                try:
                    counts = np.zeros(ds.shape[-1], dtype=np.int64)
                    step = max(1, (64 * 2**20) // max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:]))))
                    for i in range(0, ds.shape[0], step):
                        block = ds[i : i + step]
                        counts += np.isnan(block).reshape(-1, ds.shape[-1]).sum(axis=0)
                except OSError as e:
                    raise StorageError(f"{path}: cannot read {name} ({e})") from None
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in ds.attrs.get(ATTR_FEATURE_NAMES, [])]
                if len(names) != ds.shape[-1]:
                    names = [f"f{i}" for i in range(ds.shape[-1])]
                d["nan_total"] = int(counts.sum())
                d["nan_per_feature"] = {nm: int(c) for nm, c in zip(names, counts) if c}
            info["datasets"].append(d)
        return info
