"""Per-column cleaning steps of SPEC 8: which rows give the statistics, documented NaN, the signed
log for heavy-tailed columns, MAD capping, the variance filter and z-scoring.

Every function is pure (numpy in, numpy out, nothing modified in place) and works column by column
on the last axis, so the statistics of one column never depend on another column or on rows
outside the ones passed in. Statistics are float64 whatever the input dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "HEAVY_TAIL_RULES",
    "MAD_TO_SIGMA",
    "apply_zscore",
    "cap_bounds",
    "clip_columns",
    "excess_kurtosis",
    "heavy_tailed",
    "log_scale",
    "low_variance",
    "mad_cap",
    "mad_stats",
    "nan_to_zero",
    "quantile_ratio",
    "signed_log",
    "stratified_cap_bounds",
    "training_rows",
    "zscore_stats",
]

#: MAD of a normal distribution times this is its standard deviation (1 / Phi^-1(3/4))
MAD_TO_SIGMA = 1.4826


def _matrix(x, name: str = "x") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [N, F] matrix, got shape {x.shape}")
    return x


def _columns(idx: np.ndarray, names: Sequence[str] | None, limit: int = 10) -> str:
    labels = [names[i] if names is not None else str(i) for i in idx[:limit]]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return ", ".join(labels) + more


def _column_vector(v, f: int, name: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.shape != (f,):
        raise ValueError(f"{name} must have shape ({f},), got {v.shape}")
    return v


def training_rows(diverged, split_mask) -> np.ndarray:
    """Rows whose values give the cleaning statistics: in the training split and not diverged.

    Args:
        diverged: ``[N]`` bool, ``metadata/diverged`` (those operators are still cleaned and
            tokenized; they only stay out of the statistics).
        split_mask: ``[N]`` bool, True for the training split.

    Returns:
        ``[N]`` bool.

    Raises:
        ValueError: either is not a 1-D bool array, their lengths differ, or fewer than 2 rows
            remain (no spread can be estimated from one row).
    """
    d, s = np.asarray(diverged), np.asarray(split_mask)
    for name, v in (("diverged", d), ("split_mask", s)):
        if v.ndim != 1 or v.dtype != np.bool_:
            raise ValueError(f"{name} must be a 1-D bool array, got dtype {v.dtype} and shape {v.shape}")
    if d.shape != s.shape:
        raise ValueError(f"diverged has {d.shape[0]} rows but split_mask has {s.shape[0]}")
    rows = s & ~d
    if rows.sum() < 2:
        raise ValueError(
            f"only {int(rows.sum())} training rows remain ({int(s.sum())} in the split, "
            f"{int((s & d).sum())} of them diverged); cleaning statistics need at least 2"
        )
    return rows


def nan_to_zero(x, documented_mask, names: Sequence[str] | None = None) -> np.ndarray:
    """NaN -> 0 in the columns documented to hold NaN (``families.documented_nan``).

    Args:
        x: ``[..., F]`` values (a family matrix ``[N, F]`` or per-realization ``[N, M, F]``).
        documented_mask: ``[F]`` bool, True where NaN is documented.
        names: optional ``F`` column names, used in the error message.

    Returns:
        ``[..., F]`` float64 copy with those NaN replaced by 0.

    Raises:
        ValueError: a NaN in an undocumented column, or an infinity anywhere (both named).
    """
    x = np.array(x, dtype=np.float64)
    mask = np.asarray(documented_mask)
    if mask.dtype != np.bool_ or mask.shape != x.shape[-1:]:
        raise ValueError(
            f"documented_mask must be a bool array of shape ({x.shape[-1]},), got {mask.dtype} {mask.shape}"
        )
    if names is not None and len(names) != x.shape[-1]:
        raise ValueError(f"{len(names)} names for {x.shape[-1]} columns")
    lead = tuple(range(x.ndim - 1))
    inf = np.isinf(x).any(axis=lead)
    if inf.any():
        raise ValueError(f"infinite values in columns {_columns(np.flatnonzero(inf), names)}")
    nan = np.isnan(x)
    bad = nan.any(axis=lead) & ~mask
    if bad.any():
        raise ValueError(f"NaN in columns not documented to hold NaN: {_columns(np.flatnonzero(bad), names)}")
    x[nan] = 0.0
    return x


def excess_kurtosis(x_train) -> np.ndarray:
    """``[N, F] -> [F]``: m4 / m2^2 - 3 with population moments; 0 for a constant column."""
    x = _matrix(x_train, "x_train")
    d = x - x.mean(0)
    m2, m4 = (d**2).mean(0), (d**4).mean(0)
    out = np.zeros(x.shape[1])
    ok = m2 > 0
    out[ok] = m4[ok] / m2[ok] ** 2 - 3.0
    return out


def quantile_ratio(x_train) -> np.ndarray:
    """``[N, F] -> [F]``: (q99 - q01) / (q75 - q25), 3.45 for a normal column (4.65 / 1.35), 1.96
    for a uniform one; inf when the IQR is 0 but the 1-99% range is
    not (a spike of one value with tails), 0 for a column constant on its central 98%."""
    x = _matrix(x_train, "x_train")
    q01, q25, q75, q99 = np.quantile(x, [0.01, 0.25, 0.75, 0.99], axis=0)
    spread, iqr = q99 - q01, q75 - q25
    out = np.zeros(x.shape[1])
    ok = iqr > 0
    out[ok] = spread[ok] / iqr[ok]
    out[~ok & (spread > 0)] = np.inf
    return out


#: rule name -> statistic ``[N, F] -> [F]``; a column is heavy-tailed when it exceeds the threshold
HEAVY_TAIL_RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "kurtosis": excess_kurtosis,
    "quantile_ratio": quantile_ratio,
    "none": lambda x: np.full(_matrix(x, "x_train").shape[1], -np.inf),
}


def heavy_tailed(x_train, rule: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Columns to pass through :func:`signed_log`.

    Args:
        x_train: ``[N, F]`` training rows (after :func:`nan_to_zero`).
        rule: a key of :data:`HEAVY_TAIL_RULES` (``"none"`` flags nothing).
        threshold: a column is heavy-tailed when its statistic is strictly above this.

    Returns:
        ``([F] bool heavy, [F] float statistic)``.

    Raises:
        ValueError: unknown rule, or a threshold that is NaN.
    """
    if rule not in HEAVY_TAIL_RULES:
        raise ValueError(f"unknown heavy-tail rule {rule!r}; known: {sorted(HEAVY_TAIL_RULES)}")
    if np.isnan(threshold):
        raise ValueError("heavy-tail threshold is NaN")
    stat = HEAVY_TAIL_RULES[rule](x_train)
    return stat > threshold, stat


