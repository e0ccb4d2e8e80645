"""Scrambled Sobol points in the unit cube ``[0, 1)^P``, seeded (same seed, same points, any process)."""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.stats import qmc

from ..seeding import numpy_generator

__all__ = ["sobol_points", "owen_scramble"]

log = logging.getLogger(__name__)


def _reverse_bits32(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint32)
    x = ((x >> 1) & 0x55555555) | ((x & 0x55555555) << 1)
    x = ((x >> 2) & 0x33333333) | ((x & 0x33333333) << 2)
    x = ((x >> 4) & 0x0F0F0F0F) | ((x & 0x0F0F0F0F) << 4)
    x = ((x >> 8) & 0x00FF00FF) | ((x & 0x00FF00FF) << 8)
    return ((x >> 16) | (x << 16)).astype(np.uint32)


def owen_scramble(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Nested-uniform (hash-based Owen) scrambling of ``points [N, P]`` in ``[0, 1)``.

    Burley (2020), "Practical hash-based Owen scrambling": bit-reverse, Laine-Karras
    permutation keyed by a per-dimension seed drawn from ``rng``, bit-reverse back. Applied on 32-bit
    fixed point, so it preserves the (t, m, s)-net structure of the input.
    """
    if points.ndim != 2:
        raise ValueError(f"points must be [N, P], got shape {points.shape}")
    seeds = rng.integers(0, 2**32, size=points.shape[1], dtype=np.uint64).astype(np.uint32)
    x = np.floor(points * 2.0**32).clip(0, 2**32 - 1).astype(np.uint32)
    with np.errstate(over="ignore"):
        x = _reverse_bits32(x)
        x = x + seeds[None, :]
        x ^= x * np.uint32(0x6C50B47C)
        x ^= x * np.uint32(0xB82F1E52)
        x ^= x * np.uint32(0xC7AFE638)
        x ^= x * np.uint32(0x8D22F6E6)
        x = _reverse_bits32(x)
    # centre of the 2^-32 cell keeps points strictly inside [0, 1)
    return (x.astype(np.float64) + 0.5) / 2.0**32


def sobol_points(
    n: int, dim: int, *, seed: int, scramble: bool = True, scramble_method: str = "lms"
) -> np.ndarray:
    """The first ``n`` points of a (scrambled) Sobol sequence in ``dim`` dimensions.

    Draws the next power of two with ``random_base2`` and keeps the first ``n`` (the balance
    properties of a Sobol net hold exactly for powers of two; a note is logged otherwise).

    Args:
        n: number of points (> 0).
        dim: dimensions P (1..21201).
        seed: root seed; the engine's generator is derived from ``(seed, "sobol")``.
        scramble: scipy's LMS + digital-shift scrambling.
        scramble_method: ``"lms"`` (scipy's) or ``"owen"`` (adds nested-uniform scrambling; needs
            ``scramble``).

    Returns:
        ``[n, dim]`` float64 in ``[0, 1)``.

    Raises:
        ValueError: ``n <= 0``, ``dim`` out of range, unknown ``scramble_method``, or ``"owen"``
            with ``scramble=False``.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 1 <= dim <= 21201:
        raise ValueError(f"dim must be in [1, 21201], got {dim}")
    if scramble_method not in ("lms", "owen"):
        raise ValueError(f"scramble_method must be 'lms' or 'owen', got {scramble_method!r}")
    if scramble_method == "owen" and not scramble:
        # scramble=False asks for the deterministic sequence; Owen scrambling would randomise it anyway
        raise ValueError("scramble_method='owen' needs scramble=True (scramble=False asks for the unscrambled sequence)")
    rng = numpy_generator(seed, "sobol")
    engine = qmc.Sobol(d=dim, scramble=scramble, rng=rng)
    m = max(0, math.ceil(math.log2(n)))
    if 2**m != n:
        log.info("Sobol: drawing 2^%d = %d points and keeping the first %d (not a power of two)", m, 2**m, n)
    pts = engine.random_base2(m)[:n]
    if scramble_method == "owen":
        pts = owen_scramble(pts, rng)
    return pts
