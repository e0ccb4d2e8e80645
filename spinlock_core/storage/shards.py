"""Write and check HDF5 shard files (one per stage and partition), atomically, gated by checks.

A file is written under a temporary name in the same folder (``<name>.tmp-<host>-<pid>``), flushed
to disk and renamed when complete, so a reader never sees half a file and a failed write leaves
nothing behind. A writer killed outright (SIGKILL, OOM) leaves its temporary file; nothing reads
those, and the next write of the same path removes the ones whose writer process on this host is
gone (:func:`remove_stale_temp_files`). :func:`commit_stage_file` runs the stage's blocking checks
on the in-memory arrays first: a write that fails one goes to the stage's quarantine path instead
(for inspection), and the reader path is left empty.

Files are byte-for-byte deterministic: the same config and code write the same bytes (no
timestamps: HDF5 object times are off and no ``created`` attribute is written, Dagster records when
a materialization ran). Each file records a SHA-256 of every dataset's content in its ``sha256``
attribute and chunked datasets carry the ``fletcher32`` checksum filter
(:mod:`spinlock_core.storage.integrity`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from .. import __version__
from ..config.experiment import ExperimentConfig
from .fingerprints import code_version, noise_generator_name, stage_fingerprint, stage_version
from .integrity import ATTR_DIGESTS, array_digest, read_digests
from .layout import LAYOUT_VERSION, chunks_for, compression_kwargs, layout_version_problem, stage_specs

log = logging.getLogger(__name__)

__all__ = [
    "StorageError",
    "WriteStats",
    "CommitResult",
    "config_fingerprint",
    "atomic_h5",
    "remove_stale_temp_files",
    "write_stage_file",
    "commit_stage_file",
    "read_stage_file",
    "check_stage_arrays",
    "check_stage_file",
    "quarantine_reason",
]


class StorageError(ValueError):
    """A file that cannot be written or read as Spinlock data; the message names the file."""


@dataclass
class WriteStats:
    path: Path
    seconds: float
    bytes: int


def config_fingerprint(cfg: ExperimentConfig) -> str:
    """Short SHA-256 of the whole validated config (informational; files are matched to a config
    by their stage fingerprint, see :mod:`spinlock_core.storage.fingerprints`). ``orchestration``
    (how a deployment runs the steps) is left out: the same experiment run in-process or on a
    Celery fleet writes the same bytes."""
    return hashlib.sha256(cfg.model_dump_json(exclude={"orchestration"}).encode()).hexdigest()[:16]


def _ensure_writable_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"{folder}: cannot create output folder ({e.strerror or e})") from None
    if not os.access(folder, os.W_OK):
        raise StorageError(f"{folder}: output folder is not writable")


#: this host's name as it appears in temporary file names (no ``-``, so the pid after the last one parses)
_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
_TMP_SUFFIX = re.compile(r"\.tmp-(?:(?P<host>[A-Za-z0-9_.]+)-)?(?P<pid>\d+)$")


def _temp_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{_HOST}-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temp_files(path: Path | str) -> list[Path]:
    """Remove the temporary files of ``path`` (``<path>.tmp-<host>-<pid>``) left by writers on
    this host whose process no longer exists (killed mid-write); returns the removed paths.

    Temporary files of another host (a shared volume) are left alone: their pid means nothing
    here. Names without a host (``<path>.tmp-<pid>``, older code) are judged as this host's.
    """
    path = Path(path)
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.tmp-")]
    except FileNotFoundError:
        return []
    for p in candidates:
        m = _TMP_SUFFIX.fullmatch(p.name[len(path.name):])
        if m is None or (m["host"] is not None and m["host"] != _HOST) or _pid_alive(int(m["pid"])):
            continue
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("%s: cannot remove stale temporary file of a dead writer (%s)", p, e.strerror or e)
            continue
        log.warning("%s: removed a stale temporary file left by writer pid %s (no longer running)", p, m["pid"])
        removed.append(p)
    return removed


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_h5(path: Path | str) -> Iterator[h5py.File]:
    """Open ``<path>.tmp-<host>-<pid>`` for writing and, when the block completes, flush it to
    disk and rename it to ``path`` (one atomic ``os.replace``); on any error the temporary file is
    removed and ``path`` is left as it was. Stale temporary files of ``path`` from dead writers
    are removed first (:func:`remove_stale_temp_files`).

    Raises:
        StorageError: the folder cannot be created or written.
    """
    path = Path(path)
    _ensure_writable_dir(path.parent)
    remove_stale_temp_files(path)
    tmp = _temp_path(path)
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (not possible everywhere)
        _fsync(path.parent)


def _base_attrs(cfg: ExperimentConfig, stage: str) -> dict:
    return {
        "layout_version": LAYOUT_VERSION,
        "stage": stage,
        "experiment": cfg.metadata.name,
        "stage_version": stage_version(stage),
        "stage_code_version": code_version(cfg, stage),
        "stage_fingerprint": stage_fingerprint(cfg, stage),
        "config_fingerprint": config_fingerprint(cfg),
        "noise_generator": noise_generator_name(),
        "code_version": __version__,
    }


def check_stage_arrays(
    stage: str, cfg: ExperimentConfig, arrays: dict[str, np.ndarray], *, n: int | None = None
) -> list[str]:
    """Problems with in-memory ``arrays`` as the datasets of ``stage`` (empty list = conforms):
    exactly the stage's datasets, a common ``N`` (``n`` when given), and every dataset's trailing
    shape and dtype kind as the layout says (values are cast to the layout dtype on write)."""
    specs = stage_specs(stage, cfg)
    expected = {s.path for s in specs}
    problems = []
    if set(arrays) != expected:
        missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        problems.append(f"stage {stage!r} needs datasets {sorted(expected)}" + (f"; missing {missing}" if missing else "")
                        + (f"; unexpected {extra}" if extra else ""))
        return problems
    ns = {len(np.asarray(a)) for a in arrays.values()}
    if len(ns) != 1:
        return [f"datasets of stage {stage!r} disagree on N: {sorted(ns)}"]
    got_n = ns.pop()
    if n is not None and got_n != n:
        problems.append(f"holds {got_n} operators, expected {n}")
    for spec in specs:
        data = np.asarray(arrays[spec.path])
        want = spec.shape(cfg, got_n)
        if data.shape != want:
            problems.append(f"{spec.path} must have shape {want}, got {data.shape}")
        if data.dtype.kind != spec.dtype.kind and not (spec.dtype.kind == "f" and data.dtype.kind in "iu"):
            problems.append(f"{spec.path} has dtype {data.dtype}, the layout stores {spec.dtype}")
    return problems


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
    trailing shapes and a common ``N`` (:func:`check_stage_arrays`); each is cast to the layout
    dtype and written whole, compressible ones in chunks of the configured size with the
    configured filter plus ``fletcher32``. The root attribute ``sha256`` records every dataset's
    content digest (:func:`~spinlock_core.storage.integrity.array_digest` of the cast array).
    The same inputs give the same bytes.

    Raises:
        StorageError: wrong dataset set or shape, or an unwritable folder.
    """
    problems = check_stage_arrays(stage, cfg, arrays)
    if problems:
        raise StorageError(f"{path}: " + "; ".join(problems))
    specs = stage_specs(stage, cfg)
    n = len(next(iter(arrays.values())))
    filters = compression_kwargs(cfg)
    t0 = time.perf_counter()
    with atomic_h5(path) as f:
        for k, v in {**_base_attrs(cfg, stage), **(attrs or {})}.items():
            f.attrs[k] = v
        f.attrs["n"] = n
        digests: dict[str, str] = {}
        for spec in specs:
            data = np.asarray(arrays[spec.path])
            shape = spec.shape(cfg, n)
            data = data.astype(spec.dtype, copy=False)
            # compressible datasets are chunked (and filtered when compression is on); small
            # metadata arrays are written contiguous
            kw = {**filters, "chunks": chunks_for(shape, cfg), "fletcher32": True} if spec.compress and n > 0 else {}
            ds = f.create_dataset(spec.path, data=data, track_times=False, **kw)
            for k, v in (dataset_attrs or {}).get(spec.path, {}).items():
                ds.attrs[k] = v
            digests[spec.path] = array_digest(data)
        f.attrs[ATTR_DIGESTS] = json.dumps(digests, sort_keys=True)
    seconds = time.perf_counter() - t0
    return WriteStats(Path(path), seconds, Path(path).stat().st_size)