def log_scale(x_train) -> np.ndarray:
    """``[N, F] -> [F]`` scale ``s`` of :func:`signed_log`: the median of ``|x|`` over the training
    rows, so that ``|x| < s`` is nearly linear and the tails are compressed. Where more than half
    the rows are exactly 0 the median is 0 and the mean of ``|x|`` is used; an all-zero column
    gets 1 (the transform then changes nothing that matters: the column is constant)."""
    a = np.abs(_matrix(x_train, "x_train"))
    s = np.median(a, axis=0)
    zero = s == 0
    s[zero] = a[:, zero].mean(0)
    s[s == 0] = 1.0
    return s


def signed_log(x, scale) -> np.ndarray:
    """``sign(x) log1p(|x| / s)`` per column: odd, monotone, ~``x / s`` near 0, ``log|x|`` in the tails.

    Args:
        x: ``[N, F]``.
        scale: ``[F]`` positive scales (:func:`log_scale` of the training rows).

    Raises:
        ValueError: shape mismatch, or a scale that is not finite and positive.
    """
    x = _matrix(x)
    s = _column_vector(scale, x.shape[1], "scale")
    if not np.all(np.isfinite(s) & (s > 0)):
        bad = np.flatnonzero(~(np.isfinite(s) & (s > 0))).tolist()
        raise ValueError(f"signed-log scales must be finite and > 0; bad columns: {bad}")
    return np.sign(x) * np.log1p(np.abs(x) / s)


def mad_stats(x_train) -> tuple[np.ndarray, np.ndarray]:
    """``[N, F] -> ([F] median, [F] MAD)`` with MAD = median ``|x - median|`` (not yet scaled
    by :data:`MAD_TO_SIGMA`)."""
    x = _matrix(x_train, "x_train")
    med = np.median(x, axis=0)
    return med, np.median(np.abs(x - med), axis=0)


