"""The tokenizer's view of a consolidated dataset: one feature matrix per family, the operators'
metadata, and TEMPORAL in chunks of operators (so memory never grows with N x T).

Families and their matrices:

* ``summary``: columns of the aggregated ``[N, 360]`` block(s) chosen (``mean``, ``std``, ``cv``),
  plus the per-trajectory ``[N, M, 120]`` values the reliability filter needs;
* ``architecture``: ``[N, P]``; ``initial``: ``[N, 42]``;
* ``temporal``: ``[N, T', 63]`` for the chosen states, read ``chunk`` operators at a time.

Every read is checked against the names the dataset declares: a dataset without a family the
tokenizer needs, or with another column count, raises a :class:`TokenizerDataError` naming the
file, the dataset and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..features import summary as _summary
from ..storage.layout import ATTR_FEATURE_NAMES, PATHS
from ..storage.shards import StorageError, open_h5

__all__ = ["TokenizerDataError", "FAMILY_PATHS", "SUMMARY_BLOCKS", "FeatureFile"]

#: family -> the dataset holding its matrix
FAMILY_PATHS: dict[str, str] = {
    "summary": PATHS.SUMMARY_AGG,
    "temporal": PATHS.TEMPORAL,
    "architecture": PATHS.ARCHITECTURE,
    "initial": PATHS.INITIAL,
}
#: the column blocks of the aggregated SUMMARY matrix, in storage order
SUMMARY_BLOCKS = ("mean", "std", "cv")


class TokenizerDataError(ValueError):
    """A dataset that cannot feed the tokenizer; the message names the file and what is missing."""


def _names(ds) -> list[str]:
    raw = ds.attrs.get(ATTR_FEATURE_NAMES)
    if raw is None:
        return []
    return [n.decode() if isinstance(n, bytes) else str(n) for n in raw]


@dataclass
class FeatureFile:
    """A consolidated Spinlock dataset opened for the tokenizer (the file is read on demand)."""

    path: Path

    def __post_init__(self):
        self.path = Path(self.path)
        try:
            with open_h5(self.path) as f:
                if PATHS.DIVERGED not in f:
                    raise TokenizerDataError(f"{self.path}: not a consolidated Spinlock dataset (no {PATHS.DIVERGED})")
                self.n = int(f[PATHS.DIVERGED].shape[0])
                self.families = [fam for fam, p in FAMILY_PATHS.items() if p in f]
        except StorageError as e:
            raise TokenizerDataError(str(e)) from None

    def _dataset(self, f, family: str):
        if family not in FAMILY_PATHS:
            raise TokenizerDataError(f"unknown feature family {family!r}; known: {sorted(FAMILY_PATHS)}")
        path = FAMILY_PATHS[family]
        if path not in f:
            raise TokenizerDataError(
                f"{self.path}: the tokenizer needs the {family} family ({path}), which this dataset does not hold "
                f"(it holds: {', '.join(self.families) or 'no feature family'})"
            )
        return f[path]

    # ------------------------------------------------------------------ metadata

    def metadata(self) -> dict[str, np.ndarray]:
        """``diverged [N]`` bool, ``policies [N]``, ``ic_types [N]`` (str) and ``operator_index [N]``."""
        with open_h5(self.path) as f:
            out = {
                "diverged": f[PATHS.DIVERGED][()].astype(bool),
                "policies": f[PATHS.POLICIES][()].astype(str),
                "ic_types": f[PATHS.IC_TYPES][()].astype(str),
            }
            out["operator_index"] = (
                f[PATHS.OPERATOR_INDEX][()].astype(np.int64) if PATHS.OPERATOR_INDEX in f else np.arange(self.n, dtype=np.int64)
            )
        return out

    # ------------------------------------------------------------------ flat families

    def matrix(self, family: str, *, blocks: tuple[str, ...] = ("mean",), expected: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
        """``(x [N, F] float64, names [F])`` of a flat family (not ``temporal``).

        Args:
            blocks: for ``summary``, which aggregated blocks (``mean``, ``std``, ``cv``), in this order.
            expected: the column names a checkpoint was trained on; a dataset whose columns differ
                raises (a wrong feature count or order would silently mis-tokenize).
        """
        if family == "temporal":
            raise TokenizerDataError("the temporal family is a sequence: read it with temporal_chunks()")
        with open_h5(self.path) as f:
            ds = self._dataset(f, family)
            names = _names(ds)
            if len(names) != ds.shape[-1]:
                raise TokenizerDataError(f"{self.path}: {ds.name} has {ds.shape[-1]} columns but {len(names)} feature names")
            if family == "summary":
                cols = self._summary_columns(names, blocks, ds.name)
                x = ds[()][:, cols].astype(np.float64)
                names = [names[c] for c in cols]
            else:
                x = ds[()].astype(np.float64)
        self._expect(family, names, expected)
        return x, names

    def _summary_columns(self, names: list[str], blocks: tuple[str, ...], where: str) -> list[int]:
        unknown = [b for b in blocks if b not in SUMMARY_BLOCKS]
        if unknown or not blocks:
            raise TokenizerDataError(f"summary blocks must be a non-empty subset of {SUMMARY_BLOCKS}, got {list(blocks)}")
        if len(names) != len(_summary.AGGREGATED_NAMES):
            raise TokenizerDataError(
                f"{self.path}: {where} has {len(names)} columns, expected {len(_summary.AGGREGATED_NAMES)} "
                "(SUMMARY aggregated [mean | std | cv] of 120 columns)"
            )
        width = len(_summary.SUMMARY_NAMES)
        return [SUMMARY_BLOCKS.index(b) * width + j for b in blocks for j in range(width)]

    def _expect(self, family: str, names: list[str], expected: list[str] | None) -> None:
        if expected is None or list(expected) == list(names):
            return
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        detail = (f"missing {missing[:10]}" if missing else "") + ("; " if missing and extra else "") + (
            f"unexpected {extra[:10]}" if extra else "") or "same names in another order"
        raise TokenizerDataError(
            f"{self.path}: the {family} columns differ from the ones the tokenizer was trained on "
            f"({len(names)} here, {len(expected)} expected): {detail}"
        )

    def per_realization(self) -> tuple[np.ndarray, list[str]]:
        """SUMMARY per trajectory ``[N, M, 120]`` float64 and its names (the reliability filter)."""
        with open_h5(self.path) as f:
            if PATHS.SUMMARY_TRAJ not in f:
                raise TokenizerDataError(f"{self.path}: no {PATHS.SUMMARY_TRAJ} (the SUMMARY family is needed)")
            ds = f[PATHS.SUMMARY_TRAJ]
            return ds[()].astype(np.float64), _names(ds)

    # ------------------------------------------------------------------ temporal

    def temporal_shape(self) -> tuple[int, int, int]:
        """``(N, T, F)`` of the TEMPORAL family."""
        with open_h5(self.path) as f:
            return tuple(int(s) for s in self._dataset(f, "temporal").shape)

    def temporal_names(self) -> list[str]:
        with open_h5(self.path) as f:
            return _names(self._dataset(f, "temporal"))

    def temporal_chunks(self, states: slice = slice(1, None), chunk: int = 256, rows: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(row indices [n], x [n, T', 63] float32)`` for ``chunk`` operators at a time.

        Args:
            states: which states (default ``1:``, the states after the initial condition: state 0
                describes the probe, not the operator).
            rows: operators to read (sorted ascending; default all), e.g. a training split.
        """
        if chunk < 1:
            raise TokenizerDataError(f"chunk must be >= 1, got {chunk}")
        idx = np.arange(self.n) if rows is None else np.asarray(rows, dtype=np.int64)
        if idx.size and (np.any(np.diff(idx) <= 0) or idx[0] < 0 or idx[-1] >= self.n):
            raise TokenizerDataError(f"rows must be sorted, unique and inside [0, {self.n})")
        with open_h5(self.path) as f:
            ds = self._dataset(f, "temporal")
            t = ds.shape[1]
            sel = range(t)[states]
            if len(sel) == 0:
                raise TokenizerDataError(f"states {states} select no state of T = {t}")
            for i in range(0, idx.size, chunk):
                part = idx[i : i + chunk]
                span = int(part[-1] - part[0]) + 1
                if span <= 2 * part.size:  # dense rows: one contiguous read, then pick
                    block = ds[int(part[0]) : int(part[0]) + span][part - part[0]]
                else:  # sparse rows (a small split): point selection, never more than the chunk
                    block = ds[part.tolist()]
                yield part, np.ascontiguousarray(block[:, sel.start : sel.stop : sel.step], dtype=np.float32)
