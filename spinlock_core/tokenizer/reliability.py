"""Reliability of columns aggregated over realizations (SPEC 8).

A SUMMARY aggregated column (``_mean``, ``_std``, ``_cv`` over the M realizations of an operator)
is an estimate with sampling noise. Its reliability is

    1 - mean over operators of var_jack(n) / variance across operators of the aggregate,

with ``var_jack(n)`` the jackknife variance of operator n's aggregate over its realizations:
leave-one-out aggregates ``theta_(i)`` (i = 1..M, each over the other M - 1 realizations),
``theta_(.)`` their mean, ``var_jack = (M - 1) / M * sum_i (theta_(i) - theta_(.))^2``. For the
mean this is exactly ``s^2 / M`` (``s^2`` the ddof-1 variance over realizations). The variance
across operators is the ddof-1 variance of the full-M aggregate, so the ratio compares the noise
variance with the observed variance (true spread plus noise): 1 is noise-free, 0 is all noise, and
a negative value means the jackknife sees more noise than the spread between operators.

What it gives where it cannot be estimated (NaN, "not estimable"):
- ``M < 2``: no realization can be left out.
- ``std`` and ``cv`` with ``M < 3``: a leave-one-out std over one realization is 0 by definition
  (FEATURES.md), so the jackknife would see no noise and report a perfect reliability.
- a column whose aggregate is constant across operators (0 / 0).

Families without realizations have no realization noise to measure: ARCHITECTURE and INITIAL are
shared by all realizations by construction, and TEMPORAL is stored already averaged over
realizations (its per-realization values, which the jackknife needs, are not stored), so its noise
cannot be measured from the file. The cleaning gives those columns reliability 1 and says so; only
columns with per-realization values get a measured reliability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "AGGREGATES",
    "CV_EPS",
    "aggregate_realizations",
    "jackknife_variance",
    "leave_one_out",
    "realization_map",
    "reliability",
]

AGGREGATES = ("mean", "std", "cv")
#: the eps of the bounded cv, ``std / (sqrt(mean^2 + std^2) + eps)`` (FEATURES.md)
CV_EPS = 1e-8

#: [K, F] -> [K, F], applied column-wise to aggregates (the cleaning's signed log and MAD cap)
Transform = Callable[[np.ndarray], np.ndarray]


def _per_realization(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] < 1:
        raise ValueError(f"per_realization must be [N, M >= 1, F], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("per_realization holds non-finite values (replace documented NaN first)")
    return x


def _check_aggregate(aggregate: str) -> None:
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}; known: {AGGREGATES}")


def aggregate_realizations(per_realization, aggregate: str) -> np.ndarray:
    """``[N, M, F] -> [N, F]``: the SUMMARY aggregate over realizations (float64), as in
    ``features.summary.aggregate``: mean; std with ddof 1 (0 when M = 1); bounded cv.

    Raises:
        ValueError: bad shape, non-finite values, or an unknown aggregate.
    """
    x = _per_realization(per_realization)
    _check_aggregate(aggregate)
    mean = x.mean(1)
    if aggregate == "mean":
        return mean
    std = x.std(1, ddof=1) if x.shape[1] > 1 else np.zeros_like(mean)
    if aggregate == "std":
        return std
    return std / (np.sqrt(mean * mean + std * std) + CV_EPS)


def leave_one_out(per_realization, aggregate: str) -> np.ndarray:
    """``[N, M, F] -> [N, M, F]``: entry ``[:, i]`` is the aggregate over all realizations but i.

    Raises:
        ValueError: as :func:`aggregate_realizations`, or ``M < 2``.
    """
    x = _per_realization(per_realization)
    m = x.shape[1]
    if m < 2:
        raise ValueError(f"leave-one-out needs M >= 2 realizations, got {m}")
    return np.stack([aggregate_realizations(np.delete(x, i, axis=1), aggregate) for i in range(m)], axis=1)


def _apply(transform: Transform | None, a: np.ndarray) -> np.ndarray:
    if transform is None:
        return a
    out = np.asarray(transform(a), dtype=np.float64)
    if out.shape != a.shape:
        raise ValueError(f"transform changed the shape {a.shape} -> {out.shape}")
    return out


def jackknife_variance(per_realization, aggregate: str = "mean", transform: Transform | None = None) -> np.ndarray:
    """``[N, M, F] -> [N, F]``: ``(M - 1) / M * sum_i (theta_(i) - theta_(.))^2`` per operator.

    Args:
        per_realization: ``[N, M, F]`` finite values.
        aggregate: ``"mean"``, ``"std"`` or ``"cv"``.
        transform: optional column-wise map ``[K, F] -> [K, F]`` applied to every leave-one-out
            aggregate before the variance (the column as the model sees it).

    Returns:
        ``[N, F]``; NaN where not estimable (``M < 2``; ``std``/``cv`` with ``M < 3``).
    """
    x = _per_realization(per_realization)
    _check_aggregate(aggregate)
    n, m, f = x.shape
    if m < 2 or (aggregate != "mean" and m < 3):
        return np.full((n, f), np.nan)
    theta = _apply(transform, leave_one_out(x, aggregate).reshape(n * m, f)).reshape(n, m, f)
    return (m - 1) / m * ((theta - theta.mean(1, keepdims=True)) ** 2).sum(1)


def reliability(per_realization, aggregate: str = "mean", transform: Transform | None = None) -> np.ndarray:
    """``[N, M, F] -> [F]``: ``1 - mean_n var_jack(n) / var_n(aggregate)`` (module docstring).

    Args:
        per_realization: ``[N, M, F]`` finite values of the training operators.
        aggregate: which aggregate over realizations the column is.
        transform: optional column-wise map ``[K, F] -> [K, F]`` applied to the full and the
            leave-one-out aggregates alike.

    Returns:
        ``[F]`` in ``(-inf, 1]``; NaN where not estimable (module docstring).

    Raises:
        ValueError: fewer than 2 operators, bad shape, non-finite values, unknown aggregate.
    """
    x = _per_realization(per_realization)
    if x.shape[0] < 2:
        raise ValueError(f"reliability needs at least 2 operators, got {x.shape[0]}")
    full = _apply(transform, aggregate_realizations(x, aggregate))
    spread = full.var(0, ddof=1)
    noise = jackknife_variance(x, aggregate, transform).mean(0)
    out = np.full(x.shape[2], np.nan)
    ok = spread > 0
    out[ok] = 1.0 - noise[ok] / spread[ok]
    return out


def realization_map(names: Sequence[str], per_realization_names: Sequence[str]) -> list[tuple[int, str]]:
    """For each aggregated column name ``{base}_{aggregate}``, ``(index of base in
    per_realization_names, aggregate)``.

    Raises:
        ValueError: names that are not ``{base}_{mean|std|cv}`` of a per-realization column.
    """
    index = {n: i for i, n in enumerate(per_realization_names)}
    out, bad = [], []
    for name in names:
        base, _, agg = name.rpartition("_")
        if agg in AGGREGATES and base in index:
            out.append((index[base], agg))
        else:
            bad.append(name)
    if bad:
        raise ValueError(
            f"{len(bad)} columns are not an aggregate (_mean, _std, _cv) of a per-realization column: {bad[:10]}"
        )
    return out
