"""Balanced assignment of categorical labels (IC types) to global operator indices.

Operator ``i`` gets the label whose cumulative-weight interval holds ``frac(s + i / phi)``
(phi the golden ratio, ``s`` drawn from ``(root, "ic_type")``). The Kronecker sequence has low
discrepancy in *every* window of consecutive indices, so the realised fractions of any shard, and
of the whole dataset, sit within a few counts of the weights, and label ``i`` never depends on the
shard size or on which process computes it. Labels of one family are kept adjacent, so family
fractions are balanced the same way.
"""

from __future__ import annotations

import numpy as np

from ..seeding import numpy_generator

__all__ = ["assign_labels", "balance_tolerance"]

_INV_PHI = (np.sqrt(5.0) - 1.0) / 2.0


def assign_labels(weights: dict[str, float], indices: np.ndarray, *, seed: int) -> np.ndarray:
    """Labels ``[len(indices)]`` (object array of str) for global operator ``indices``.

    Args:
        weights: label -> weight (non-negative, summing to 1), in the order the intervals are laid out.
        indices: global operator indices (non-negative ints).
        seed: root seed.
    """
    names = list(weights)
    if not names:
        raise ValueError("weights must not be empty")
    w = np.asarray([weights[k] for k in names], dtype=np.float64)
    if (w < 0).any() or abs(w.sum() - 1.0) > 1e-6:
        raise ValueError(f"weights must be non-negative and sum to 1, got {dict(zip(names, w))}")
    idx = np.asarray(indices, dtype=np.int64)
    if (idx < 0).any():
        raise ValueError("indices must be non-negative")
    shift = numpy_generator(seed, "ic_type").random()
    # exact fractional part of i * (1/phi) in float64 is fine for i < 2^40
    u = np.mod(shift + np.mod(idx * _INV_PHI, 1.0), 1.0)
    cum = np.cumsum(w)
    cum[-1] = 1.0
    k = np.minimum(np.searchsorted(cum, u, side="right"), len(names) - 1)
    return np.asarray(names, dtype=object)[k]


def balance_tolerance(n: int) -> float:
    """Allowed |realised - configured| fraction for ``n`` operators: 1 percentage point, or 3
    counts where ``n`` is small (the Kronecker assignment stays within about 2 counts)."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    return max(0.01, 3.0 / n)
