"""Redundant columns (SPEC 8): near-duplicates judged within update-policy strata, and exact
linear combinations of kept columns.

Both steps keep the earlier column: columns are visited in their order and a column goes when it
is redundant given the columns already kept. That makes the choice deterministic, independent of
floating-point ties, and keeps the first (in every family, the more basic) column of a group.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

__all__ = ["Duplicate", "combination_coefficients", "duplicates_within_strata", "linear_combinations"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Duplicate:
    """Column dropped as a near-duplicate of the earlier kept column ``of``: ``|r|`` in ``stratum``
    (the stratum with the largest ``|r|`` under ``require="any"``, the smallest under ``"all"``)."""

    of: int
    r: float
    stratum: str


def _label(v: Hashable) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _abs_corr(x: np.ndarray) -> np.ndarray:
    """``[n, F] -> [F, F]`` |Pearson r|; 0 for a column constant within these rows."""
    d = x - x.mean(0)
    norm = np.sqrt((d * d).sum(0))
    # exactly constant (e.g. a whole stratum capped to one bound): its mean may differ from the
    # value by an ulp, and that rounding pattern would correlate perfectly with another's
    ok = np.ptp(x, axis=0) > 0
    z = np.zeros_like(d)
    z[:, ok] = d[:, ok] / norm[ok]
    return np.abs(z.T @ z)


def duplicates_within_strata(
    x_train, strata_labels=None, threshold: float = 0.99, min_stratum: int = 30, require: str = "any"
) -> dict[int, Duplicate]:
    """Near-duplicate columns, judged within strata (update policies).

    The policy splits the population in two, which makes otherwise distinct columns correlate
    across the whole set; within a stratum only genuine redundancy remains. A pair is a duplicate
    when ``|r| > threshold`` in any stratum of at least ``min_stratum`` rows (``require="any"``),
    or in every such stratum (``require="all"``: a column redundant under one policy but
    informative under the other is kept). Strata smaller than ``min_stratum`` are not judged.
    Columns are visited in order; column j is dropped when it duplicates a column kept before it
    (the later column of a pair goes), so in a chain a~b~c with a and c distinct, b goes and c stays.

    Args:
        x_train: ``[N, F]`` training rows (after the MAD cap: outliers can hide a duplicate).
        strata_labels: ``[N]`` labels (e.g. ``metadata/evolution_policies``); None: one stratum.
        threshold: ``|r|`` above which a pair is a duplicate.
        min_stratum: smallest stratum that is judged.
        require: ``"any"`` or ``"all"`` (above).

    Returns:
        ``{dropped column: Duplicate}``, empty when no stratum is large enough (logged).

    Raises:
        ValueError: bad shapes, threshold outside (0, 1], min_stratum < 3, unknown ``require``.
    """
    x = np.asarray(x_train, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x_train must be [N, F], got shape {x.shape}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if min_stratum < 3:
        raise ValueError(f"min_stratum must be >= 3 (a correlation of 2 rows is always +-1), got {min_stratum}")
    if require not in ("any", "all"):
        raise ValueError(f"require must be 'any' or 'all', got {require!r}")
    labels = np.zeros(x.shape[0], dtype=np.int64) if strata_labels is None else np.asarray(strata_labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"strata_labels must have shape ({x.shape[0]},), got {labels.shape}")
    uniq, inverse = np.unique(labels, return_inverse=True)
    judged = [(u, inverse == i) for i, u in enumerate(uniq) if (inverse == i).sum() >= min_stratum]
    if not judged:
        log.warning("no stratum has %d rows (sizes %s): duplicates not judged", min_stratum,
                    np.bincount(inverse).tolist())
        return {}
    corr = np.stack([_abs_corr(x[rows]) for _, rows in judged])  # [S, F, F]
    names = [_label(u) for u, _ in judged]
    dup = (corr > threshold).any(0) if require == "any" else (corr > threshold).all(0)
    # the stratum reported: where the pair is most (any) or least (all) correlated
    pick = corr.argmax(0) if require == "any" else corr.argmin(0)
    out: dict[int, Duplicate] = {}
    kept: list[int] = []
    for j in range(x.shape[1]):
        partners = [i for i in kept if dup[i, j]]
        if not partners:
            kept.append(j)
            continue
        i = max(partners, key=lambda p: corr[pick[p, j], p, j])
        s = pick[i, j]
        out[j] = Duplicate(of=i, r=float(corr[s, i, j]), stratum=names[s])
    return out


def linear_combinations(x_train, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Columns that are exact affine combinations of earlier kept columns.

    A rank-revealing QR in column order: each column is standardized (so every column has norm
    ``sqrt(N)``, as the first diagonal entry of R) and orthogonalised against the kept ones
    (classical Gram-Schmidt, applied twice for stability); its relative residual is the R
    diagonal over the first. A column whose residual is at most ``tol`` lies in the span of the
    kept columns and the intercept, and goes. This sees what a pairwise test cannot: three band
    fractions summing to 1, or ``2a - b``. scipy.linalg.qr with pivoting finds the same rank, but
    it decides which member of a dependent set goes by floating-point residual norms (all
    standardized columns tie at the start); the column order decides here, as in
    :func:`duplicates_within_strata`.

    Args:
        x_train: ``[N, F]`` training rows, no constant column, ``F < N`` (with ``F >= N`` the
            centred columns span at most ``N - 1`` dimensions, so every later column is a
            combination of earlier ones on these rows whatever the features are).
        tol: relative residual at or below which a column is a combination.

    Returns:
        ``([F] bool dropped, [F] relative residual)``; the first column has residual 1.

    Raises:
        ValueError: not 2-D, ``F >= N``, a constant column, or tol outside [0, 1).
    """
    x = np.asarray(x_train, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x_train must be [N, F], got shape {x.shape}")
    n, f = x.shape
    if f >= n:
        raise ValueError(f"{f} columns on {n} training rows: every column past rank {n - 1} is a combination; "
                         "the test needs more rows than columns")
    if not 0 <= tol < 1:
        raise ValueError(f"tol must be in [0, 1), got {tol}")
    std = x.std(0)
    if np.any(std == 0):
        raise ValueError(f"constant columns cannot be standardized: {np.flatnonzero(std == 0).tolist()}")
    z = (x - x.mean(0)) / std
    basis = np.empty((f, n))  # orthonormal rows: contiguous slices keep the loop fast
    k = 0
    residual = np.empty(f)
    for j in range(f):
        v = z[:, j].copy()
        for _ in range(2):
            v -= basis[:k].T @ (basis[:k] @ v)
        norm = np.linalg.norm(v)
        residual[j] = norm / np.sqrt(n)
        if residual[j] > tol:
            basis[k] = v / norm
            k += 1
    return residual <= tol, residual


def combination_coefficients(x_train, targets, basis) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``x[:, t] ~ intercept + sum_k b_k x[:, basis_k]`` in the columns' own units,
    to report what a dropped combination is made of (``2 a - 1 b``; band fractions: ``1 - a - b``).

    One QR of the standardized basis columns serves every target.

    Args:
        x_train: ``[N, F]`` training rows.
        targets: ``[T]`` column indices.
        basis: ``[K]`` column indices, linearly independent and non-constant on these rows.

    Returns:
        ``([T, K] coefficients b, [T] intercepts)``.
    """
    x = np.asarray(x_train, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    basis = np.asarray(basis, dtype=np.int64)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 0, std, 1.0)
    z = (x - mean) / std
    q, r = np.linalg.qr(z[:, basis])
    c = solve_triangular(r, q.T @ z[:, targets]).T  # [T, K], standardized units
    b = c * std[targets, None] / std[None, basis]
    return b, mean[targets] - b @ mean[basis]
