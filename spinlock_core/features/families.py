"""The four feature families: names, versions, where they are stored, and what is documented
about them (columns that may be NaN, columns constant by construction, value ranges).

A new family is a new module with its extractor plus one entry in :data:`FAMILIES`.
"""

from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config.experiment import ExperimentConfig
from ..storage.layout import PATHS
from . import initial as _initial
from . import summary as _summary
from . import temporal as _temporal

__all__ = [
    "Family",
    "FAMILIES",
    "enabled_families",
    "feature_names",
    "documented_nan",
    "documented_constant",
    "documented_saturated",
    "value_ranges",
]


@dataclass(frozen=True)
class Family:
    """One family: its asset name (``features/<name>``), storage stage and datasets."""

    name: str
    stage: str
    version: str
    #: dataset path -> names of its last axis (given the config)
    datasets: Callable[[ExperimentConfig], dict[str, tuple[str, ...]]]
    enabled: Callable[[ExperimentConfig], bool]
    #: whether the family is computed inside the rollout loop (needs the trajectories)
    from_rollouts: bool


def _arch_names(cfg: ExperimentConfig) -> tuple[str, ...]:
    return tuple(cfg.parameter_space.names)


FAMILIES: dict[str, Family] = {
    "summary": Family(
        "summary", "features_summary", _summary.VERSION,
        lambda c: {PATHS.SUMMARY_AGG: _summary.AGGREGATED_NAMES, PATHS.SUMMARY_TRAJ: _summary.SUMMARY_NAMES},
        lambda c: c.features.summary.enabled, True,
    ),
    "temporal": Family(
        "temporal", "features_temporal", _temporal.VERSION,
        lambda c: {PATHS.TEMPORAL: _temporal.TEMPORAL_NAMES},
        lambda c: c.features.temporal.enabled, True,
    ),
    "architecture": Family(
        "architecture", "features_architecture", "1.0",
        lambda c: {PATHS.ARCHITECTURE: _arch_names(c)},
        lambda c: c.features.architecture.enabled, False,
    ),
    "initial": Family(
        "initial", "features_initial", _initial.VERSION,
        lambda c: {PATHS.INITIAL: _initial.INITIAL_NAMES},
        lambda c: c.features.initial.enabled, False,
    ),
}


def enabled_families(cfg: ExperimentConfig) -> list[Family]:
    return [f for f in FAMILIES.values() if f.enabled(cfg)]


def feature_names(family: str, cfg: ExperimentConfig) -> dict[str, tuple[str, ...]]:
    return FAMILIES[family].datasets(cfg)


# Per-trajectory SUMMARY columns that depend on state 0 alone through deterministic maps: every
# realization shares state 0, so their spread over realizations is zero by construction.
_REALIZATION_INVARIANT = ("output_input_corr",)


def _summary_undefined_per_traj(cfg: ExperimentConfig) -> np.ndarray:
    """Per-trajectory SUMMARY columns that are NaN for every operator under this config: the
    sensitivity block when it is not computed, and the columns a short series leaves undefined."""
    nan = np.zeros(len(_summary.SUMMARY_NAMES), dtype=bool)
    if not cfg.features.summary.extract_operator_features:
        nan[_summary.SENSITIVITY_SLICE] = True
    t = cfg.simulation.num_timesteps
    if t < 8:  # short series: see the NaN policy of spinlock_core.features.summary
        nan |= _short_series_nan(t)
    return nan


def _summary_nan_per_traj(cfg: ExperimentConfig) -> np.ndarray:
    """Per-trajectory SUMMARY columns allowed to hold NaN: the undefined ones, and the operator
    sensitivity block always. A sensitivity estimate that fails for one operator (a non-finite
    result such as an overflow or 0/0, or the log of a zero norm: e.g. ``lipschitz_op_scaling``
    of an operator whose output does not depend on its input) is NaN in that operator's row,
    never a sentinel number; the ``nan_inf`` check counts it without failing the shard."""
    nan = _summary_undefined_per_traj(cfg)
    nan[_summary.SENSITIVITY_SLICE] = True
    return nan


def _short_series_nan_uncached(t: int) -> np.ndarray:
    """Columns 0-119 that the SUMMARY NaN policy leaves undefined for ``t`` states (read off the
    implementation on a generic random trajectory, so it can never drift from it)."""
    import torch

    g = torch.Generator().manual_seed(0)
    traj = torch.randn(1, 2, t, 3, 16, 16, generator=g, dtype=torch.float64)
    traj = traj * torch.linspace(1.0, 2.0, t, dtype=torch.float64).view(1, 1, t, 1, 1, 1)
    pt = _summary.per_trajectory_features(traj, sensitivity=torch.zeros(1, 2, 10))
    return torch.isnan(pt[0]).any(0).numpy()


#: cached (functools.lru_cache(maxsize=None)): mutmut mutates only undecorated functions, so the body is
#: _short_series_nan_uncached and the cache is applied here
_short_series_nan = functools.lru_cache(maxsize=None)(_short_series_nan_uncached)


def documented_nan(path: str, cfg: ExperimentConfig) -> np.ndarray:
    """Boolean mask over the last axis of ``path``: columns allowed to hold NaN for this config."""
    if path == PATHS.SUMMARY_TRAJ:
        return _summary_nan_per_traj(cfg)
    if path == PATHS.SUMMARY_AGG:
        return np.tile(_summary_nan_per_traj(cfg), 3)
    names = [n for fam in FAMILIES.values() for p, n in fam.datasets(cfg).items() if p == path]
    if not names:
        raise ValueError(f"{path} is not a feature dataset")
    return np.zeros(len(names[0]), dtype=bool)