@dataclass
class CommitResult:
    """Where a gated write went: ``path`` (the reader path, or the quarantine path when a
    blocking check failed), and the blocking checks that failed."""

    write: WriteStats
    quarantined: bool
    failed: list[str]


def commit_stage_file(
    path: Path | str,
    quarantine: Path | str,
    stage: str,
    cfg: ExperimentConfig,
    arrays: dict[str, np.ndarray],
    checks: list,
    *,
    attrs: dict | None = None,
    dataset_attrs: dict[str, dict] | None = None,
) -> CommitResult:
    """Write ``arrays`` to ``path`` when every blocking check in ``checks`` passed
    (:class:`~spinlock_core.validation.CheckReport` objects computed on these arrays), else to
    ``quarantine``.

    Either way the other location is cleared, so readers see the file at ``path`` only when its
    latest write passed its blocking checks, and a quarantined file is never mistaken for current
    data. A quarantined file records the failed checks in its ``quarantined_by`` attribute (JSON).
    """
    path, quarantine = Path(path), Path(quarantine)
    failed = [c for c in checks if c.blocks]
    if not failed:
        stats = write_stage_file(path, stage, cfg, arrays, attrs=attrs, dataset_attrs=dataset_attrs)
        with contextlib.suppress(FileNotFoundError):
            quarantine.unlink()
        return CommitResult(stats, False, [])
    reason = json.dumps([{"check": c.name, "description": c.description} for c in failed])
    stats = write_stage_file(quarantine, stage, cfg, arrays, attrs={**(attrs or {}), "quarantined_by": reason},
                             dataset_attrs=dataset_attrs)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    log.warning("%s: blocking check(s) %s failed; written to quarantine %s", path, [c.name for c in failed], quarantine)
    return CommitResult(stats, True, [c.name for c in failed])


