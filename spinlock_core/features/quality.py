"""Checks of a feature array: NaN/Inf per column (NaN only where documented), constant columns
(only where documented or the parameter is single-valued), declared value ranges."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..config.experiment import ExperimentConfig
from .families import documented_constant, documented_nan, value_ranges

__all__ = ["FeatureReport", "feature_report"]

#: a column is "constant" when its spread over operators is below this (relative to its scale)
CONSTANT_RTOL = 1e-7
#: shards with fewer operators than this are too small to call a column constant
MIN_OPERATORS_FOR_CONSTANT = 8
#: SUMMARY statistics of series shorter than this are too coarse to call constant (e.g. a
#: monotonicity over 5 increments is +-1 for every operator)
MIN_STATES_FOR_CONSTANT = 16


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

    @property
    def nan_ok(self) -> bool:
        return not self.undocumented_nan and not self.inf_per_feature

    @property
    def constant_ok(self) -> bool:
        return not self.unexpected_constant

    @property
    def ranges_ok(self) -> bool:
        return not self.range_violations


def _flatten(values: np.ndarray) -> np.ndarray:
    return values.reshape(-1, values.shape[-1])


def feature_report(path: str, values: np.ndarray, names: tuple[str, ...], cfg: ExperimentConfig) -> FeatureReport:
    """Report on one feature dataset ``values [n, ..., F]`` with column ``names``.

    Constant columns are judged across operators: for ``[n, T, F]`` or ``[n, M, F]`` datasets a
    column is constant when every operator has the same values at every T (or M).
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
    violations = {}
    for nm, (lo, hi) in value_ranges(path, cfg).items():
        col = flat[:, names.index(nm)]
        col = col[np.isfinite(col)]
        if col.size and (col.min() < lo - 1e-5 or col.max() > hi + 1e-5):
            violations[nm] = (lo, hi, float(col.min()), float(col.max()))
    return FeatureReport(path, n, nan_per, inf_per, undoc, constant, unexpected, violations)