def documented_constant(path: str, cfg: ExperimentConfig) -> set[str]:
    """Names of columns of ``path`` that are constant across operators by construction for this
    config (and therefore excused by the constant-column check)."""
    out: set[str] = set()
    if path == PATHS.ARCHITECTURE:
        from ..config.parameters import ChoiceParam, IntegerParam, ContinuousParam

        for name, spec in cfg.parameter_space.ordered():
            single = (isinstance(spec, ChoiceParam) and len(spec.choices) == 1) or (
                isinstance(spec, (IntegerParam, ContinuousParam)) and spec.bounds[0] == spec.bounds[1]
            )
            if single:
                out.add(name)
    if path == PATHS.SUMMARY_AGG:
        m = cfg.simulation.num_realizations
        for n in _REALIZATION_INVARIANT:
            out |= {f"{n}_std", f"{n}_cv"}
        if m == 1:
            out |= {f"{n}_{s}" for n in _summary.SUMMARY_NAMES for s in ("std", "cv")}
        nan = _summary_undefined_per_traj(cfg)
        out |= {n for i, n in enumerate(_summary.AGGREGATED_NAMES) if np.tile(nan, 3)[i]}
    if path == PATHS.SUMMARY_TRAJ:
        out |= {n for i, n in enumerate(_summary.SUMMARY_NAMES) if _summary_undefined_per_traj(cfg)[i]}
    return out


#: columns whose values come from a small set by definition (counts, signs, lattice wavenumbers):
#: one value on most rows is then a behaviour (a monotone invariant, a field peaked at ring 1),
#: not an artefact
_DISCRETE_STATE = ("ring_peaks", "peak_k", "peak_kx", "peak_ky")
_DISCRETE_SUMMARY = ("regime_switches", "*_monotonicity")
_DISCRETE = "discrete by definition"


def documented_saturated(path: str, cfg: ExperimentConfig) -> dict[str, str]:
    """``{column: reason}`` of columns of ``path`` that may hold one value on most rows by
    construction, so the saturation warning lists them apart: columns discrete by definition
    (``_DISCRETE_*``; ARCHITECTURE columns of integer, choice and boolean parameters) and the
    INITIAL means (every IC family but ``localized`` draws fields of spatial mean exactly 0)."""
    from ..config.parameters import ContinuousParam

    if path == PATHS.ARCHITECTURE:
        return {n: _DISCRETE for n, spec in cfg.parameter_space.ordered() if not isinstance(spec, ContinuousParam)}
    if path == PATHS.TEMPORAL:
        return dict.fromkeys(_DISCRETE_STATE, _DISCRETE)
    if path == PATHS.INITIAL:
        out = {n: _DISCRETE for n in _initial.INITIAL_NAMES if n.endswith("_peak_density")}
        out.update({n: "zero-mean IC families (all but localized) have spatial mean exactly 0"
                    for n in _initial.INITIAL_NAMES if n.endswith("_mean")})
        return out
    names = {PATHS.SUMMARY_TRAJ: _summary.SUMMARY_NAMES, PATHS.SUMMARY_AGG: _summary.AGGREGATED_NAMES}.get(path, ())
    base = (lambda n: n.rsplit("_", 1)[0]) if path == PATHS.SUMMARY_AGG else (lambda n: n)
    return {n: _DISCRETE for n in names if any(fnmatch.fnmatchcase(base(n), p) for p in _DISCRETE_SUMMARY)}


_RANGES: tuple[tuple[str, float, float], ...] = (
    ("band_frac_*", 0.0, 1.0),
    ("*_frac", 0.0, 1.0),
    ("*_frac_*", 0.0, 1.0),
    ("entropy", 0.0, 1.0),
    ("flatness", 0.0, 1.0),
    ("corr_0*", -1.0, 1.0),
    ("corr_12", -1.0, 1.0),
    ("corr_abs_mean", 0.0, 1.0),
    ("coherence_*", 0.0, 1.0),
    ("anisotropy", -1.0, 1.0),
    ("orientation_coherence", 0.0, 1.0),
    ("*_cv", 0.0, 1.0),
    ("monotonicity*", -1.0, 1.0),
    ("*_monotonicity", -1.0, 1.0),
    ("*_monotonicity_mean", -1.0, 1.0),
    ("phase_locking*", 0.0, 1.0),
    ("trend_r2*", 0.0, 1.0),
    ("granger_*", 0.0, 1.0),
    ("c?_entropy", 0.0, 1.0),
    ("c?_anisotropy", -1.0, 1.0),
)


def value_ranges(path: str, cfg: ExperimentConfig) -> dict[str, tuple[float, float]]:
    """Declared ``[lo, hi]`` of the columns of ``path`` that have one (checked on finite values)."""
    names = next(n for fam in FAMILIES.values() for p, n in fam.datasets(cfg).items() if p == path)
    if path == PATHS.ARCHITECTURE:
        return {n: (0.0, 1.0) for n in names}
    out = {}
    for n in names:
        for pattern, lo, hi in _RANGES:
            if fnmatch.fnmatchcase(n, pattern):
                out[n] = (lo, hi)
                break
    return out
