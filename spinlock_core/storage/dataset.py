"""The consolidated, user-facing dataset file, and a reader that describes any Spinlock file."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..config.experiment import ExperimentConfig
from .fingerprints import stage_fingerprint
from .integrity import ATTR_DIGESTS, Digest, array_digest, read_digests, verify_stage_file
from .layout import (
    ATTR_FEATURE_NAMES,
    LAYOUT_VERSION,
    PATHS,
    chunks_for,
    compression_kwargs,
    layout_version_problem,
    stage_specs,
)
from .paths import ExperimentPaths, shard_key
from .shards import StorageError, WriteStats, atomic_h5, check_stage_file, config_fingerprint, open_h5, quarantine_reason

__all__ = ["consolidate", "shard_problems", "ConsolidateResult", "describe", "SHARDED_STAGES"]

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


@dataclass
class ConsolidateResult:
    """The consolidated write: where it went (quarantine when a blocking dataset check failed)
    and the dataset-level checks."""

    write: WriteStats
    checks: list
    quarantined: bool


def shard_problems(
    cfg: ExperimentConfig, paths: ExperimentPaths, stages: list[str], *, verify_data: bool = True
) -> list[str]:
    """Why the shards of ``stages`` (and the parameters file) cannot be consolidated now: one line
    per missing, quarantined, stale (other config or code version) or corrupt file, naming the
    partition, its asset and the file. Empty when every file is present, current and intact.

    ``verify_data`` (default) reads every file in full and compares each dataset with its
    SHA-256 digest (:func:`~spinlock_core.storage.integrity.verify_stage_file`); without it only
    attributes, shapes and dtypes are checked (:func:`check_stage_file`), for a caller that
    verifies while reading the data anyway (:func:`consolidate`).
    """
    check = verify_stage_file if verify_data else check_stage_file
    problems = []
    if not paths.parameters.exists():
        q = quarantine_reason(paths.quarantined_parameters)
        problems.append(f"parameters: {'quarantined: ' + q if q else 'missing: materialize parameters'}")
    else:
        pp = check(paths.parameters, "parameters", cfg)
        if pp:
            problems.append(f"parameters ({paths.parameters}): {'; '.join(pp)}")
    for stage in stages:
        if stage not in SHARDED_STAGES:
            raise ValueError(f"unknown sharded stage {stage!r}; known: {SHARDED_STAGES}")
        asset = stage.replace("features_", "features/")
        for shard in range(cfg.num_shards):
            start, stop = cfg.shard_range(shard)
            p = paths.shard(stage, shard)
            label = f"{shard_key(shard)} of {asset}"
            if not p.exists():
                q = quarantine_reason(paths.quarantined_shard(stage, shard))
                problems.append(f"{label}: quarantined: {q}" if q else f"{label}: missing (materialize partition {shard_key(shard)})")
                continue
            bad = check(p, stage, cfg, start=start, stop=stop)
            if bad:
                problems.append(f"{label} ({p}): {'; '.join(bad)}")
    return problems


def consolidate(
    cfg: ExperimentConfig,
    paths: ExperimentPaths,
    stages: list[str],
    *,
    extra_attrs: dict[str, Any] | None = None,
) -> ConsolidateResult:
    """Concatenate the parameters file and every shard of ``stages`` into ``paths.dataset``.

    Every shard must be present, not quarantined and current (:func:`shard_problems`); otherwise
    nothing is written and the :class:`StorageError` names every offending shard. Every dataset
    read from a shard is compared with the shard's SHA-256 digest while it is copied: a corrupt
    shard raises :class:`StorageError` naming the file and dataset, and the file being written is
    removed (the write is atomic: ``paths.dataset`` is either the previous complete file or the
    new complete one, never a partial one). The dataset checks (IC type, family and policy
    balance over all operators: blocking; divergence) run before the write; a failed blocking
    check sends the file to quarantine and clears ``paths.dataset``. Attributes: the config
    (JSON), sampling metrics, code and layout versions, the stage fingerprint, and ``sha256``
    (every dataset's digest, :mod:`~spinlock_core.storage.integrity`); no timestamp, so the same
    shards give the same bytes. Dataset attributes (``feature_names``, ``version``) are carried
    over from the shards.
    """
    from ..validation import dataset_checks

    problems = shard_problems(cfg, paths, stages, verify_data=False)  # data verified while copying below
    if problems:
        raise StorageError(f"cannot consolidate {paths.dataset}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    files = {stage: [paths.shard(stage, shard) for shard in range(cfg.num_shards)] for stage in stages}

    def read(p: Path, f: h5py.File, name: str) -> np.ndarray:
        """``f[name]`` in full, checked against the file's digest."""
        try:
            data = f[name][()]
        except (OSError, RuntimeError, ValueError) as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise StorageError(f"cannot consolidate {paths.dataset}: {p}: {name} cannot be read, corrupt data ({reason}); "
                               "re-materialize it") from None
        want = (read_digests(f) or {}).get(name)
        if want is None or array_digest(data) != want:
            what = "has no SHA-256 digest recorded" if want is None else "does not match its SHA-256 digest (corrupt data)"
            raise StorageError(f"cannot consolidate {paths.dataset}: {p}: {name} {what}; re-materialize it")
        return data

    def gather(stage: str, path: str) -> np.ndarray:
        parts = []
        for p in files[stage]:
            with open_h5(p) as sf:
                parts.append(read(p, sf, path))
        return np.concatenate(parts)

    ic = gather("initial_conditions", PATHS.IC_TYPES) if "initial_conditions" in stages else None
    ro = "rollouts" in stages
    checks = []
    if ic is not None and ro:
        checks = dataset_checks(cfg, ic, gather("rollouts", PATHS.POLICIES), gather("rollouts", PATHS.DIVERGED))
    failed = [c for c in checks if c.blocks]
    target = paths.quarantined_dataset if failed else paths.dataset

    n = cfg.sampling.total_samples
    filters = compression_kwargs(cfg)
    t0 = time.perf_counter()
    digests: dict[str, str] = {}
    with atomic_h5(target) as out:
        with open_h5(paths.parameters) as pf:
            for k, v in pf.attrs.items():
                if k.startswith("sampling_") or k in ("parameter_names", "noise_generator"):
                    out.attrs[k] = v
            params = read(paths.parameters, pf, PATHS.PARAMS)
            out.create_dataset(PATHS.PARAMS, data=params, track_times=False, **_kw(filters, (n, cfg.parameter_space.dim), cfg))
            digests[PATHS.PARAMS] = array_digest(params)
            for k, v in pf[PATHS.PARAMS].attrs.items():
                out[PATHS.PARAMS].attrs[k] = v
        for stage in stages:
            for spec in stage_specs(stage, cfg):
                shape = spec.shape(cfg, n)
                kw = _kw(filters, shape, cfg) if spec.compress else {}
                ds = out.create_dataset(spec.path, shape=shape, dtype=spec.dtype, track_times=False, **kw)
                digest = Digest(shape, spec.dtype)  # the shards' bytes in order are the dataset's bytes
                offset = 0
                for p in files[stage]:
                    with open_h5(p) as sf:
                        src = sf[spec.path]
                        if offset == 0:
                            for k, v in src.attrs.items():
                                ds.attrs[k] = v
                        data = read(p, sf, spec.path)
                        ds[offset : offset + len(data)] = data
                        digest.update(data)
                        offset += len(data)
                assert offset == n, (spec.path, offset, n)
                digests[spec.path] = digest.hexdigest()
        out.attrs[ATTR_DIGESTS] = json.dumps(digests, sort_keys=True)
        out.attrs["layout_version"] = LAYOUT_VERSION
        out.attrs["stage"] = "dataset"
        out.attrs["experiment"] = cfg.metadata.name
        out.attrs["config"] = cfg.model_dump_json()
        out.attrs["config_fingerprint"] = config_fingerprint(cfg)
        out.attrs["stage_fingerprint"] = stage_fingerprint(cfg, "dataset", upstream=("parameters", *stages))
        out.attrs["code_version"] = __version__
        out.attrs["n"] = n
        out.attrs["stages"] = json.dumps(stages)
        out.attrs["checks"] = json.dumps([c.as_dict() for c in checks], default=str)
        if failed:
            out.attrs["quarantined_by"] = json.dumps([{"check": c.name, "description": c.description} for c in failed])
        for k, v in (extra_attrs or {}).items():
            out.attrs[k] = v
    seconds = time.perf_counter() - t0
    if failed:
        paths.dataset.unlink(missing_ok=True)
        log.warning("dataset checks %s failed: %s quarantined at %s", [c.name for c in failed], paths.dataset, target)
    else:
        paths.quarantined_dataset.unlink(missing_ok=True)
        log.info("consolidated %d operators from %s into %s in %.1fs", n, stages, target, seconds)
    return ConsolidateResult(WriteStats(target, seconds, target.stat().st_size), checks, bool(failed))


def _kw(filters: dict, shape: tuple[int, ...], cfg: ExperimentConfig) -> dict:
    if shape[0] == 0:
        return {}
    return {**filters, "chunks": chunks_for(shape, cfg), "fletcher32": True}


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
        StorageError: missing, non-HDF5, truncated or foreign (non-Spinlock) file, or one written
            with a newer layout than this code reads (an older one is described as it is).
    """
    with open_h5(path) as f:
        version = layout_version_problem(f.attrs.get("layout_version"))
        if version and not version.startswith("written with the older"):  # foreign, unreadable or newer
            raise StorageError(f"{path}: {version}")
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
                    for i in range(0, ds.shape[0] if ds.shape[-1] else 0, step):  # no columns: nothing to count
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
