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

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ..features import summary as _summary
from ..storage.layout import ATTR_FEATURE_NAMES, PATHS, STAGES, layout_version_problem
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


class FeatureFile:
    """A Spinlock dataset opened for the tokenizer (read on demand): one consolidated file, or the
    stage files of one shard (:meth:`from_shard`), which hold the same HDF5 paths."""

    def __init__(self, path: Path | str, *, sources: Mapping[str, Path] | None = None):
        """``path``: the consolidated file (or, with ``sources``, a name for messages);
        ``sources``: HDF5 dataset path -> the file that holds it (a shard's stage files)."""
        self.path = Path(path)
        self._sources = {k: Path(v) for k, v in (sources or {}).items()}
        try:
            with self._open(PATHS.DIVERGED) as f:
                version = layout_version_problem(f.attrs.get("layout_version"))
                if version:
                    raise TokenizerDataError(f"{self.path}: {version}")
                if PATHS.DIVERGED not in f:
                    raise TokenizerDataError(f"{self.path}: not a consolidated Spinlock dataset (no {PATHS.DIVERGED})")
                self.n = int(f[PATHS.DIVERGED].shape[0])
            self.families = []
            for fam, p in FAMILY_PATHS.items():
                if self._sources and p not in self._sources:
                    continue
                with self._open(p) as f:
                    if p in f:
                        self.families.append(fam)
        except StorageError as e:
            raise TokenizerDataError(str(e)) from None

    @classmethod
    def from_shard(cls, paths, shard: int) -> "FeatureFile":
        """The stage files of ``shard`` of an experiment (``ExperimentPaths``) that exist."""
        sources = {}
        for stage, specs in STAGES.items():
            if stage == "parameters":
                continue
            p = paths.shard(stage, shard)
            if p.exists():
                sources.update({spec.path: p for spec in specs})
        if PATHS.DIVERGED not in sources:
            raise TokenizerDataError(f"shard {shard} of {paths.root}: no rollouts file ({paths.shard('rollouts', shard)})")
        return cls(paths.root / "shards" / f"shard-{shard:04d}", sources=sources)

    @contextmanager
    def _open(self, dataset_path: str):
        # a path no shard file holds is looked up in the rollouts file, where the reader's own
        # "needs the X family" message then names it
        target = self._sources.get(dataset_path, self._sources.get(PATHS.DIVERGED)) if self._sources else self.path
        with open_h5(target) as f:
            yield f

    def identity(self) -> dict:
        """What a checkpoint records of the data it was trained on: path, N, experiment name and the
        file's config and stage fingerprints."""
        with self._open(PATHS.DIVERGED) as f:
            a = {k: f.attrs.get(k) for k in ("experiment", "config_fingerprint", "stage_fingerprint")}
        out = {k: (v.decode() if isinstance(v, bytes) else None if v is None else str(v)) for k, v in a.items()}
        return {"path": str(self.path), "n": self.n, **out}

    def experiment_config(self):
        """The :class:`ExperimentConfig` recorded in the file's ``config`` attribute."""
        from ..config.experiment import ExperimentConfig

        with self._open(PATHS.DIVERGED) as f:
            raw = f.attrs.get("config")
        if raw is None:
            raise TokenizerDataError(f"{self.path}: no 'config' attribute (not written by Spinlock)")
        return ExperimentConfig.model_validate(json.loads(raw))

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
        with self._open(PATHS.DIVERGED) as f:
            out = {
                "diverged": f[PATHS.DIVERGED][()].astype(bool),
                "policies": f[PATHS.POLICIES][()].astype(str),
            }
        with self._open(PATHS.IC_TYPES) as f:
            out["ic_types"] = f[PATHS.IC_TYPES][()].astype(str)
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
        with self._open(FAMILY_PATHS.get(family, "")) as f:
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
        with self._open(PATHS.SUMMARY_TRAJ) as f:
            if PATHS.SUMMARY_TRAJ not in f:
                raise TokenizerDataError(f"{self.path}: no {PATHS.SUMMARY_TRAJ} (the SUMMARY family is needed)")
            ds = f[PATHS.SUMMARY_TRAJ]
            return ds[()].astype(np.float64), _names(ds)

    # ------------------------------------------------------------------ temporal

    def temporal_shape(self) -> tuple[int, int, int]:
        """``(N, T, F)`` of the TEMPORAL family."""
        with self._open(PATHS.TEMPORAL) as f:
            return tuple(int(s) for s in self._dataset(f, "temporal").shape)

    def temporal_names(self) -> list[str]:
        with self._open(PATHS.TEMPORAL) as f:
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
        with self._open(PATHS.TEMPORAL) as f:
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


