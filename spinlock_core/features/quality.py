"""Checks of a feature array: NaN/Inf per column (NaN only where documented), constant columns
(only where documented or the parameter is single-valued), saturated columns (most rows on one
value), declared value ranges."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..config.experiment import ExperimentConfig
from .families import documented_constant, documented_saturated, documented_nan, value_ranges

__all__ = ["FeatureReport", "feature_report", "saturation", "SATURATION_SHARE"]

#: a column is "constant" when its spread over operators is below this (relative to its scale)
CONSTANT_RTOL = 1e-7
#: shards with fewer operators than this are too small to call a column constant
MIN_OPERATORS_FOR_CONSTANT = 8
#: SUMMARY statistics of series shorter than this are too coarse to call constant (e.g. a
#: monotonicity over 5 increments is +-1 for every operator)
MIN_STATES_FOR_CONSTANT = 16
#: a non-constant column is "saturated" when one value holds at least this share of its finite
#: rows (then its median absolute deviation is 0: a floor, a clamp or an empty set decides it)
SATURATION_SHARE = 0.5


@dataclass
class FeatureReport:
    path: str
    n: int
    nan_per_feature: dict[str, int]
    inf_per_feature: dict[str, int]
    #: NaN in columns where it is not documented
    undocumented_nan: dict[str, int]
    constant: list[str]
    #: constant columns that are not excused
    unexpected_constant: list[str]
    #: name -> (declared lo, hi, observed min, max)
    range_violations: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    #: non-constant columns with one value on >= SATURATION_SHARE of the rows: name -> (value, share)
    saturated: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: columns documented as constant by construction for this config (excused)
    excused: set[str] = field(default_factory=set)
    #: statistics too coarse to judge (SUMMARY of fewer than MIN_STATES_FOR_CONSTANT states)
    too_short: bool = False
    #: columns that may saturate by construction -> reason (reported apart, not warned about)
    expected_saturated: dict[str, str] = field(default_factory=dict)

    @property
    def nan_ok(self) -> bool:
        return not self.undocumented_nan and not self.inf_per_feature

    @property
    def constant_ok(self) -> bool:
        return not self.unexpected_constant

    @property
    def ranges_ok(self) -> bool:
        return not self.range_violations

    @property
    def unexpected_saturated(self) -> dict[str, tuple[float, float]]:
        """Saturated columns that are not documented as constant by construction (none when the
        series are too short to judge)."""
        if self.too_short:
            return {}
        return {k: v for k, v in self.saturated.items() if k not in self.excused and k not in self.expected_saturated}

    @property
    def saturated_by_construction(self) -> dict[str, tuple[float, float]]:
        """Saturated columns documented to saturate (listed for information)."""
        return {k: v for k, v in self.saturated.items() if k in self.expected_saturated}


def saturation(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Modal value and its share of the finite rows, per column of ``flat [R, F]``.

    Returns ``(value [F], share [F])``; a column without finite values has share 0 (value NaN).
    One sort per column; runs of equal values in the sorted column are the candidate modes.
    """
    r, f = flat.shape
    value = np.full(f, np.nan)
    share = np.zeros(f)
    for j in range(f):
        col = flat[:, j]
        col = np.sort(col[np.isfinite(col)])
        if col.size == 0:
            continue
        starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
        runs = np.diff(np.r_[starts, col.size])
        k = int(runs.argmax())
        value[j], share[j] = col[starts[k]], runs[k] / col.size
    return value, share


def _flatten(values: np.ndarray) -> np.ndarray:
    return values.reshape(-1, values.shape[-1])


def feature_report(path: str, values: np.ndarray, names: tuple[str, ...], cfg: ExperimentConfig) -> FeatureReport:
    """Report on one feature dataset ``values [n, ..., F]`` with column ``names``.

    Constant columns are judged across operators: for ``[n, T, F]`` or ``[n, M, F]`` datasets a
    column is constant when every operator has the same values at every T (or M). Saturation is
    judged over all ``n x T`` (or ``n x M``) rows: one value on at least ``SATURATION_SHARE`` of
    them. Both need at least ``MIN_OPERATORS_FOR_CONSTANT`` operators.
    """
    if values.shape[-1] != len(names):
        raise ValueError(f"{path}: {values.shape[-1]} columns but {len(names)} names")
    n = values.shape[0]
    flat = _flatten(values).astype(np.float64)
    nan = np.isnan(flat).sum(0)
    inf = np.isinf(flat).sum(0)
    allowed = documented_nan(path, cfg)
    nan_per = {nm: int(c) for nm, c in zip(names, nan) if c}
    undoc = {nm: int(c) for nm, c, ok in zip(names, nan, allowed) if c and not ok}
    inf_per = {nm: int(c) for nm, c in zip(names, inf) if c}
    constant: list[str] = []
    short = path.startswith("features/summary") and cfg.simulation.num_timesteps < MIN_STATES_FOR_CONSTANT
    if n >= MIN_OPERATORS_FOR_CONSTANT:
        per_op = values.reshape(n, -1, values.shape[-1]).astype(np.float64)
        # constancy is judged on finite values: a single ±Inf would make spread and scale both
        # Inf, and `inf > inf` is False (the column would read "constant" beside its nan_inf error)
        per_op[~np.isfinite(per_op)] = np.nan
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            spread = np.nanmax(np.abs(per_op - per_op[:1]), axis=(0, 1)) if n > 1 else np.zeros(len(names))
            scale = np.nanmax(np.abs(per_op), axis=(0, 1))
        all_nan = np.isnan(per_op).all(axis=(0, 1))
        for j, nm in enumerate(names):
            if all_nan[j] or not (spread[j] > CONSTANT_RTOL * max(scale[j], 1e-30)):
                constant.append(nm)
    excused = documented_constant(path, cfg)
    unexpected = [] if short else [c for c in constant if c not in excused]
    saturated = {}
    if n >= MIN_OPERATORS_FOR_CONSTANT:
        mode, share = saturation(flat)
        saturated = {
            nm: (float(mode[j]), float(share[j]))
            for j, nm in enumerate(names)
            if nm not in constant and share[j] >= SATURATION_SHARE
        }
    violations = {}
    for nm, (lo, hi) in value_ranges(path, cfg).items():
        col = flat[:, names.index(nm)]
        col = col[np.isfinite(col)]
        if col.size and (col.min() < lo - 1e-5 or col.max() > hi + 1e-5):
            violations[nm] = (lo, hi, float(col.min()), float(col.max()))
    return FeatureReport(path, n, nan_per, inf_per, undoc, constant, unexpected, violations, saturated, excused, short,
                         documented_saturated(path, cfg))
