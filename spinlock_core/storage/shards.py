"""Write and check HDF5 shard files (one per stage and partition), atomically.

A file is written under a temporary name in the same folder and renamed when complete, so a reader
never sees half a file and a failed write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from .. import __version__
from ..config.experiment import ExperimentConfig
from .layout import LAYOUT_VERSION, chunks_for, compression_kwargs, stage_specs

__all__ = [
    "StorageError",
    "WriteStats",
    "config_fingerprint",
    "atomic_h5",
    "write_stage_file",
    "read_stage_file",
    "check_stage_file",
]


class StorageError(ValueError):
    """A file that cannot be written or read as Spinlock data; the message names the file."""


@dataclass
class WriteStats:
    path: Path
    seconds: float
    bytes: int


def config_fingerprint(cfg: ExperimentConfig) -> str:
    """Short SHA-256 of the validated config: shards made with another config are detected."""
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:16]


def _ensure_writable_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"{folder}: cannot create output folder ({e.strerror or e})") from None
    if not os.access(folder, os.W_OK):
        raise StorageError(f"{folder}: output folder is not writable")


@contextlib.contextmanager
def atomic_h5(path: Path | str) -> Iterator[h5py.File]:
    """Open ``<path>.tmp-<pid>`` for writing and rename it to ``path`` on success; on any error
    the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    _ensure_writable_dir(path.parent)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _base_attrs(cfg: ExperimentConfig, stage: str) -> dict:
    return {
        "layout_version": LAYOUT_VERSION,
        "stage": stage,
        "experiment": cfg.metadata.name,
        "config_fingerprint": config_fingerprint(cfg),
        "code_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_stage_file(
    path: Path | str,
    stage: str,
    cfg: ExperimentConfig,
    arrays: dict[str, np.ndarray],
    *,
    attrs: dict | None = None,
    dataset_attrs: dict[str, dict] | None = None,
) -> WriteStats:
    """Write one stage's datasets to ``path`` atomically.

    ``arrays`` must hold exactly the stage's datasets (:func:`layout.stage_specs`) with matching
    trailing shapes and a common ``N``; each is written whole in chunks of the configured size with
    the configured filter.

    Raises:
        StorageError: wrong dataset set or shape, or an unwritable folder.
    """
    specs = stage_specs(stage, cfg)
    expected = {s.path for s in specs}
    if set(arrays) != expected:
        raise StorageError(
            f"{path}: stage {stage!r} needs datasets {sorted(expected)}, got {sorted(arrays)}"
        )
    ns = {len(a) for a in arrays.values()}
    if len(ns) != 1:
        raise StorageError(f"{path}: datasets of stage {stage!r} disagree on N: {sorted(ns)}")
    n = ns.pop()
    filters = compression_kwargs(cfg)
    t0 = time.perf_counter()
    with atomic_h5(path) as f:
        for k, v in {**_base_attrs(cfg, stage), **(attrs or {})}.items():
            f.attrs[k] = v
        f.attrs["n"] = n
        for spec in specs:
            data = np.asarray(arrays[spec.path])
            shape = spec.shape(cfg, n)
            if data.shape != shape:
                raise StorageError(f"{path}: {spec.path} must have shape {shape}, got {data.shape}")
            data = data.astype(spec.dtype, copy=False)
            # compressible datasets are chunked (and filtered when compression is on); small
            # metadata arrays are written contiguous
            kw = {**filters, "chunks": chunks_for(shape, cfg)} if spec.compress and n > 0 else {}
            ds = f.create_dataset(spec.path, data=data, **kw)
            for k, v in (dataset_attrs or {}).get(spec.path, {}).items():
                ds.attrs[k] = v
    seconds = time.perf_counter() - t0
    return WriteStats(Path(path), seconds, Path(path).stat().st_size)


def open_h5(path: Path | str) -> h5py.File:
    """Open an HDF5 file for reading, turning h5py's low-level errors into :class:`StorageError`."""
    path = Path(path)
    if not path.exists():
        raise StorageError(f"{path}: file not found")
    if not path.is_file():
        raise StorageError(f"{path}: not a file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        msg = str(e)
        if "file signature not found" in msg:
            reason = "not an HDF5 file"
        elif "truncated" in msg or "end of file" in msg.lower() or "eof" in msg.lower():
            reason = "truncated or damaged HDF5 file"
        else:
            reason = f"cannot open as HDF5 ({msg.split('(')[-1].rstrip(')') if '(' in msg else msg})"
        raise StorageError(f"{path}: {reason}") from None


def read_stage_file(path: Path | str, stage: str, cfg: ExperimentConfig) -> dict[str, np.ndarray]:
    """All datasets of ``stage`` from ``path`` (after :func:`check_stage_file` passes)."""
    problems = check_stage_file(path, stage, cfg)
    if problems:
        raise StorageError(f"{path}: " + "; ".join(problems))
    with open_h5(path) as f:
        return {s.path: f[s.path][()] for s in stage_specs(stage, cfg)}


def check_stage_file(
    path: Path | str, stage: str, cfg: ExperimentConfig, *, start: int | None = None, stop: int | None = None
) -> list[str]:
    """Problems with a stage file (empty list = conforms): it opens, was written by this layout
    version for this exact config and stage, holds ``stop - start`` operators, and every dataset
    has the layout's shape and dtype."""
    try:
        f = open_h5(path)
    except StorageError as e:
        return [str(e).split(": ", 1)[-1]]
    problems: list[str] = []
    with f:
        a = f.attrs
        if a.get("layout_version") != LAYOUT_VERSION:
            problems.append(f"layout_version {a.get('layout_version')!r} != {LAYOUT_VERSION!r}")
        if a.get("stage") != stage:
            problems.append(f"stage attribute {a.get('stage')!r} != {stage!r}")
        if a.get("config_fingerprint") != config_fingerprint(cfg):
            problems.append("written with a different config (config_fingerprint mismatch): re-materialize it")
        n = int(a.get("n", -1))
        if start is not None and stop is not None:
            if n != stop - start or int(a.get("start", -1)) != start or int(a.get("stop", -1)) != stop:
                problems.append(f"holds operators [{a.get('start')}, {a.get('stop')}) (n={n}), expected [{start}, {stop})")
        for spec in stage_specs(stage, cfg):
            if spec.path not in f:
                problems.append(f"missing dataset {spec.path}")
                continue
            ds = f[spec.path]
            want = spec.shape(cfg, n)
            if ds.shape != want:
                problems.append(f"{spec.path} has shape {ds.shape}, expected {want}")
            if ds.dtype != spec.dtype:
                problems.append(f"{spec.path} has dtype {ds.dtype}, expected {spec.dtype}")
    return problems