class ArrayFeatures:
    """In-memory families with :class:`FeatureFile`'s reading interface (for ``tokenize`` on arrays).

    ``arrays``: family -> raw values as stored: ``summary`` ``[N, 360]`` (aggregated, all blocks)
    or only the blocks a checkpoint reads, ``temporal`` ``[N, T, 63]``, ``architecture`` ``[N, P]``,
    ``initial`` ``[N, 42]``. Column names cannot be checked, so column counts are.
    """

    def __init__(self, arrays: dict):
        if not arrays:
            raise TokenizerDataError("no feature arrays given")
        unknown = [k for k in arrays if k not in FAMILY_PATHS]
        if unknown:
            raise TokenizerDataError(f"unknown feature families {unknown}; known: {sorted(FAMILY_PATHS)}")
        self.path = Path("<arrays>")
        self._arrays = {k: np.asarray(v) for k, v in arrays.items()}
        sizes = {k: v.shape[0] if v.ndim else -1 for k, v in self._arrays.items()}
        if len(set(sizes.values())) != 1:
            raise TokenizerDataError(f"feature arrays disagree on the number of operators: {sizes}")
        self.n = next(iter(sizes.values()))
        self.families = list(self._arrays)

    def _get(self, family: str, ndim: int) -> np.ndarray:
        if family not in self._arrays:
            raise TokenizerDataError(f"the tokenizer needs the {family} family, which the arrays do not hold "
                                     f"(given: {', '.join(self.families)})")
        x = self._arrays[family]
        if x.ndim != ndim:
            raise TokenizerDataError(f"{family} must have {ndim} dimensions, got shape {x.shape}")
        return x

    def matrix(self, family: str, *, blocks: tuple[str, ...] = ("mean",), expected: list[str] | None = None):
        x = self._get(family, 2).astype(np.float64)
        width = len(_summary.SUMMARY_NAMES)
        # [N, 360] is the stored layout (mean | std | cv): pick and order the blocks as a FeatureFile
        # does, also when all three are asked for in another order
        if family == "summary" and x.shape[1] == len(_summary.AGGREGATED_NAMES) and tuple(blocks) != SUMMARY_BLOCKS:
            x = x[:, [SUMMARY_BLOCKS.index(b) * width + j for b in blocks for j in range(width)]]
        if expected is not None and x.shape[1] != len(expected):
            raise TokenizerDataError(f"{family} has {x.shape[1]} columns, the tokenizer was trained on {len(expected)}")
        return x, list(expected) if expected is not None else [f"{family}_{j}" for j in range(x.shape[1])]

    def temporal_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self._get("temporal", 3).shape)

    def temporal_chunks(self, states: slice = slice(1, None), chunk: int = 256, rows=None):
        x = self._get("temporal", 3)
        idx = np.arange(self.n) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(range(x.shape[1])[states]) == 0:
            raise TokenizerDataError(f"states {states} select no state of T = {x.shape[1]}")
        for i in range(0, idx.size, chunk):
            part = idx[i : i + chunk]
            yield part, np.ascontiguousarray(x[part][:, states], dtype=np.float32)
