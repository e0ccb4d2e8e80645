"""Content digests of Spinlock HDF5 files, and full-read verification of shard and dataset files.

Every file written by :func:`spinlock_core.storage.shards.write_stage_file` and
:func:`spinlock_core.storage.dataset.consolidate` carries, in its root attribute ``sha256``, a JSON
object ``{dataset path: hex SHA-256}`` of each dataset's *logical* content (see
:func:`array_digest`): the digest does not depend on chunking or compression, so the same data
written with another filter has the same digest, and concatenating shards along ``N`` gives the
consolidated dataset's digest by feeding the shards' bytes in order.

Chunked datasets are additionally written with HDF5's ``fletcher32`` filter, so a damaged chunk
fails to read (an ``OSError`` from h5py) instead of decompressing to wrong numbers. Contiguous
(small metadata) datasets have no checksum filter; their digest catches a changed byte. A file
without digests (layout < 1.1) is refused by its layout version first; a 1.1 file whose ``sha256``
attribute is missing or lacks a dataset is reported as such, never trusted.

:func:`verify_stage_file` and :func:`verify_dataset_file` read every dataset in full: they cost a
read of the file, unlike :func:`~spinlock_core.storage.shards.check_stage_file`, which looks at
attributes, shapes and dtypes only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from ..config.experiment import ExperimentConfig

log = logging.getLogger(__name__)

__all__ = [
    "ATTR_DIGESTS",
    "array_digest",
    "Digest",
    "dataset_digest",
    "read_digests",
    "verify_stage_file",
    "verify_dataset_file",
]

#: root attribute holding ``{dataset path: hex SHA-256}`` as JSON
ATTR_DIGESTS = "sha256"

#: rows are read in blocks of about this many bytes when hashing a stored dataset
_BLOCK_BYTES = 64 * 2**20


class Digest:
    """Incremental SHA-256 of an array of ``shape`` and ``dtype`` fed in C order, in blocks of
    whole rows along axis 0 (any split gives the same digest as :func:`array_digest`).

    The hashed bytes are ``"<dtype.str>|<d0>,<d1>,...|"`` (ASCII) followed by the raw C-order
    element bytes, so a reshaped or re-typed array with the same bytes has another digest.
    """

    def __init__(self, shape: tuple[int, ...], dtype) -> None:
        self._h = hashlib.sha256(f"{np.dtype(dtype).str}|{','.join(str(int(d)) for d in shape)}|".encode())
        self.dtype = np.dtype(dtype)

    def update(self, block: np.ndarray) -> None:
        """Feed the next rows (any shape whose C-order bytes continue the array; dtype must match)."""
        block = np.asarray(block)
        if block.dtype != self.dtype:
            raise ValueError(f"digest of a {self.dtype} array fed a {block.dtype} block")
        self._h.update(np.ascontiguousarray(block).reshape(-1).view(np.uint8))

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def array_digest(a: np.ndarray) -> str:
    """Hex SHA-256 of an in-memory array: its dtype (``dtype.str``), shape and C-order bytes."""
    a = np.asarray(a)
    d = Digest(a.shape, a.dtype)
    d.update(a)
    return d.hexdigest()


def dataset_digest(ds: h5py.Dataset) -> str:
    """:func:`array_digest` of a stored dataset, read in blocks of rows (about 64 MiB each).

    Raises:
        OSError: a chunk cannot be read (a ``fletcher32`` mismatch, a damaged compressed chunk,
            data past the end of a truncated file).
    """
    d = Digest(ds.shape, ds.dtype)
    if ds.ndim == 0 or ds.shape[0] == 0:
        d.update(ds[()])
        return d.hexdigest()
    row = max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64)))
    step = max(1, _BLOCK_BYTES // row)
    if ds.chunks:  # whole chunks per block: each chunk is decompressed once
        step = max(ds.chunks[0], step - step % ds.chunks[0])
    for i in range(0, ds.shape[0], step):
        d.update(ds[i : i + step])
    return d.hexdigest()


def read_digests(f: h5py.File) -> dict[str, str] | None:
    """The ``{dataset path: hex digest}`` stored in an open file; None when the attribute is
    absent or not a JSON object of strings."""
    raw = f.attrs.get(ATTR_DIGESTS)
    if raw is None:
        return None
    try:
        d = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        return None
    if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in d.items()):
        return None
    return d


def _short_reason(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    return msg.splitlines()[0][:200]


def _verify_datasets(f: h5py.File, names: Iterable[str]) -> list[str]:
    digests = read_digests(f)
    if digests is None:
        return [f"no valid {ATTR_DIGESTS!r} digest attribute: written without integrity digests or damaged; re-materialize it"]
    problems = []
    for name in names:
        want = digests.get(name)
        if want is None:
            problems.append(f"{name}: no SHA-256 digest recorded for this dataset; re-materialize it")
            continue
        try:
            got = dataset_digest(f[name])
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            problems.append(f"{name}: cannot be read, corrupt data ({_short_reason(e)}); re-materialize it")
            continue
        if got != want:
            problems.append(
                f"{name}: content does not match its SHA-256 digest (stored {want[:16]}, read {got[:16]}): "
                "corrupt data; re-materialize it"
            )
    return problems


def verify_stage_file(
    path: Path | str, stage: str, cfg: ExperimentConfig, start: int | None = None, stop: int | None = None
) -> list[str]:
    """Problems with a shard (or parameters) file of ``stage``, reading all of its data; empty list
    when the file is complete, current and intact.

    First :func:`~spinlock_core.storage.shards.check_stage_file` (opens, layout version, stage,
    config fingerprint, ``[start, stop)`` when both are given, every dataset's shape and dtype);
    if that reports anything, those problems are returned alone. Then every dataset of the stage
    is read in full (blocks of rows) and its SHA-256 compared with the file's ``sha256``
    attribute: a chunk that fails to read (``fletcher32`` or decompression error, truncation) or
    a digest mismatch is one problem naming the dataset.

    Like ``check_stage_file``, the problems do not repeat ``path``: the caller prefixes it.

    Args:
        path: the file, e.g. ``ExperimentPaths.shard(stage, shard)``.
        stage: a key of :data:`spinlock_core.storage.layout.STAGES`.
        cfg: the experiment config the file must have been made from.
        start, stop: the operators ``[start, stop)`` the file must hold (``cfg.shard_range``).
    """
    from .layout import stage_specs
    from .shards import StorageError, check_stage_file, open_h5

    problems = check_stage_file(path, stage, cfg, start=start, stop=stop)
    if problems:
        return problems
    try:
        f = open_h5(path)
    except StorageError as e:  # replaced or removed since the check
        return [str(e).split(": ", 1)[-1]]
    with f:
        return _verify_datasets(f, [s.path for s in stage_specs(stage, cfg)])


def verify_dataset_file(path: Path | str) -> list[str]:
    """Problems with a consolidated dataset file (empty list = intact), reading all of its data:
    it opens, is in this layout version, has ``stage == "dataset"``, and every dataset in it has
    a recorded SHA-256 that matches its content (and every recorded digest names a dataset).
    The problems do not repeat ``path``."""
    from .layout import layout_version_problem
    from .shards import StorageError, open_h5

    try:
        f = open_h5(path)
    except StorageError as e:
        return [str(e).split(": ", 1)[-1]]
    with f:
        version = layout_version_problem(f.attrs.get("layout_version"))
        if version:
            return [version]
        stage = f.attrs.get("stage")
        if stage != "dataset":
            return [f"stage attribute {stage!r} != 'dataset': not a consolidated dataset file"]
        names: list[str] = []
        try:
            f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        except (OSError, RuntimeError) as e:
            return [f"damaged HDF5 structure ({_short_reason(e)})"]
        problems = _verify_datasets(f, names)
        digests = read_digests(f) or {}
        problems += [f"{name}: has a recorded digest but no such dataset" for name in sorted(set(digests) - set(names))]
        return problems