def cap_bounds(median, mad, k: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """``[F]`` bounds ``median +/- k * 1.4826 * MAD``; ``-inf``/``inf`` where MAD is 0.

    A column with MAD 0 (more than half its training rows share one value: discrete columns,
    saturated ones) is left uncapped: its bounds would collapse onto the median and erase every
    other value.

    Raises:
        ValueError: shapes differ, a negative MAD, or ``k`` not finite and positive.
    """
    med, mad = np.asarray(median, dtype=np.float64), np.asarray(mad, dtype=np.float64)
    if med.ndim != 1 or med.shape != mad.shape:
        raise ValueError(f"median and mad must be [F] vectors of one shape, got {med.shape} and {mad.shape}")
    if not (np.isfinite(k) and k > 0):
        raise ValueError(f"k must be finite and > 0, got {k}")
    if np.any(mad < 0):
        raise ValueError("MAD cannot be negative")
    half = k * MAD_TO_SIGMA * mad
    return np.where(mad > 0, med - half, -np.inf), np.where(mad > 0, med + half, np.inf)


def stratified_cap_bounds(
    x_train, strata_labels, k: float = 5.0, min_stratum: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """``[N, F] -> ([F] low, [F] high)``: the hull of the pooled bounds of :func:`cap_bounds` and
    of the same bounds computed within each stratum of at least ``min_stratum`` rows.

    The update policy splits the population (75 / 25 in the production configs); the pooled
    median and MAD then describe the majority, and a minority stratum whose values lie a few
    MADs away is capped onto one value as a whole, which erases every difference inside it (on
    the demo dataset, more than 90% of the convex operators of 15 SUMMARY ``_mean`` columns). The
    hull never caps more than the pooled rule; a column with pooled MAD 0 stays uncapped.
    """
    x = _matrix(x_train, "x_train")
    labels = np.asarray(strata_labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"strata_labels must have shape ({x.shape[0]},), got {labels.shape}")
    lo, hi = cap_bounds(*mad_stats(x), k)
    for u in np.unique(labels):
        rows = labels == u
        if rows.sum() < min_stratum:
            continue
        s_lo, s_hi = cap_bounds(*mad_stats(x[rows]), k)
        # a stratum with MAD 0 contributes its median (its bulk) and never removes a cap
        med = np.median(x[rows], axis=0)
        lo = np.minimum(lo, np.where(np.isfinite(s_lo), s_lo, med))
        hi = np.maximum(hi, np.where(np.isfinite(s_hi), s_hi, med))
    return lo, hi


def mad_cap(x, median, mad, k: float = 5.0) -> np.ndarray:
    """Clip each column to ``median +/- k * 1.4826 * MAD`` (:func:`cap_bounds`; MAD 0: uncapped).

    Args:
        x: ``[N, F]``.
        median, mad: ``[F]`` from :func:`mad_stats` on the training rows.
        k: half-width in robust standard deviations (SPEC 8: 5).

    Raises:
        ValueError: shape mismatch, a negative MAD, or ``k`` not finite and positive.
    """
    x = _matrix(x)
    _column_vector(median, x.shape[1], "median")
    return clip_columns(x, *cap_bounds(median, mad, k))


def clip_columns(x, low, high) -> np.ndarray:
    """``[N, F]`` clipped to ``[F]`` bounds (``-inf``/``inf``: no bound)."""
    x = _matrix(x)
    low, high = _column_vector(low, x.shape[1], "low"), _column_vector(high, x.shape[1], "high")
    if np.any(np.isnan(low) | np.isnan(high)) or np.any(low > high):
        raise ValueError("bounds must be non-NaN with low <= high")
    return np.clip(x, low, high)


def low_variance(x_train, floor: float = 1e-8) -> np.ndarray:
    """``[N, F] -> [F]`` bool: True where the population variance of the training rows is below
    ``floor`` (those columns are dropped)."""
    if not floor >= 0:
        raise ValueError(f"variance floor must be >= 0, got {floor}")
    return _matrix(x_train, "x_train").var(0) < floor


def zscore_stats(x_train) -> tuple[np.ndarray, np.ndarray]:
    """``[N, F] -> ([F] mean, [F] std)``, population std of the training rows.

    Raises:
        ValueError: a column has std 0 (it should have left at the variance filter).
    """
    x = _matrix(x_train, "x_train")
    mean, std = x.mean(0), x.std(0)
    if np.any(std == 0):
        bad = np.flatnonzero(std == 0).tolist()
        raise ValueError(f"columns with zero standard deviation cannot be z-scored: {bad}")
    return mean, std


def apply_zscore(x, mean, std) -> np.ndarray:
    """``(x - mean) / std`` per column: ``[N, F]`` with ``[F]`` statistics."""
    x = _matrix(x)
    mean = _column_vector(mean, x.shape[1], "mean")
    std = _column_vector(std, x.shape[1], "std")
    if not np.all(std > 0):
        raise ValueError("std must be > 0 in every column")
    return (x - mean) / std