def quarantine_reason(path: Path | str) -> str | None:
    """The failed checks recorded in a quarantined file (``None`` if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("quarantined_by", "[]")
        items = json.loads(raw)
        return "; ".join(f"{i['check']} failed ({i['description']})" for i in items) or "quarantined"
    except (OSError, ValueError, KeyError, TypeError):
        return "quarantined (unreadable quarantine file)"


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
    """All datasets of ``stage`` from ``path`` (after :func:`check_stage_file` passes), each
    compared with its recorded SHA-256 digest.

    Raises:
        StorageError: the file does not conform (:func:`check_stage_file`), a dataset cannot be
            read (damaged chunk: ``fletcher32`` or decompression error), or its content does not
            match its digest (or none is recorded); the message names the file and the dataset.
    """
    problems = check_stage_file(path, stage, cfg)
    if problems:
        raise StorageError(f"{path}: " + "; ".join(problems))
    out = {}
    with open_h5(path) as f:
        digests = read_digests(f)
        if digests is None:
            raise StorageError(f"{path}: no valid {ATTR_DIGESTS!r} digest attribute (written without integrity "
                               "digests or damaged): re-materialize it")
        for s in stage_specs(stage, cfg):
            try:
                data = f[s.path][()]
            except (OSError, RuntimeError, ValueError) as e:
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise StorageError(f"{path}: {s.path} cannot be read, corrupt data ({reason}): re-materialize it") from None
            want = digests.get(s.path)
            if want is None:
                raise StorageError(f"{path}: {s.path} has no SHA-256 digest recorded: re-materialize it")
            if array_digest(data) != want:
                raise StorageError(f"{path}: {s.path} does not match its SHA-256 digest: corrupt data; re-materialize it")
            out[s.path] = data
    return out


def check_stage_file(
    path: Path | str, stage: str, cfg: ExperimentConfig, *, start: int | None = None, stop: int | None = None
) -> list[str]:
    """Problems with a stage file (empty list = conforms): it opens, was written by this layout
    version for this exact config and stage, holds ``stop - start`` operators, and every dataset
    has the layout's shape and dtype. Attributes only: no data is read (a corrupt chunk passes;
    :func:`spinlock_core.storage.integrity.verify_stage_file` reads and checks the data)."""
    try:
        f = open_h5(path)
    except StorageError as e:
        return [str(e).split(": ", 1)[-1]]
    problems: list[str] = []
    with f:
        a = f.attrs
        version = layout_version_problem(a.get("layout_version"))
        if version:
            return [version]  # nothing else of a file in another layout can be judged
        if a.get("stage") != stage:
            problems.append(f"stage attribute {a.get('stage')!r} != {stage!r}")
        if a.get("stage_fingerprint") != stage_fingerprint(cfg, stage):
            problems.append(
                "made from a different config or code version (stage_fingerprint mismatch: the config sections "
                "this stage or its inputs read, or a stage version, changed): re-materialize it"
            )
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

