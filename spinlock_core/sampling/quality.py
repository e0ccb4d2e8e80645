"""Quality metrics of a unit-cube sample: discrepancy, pairwise correlation, stratum coverage.

Discrepancy is measured where the low-discrepancy structure lives. A Sobol sequence is balanced
in its prefixes and in its aligned blocks (the points ``[j 2^m, (j + 1) 2^m)`` form a net), not in
a random subsample: a random subset of a Sobol set is as irregular as i.i.d. points, so a
subsampled discrepancy cannot tell Sobol from i.i.d. Above ``max_points`` the metric therefore
uses the first ``2^k <= max_points`` points, and every shard's contiguous block is measured on
its own.

The figure of merit is the ratio of the squared centred L2 discrepancy (scipy's ``method="CD"``)
to its expectation for ``n`` i.i.d. uniform points in ``P`` dimensions,
``E[CD^2] = ((5/4)^P - (13/12)^P) / n`` (Hickernell 1998): i.i.d. points give about 1, a scrambled
Sobol prefix of 16,384 points in 12-D about 0.07.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import qmc

__all__ = [
    "SamplingQuality",
    "BlockDiscrepancy",
    "sampling_quality",
    "iid_discrepancy",
    "discrepancy_prefix_length",
    "sample_quality_for",
    "quality_verdicts",
]


def iid_discrepancy(n: int, dim: int) -> float:
    """Expected squared centred L2 discrepancy of ``n`` i.i.d. uniform points in ``dim``-D."""
    if n < 1 or dim < 1:
        raise ValueError(f"n and dim must be >= 1, got n={n}, dim={dim}")
    return ((5 / 4) ** dim - (13 / 12) ** dim) / n


def discrepancy_prefix_length(n: int, max_points: int) -> int:
    """Points the discrepancy is computed on: all ``n`` when ``n <= max_points``, else the
    largest power of two ``<= max_points`` (a Sobol prefix of that length is a net)."""
    if n < 1 or max_points < 1:
        raise ValueError(f"n and max_points must be >= 1, got n={n}, max_points={max_points}")
    if n <= max_points:
        return n
    return 1 << (int(max_points).bit_length() - 1)


@dataclass(frozen=True)
class BlockDiscrepancy:
    """CD^2 of one contiguous block ``[start, start + n)`` (a shard) and its ratio to i.i.d."""

    start: int
    n: int
    discrepancy: float
    ratio: float


@dataclass(frozen=True)
class SamplingQuality:
    n: int
    dim: int
    #: squared centred L2 discrepancy of the first ``discrepancy_n`` points
    discrepancy: float
    discrepancy_n: int
    #: expected CD^2 of ``discrepancy_n`` i.i.d. points, and ``discrepancy / discrepancy_iid``
    discrepancy_iid: float
    discrepancy_ratio: float
    max_abs_correlation: float
    mean_abs_correlation: float
    num_strata: int
    #: minimum count over all strata of all dimensions
    min_stratum_count: int
    #: per dimension, the minimum stratum count ``[P]``
    min_stratum_count_per_dim: list[int]
    #: contiguous blocks (shards) measured on their own; empty when no block size was given
    block_size: int = 0
    blocks: list[BlockDiscrepancy] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _cd2(x: np.ndarray, workers: int) -> float:
    return float(qmc.discrepancy(x, method="CD", workers=workers)) if len(x) > 1 else 0.0


def sampling_quality(
    unit: np.ndarray,
    *,
    num_strata: int = 5,
    max_points: int = 16_384,
    block_size: int = 0,
    workers: int = 1,
) -> SamplingQuality:
    """Metrics of ``unit [N, P]`` (SPEC section 2).

    Args:
        max_points: cap on the points of the discrepancy (O(N^2 P)): above it, the first
            ``2^k <= max_points`` points (see :func:`discrepancy_prefix_length`).
        block_size: when > 0, also the discrepancy of every contiguous block of this many points
            (the last block may be shorter); blocks longer than ``max_points`` use their prefix.
        workers: scipy's ``workers`` for the discrepancy (-1 = all cores).

    Correlation is Pearson over all points; with one point or a constant column it is 0.

    Raises:
        ValueError: ``unit`` not ``[N, P]`` with ``N >= 1``, ``num_strata < 1`` or
            ``max_points < 2``.
    """
    unit = np.asarray(unit, dtype=np.float64)
    if unit.ndim != 2 or unit.shape[0] < 1:
        raise ValueError(f"unit sample must be [N, P] with N >= 1, got shape {unit.shape}")
    if num_strata < 1:
        raise ValueError(f"num_strata must be >= 1, got {num_strata}")
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    if block_size < 0:
        raise ValueError(f"block_size must be >= 0, got {block_size}")
    n, p = unit.shape
    m = discrepancy_prefix_length(n, max_points)
    disc = _cd2(unit[:m], workers)
    iid = iid_discrepancy(m, p)
    blocks = []
    if block_size > 0:
        for start in range(0, n, block_size):
            b = unit[start : start + block_size]
            bm = discrepancy_prefix_length(len(b), max_points)
            d = _cd2(b[:bm], workers)
            blocks.append(BlockDiscrepancy(start, len(b), d, d / iid_discrepancy(bm, p)))
    if p > 1 and n > 2:
        std = unit.std(axis=0)
        ok = std > 0
        c = np.zeros((p, p))
        if ok.sum() > 1:
            c[np.ix_(ok, ok)] = np.corrcoef(unit[:, ok], rowvar=False)
        off = np.abs(c[~np.eye(p, dtype=bool)])
        max_c, mean_c = float(off.max()), float(off.mean())
    else:
        max_c = mean_c = 0.0
    strata = np.minimum((unit * num_strata).astype(np.int64), num_strata - 1)
    counts = np.stack([np.bincount(strata[:, j], minlength=num_strata) for j in range(p)])
    per_dim = counts.min(axis=1)
    return SamplingQuality(
        n=n,
        dim=p,
        discrepancy=disc,
        discrepancy_n=m,
        discrepancy_iid=iid,
        discrepancy_ratio=disc / iid,
        max_abs_correlation=max_c,
        mean_abs_correlation=mean_c,
        num_strata=num_strata,
        min_stratum_count=int(per_dim.min()),
        min_stratum_count_per_dim=[int(x) for x in per_dim],
        block_size=int(block_size),
        blocks=blocks,
    )


def sample_quality_for(unit: np.ndarray, cfg) -> SamplingQuality:
    """:func:`sampling_quality` with the experiment's strata, discrepancy cap and shard size."""
    v, st = cfg.sampling.validation, cfg.sampling.stratification
    return sampling_quality(
        unit,
        num_strata=st.num_strata_per_dim,
        max_points=v.discrepancy_points,
        block_size=cfg.dataset.storage.shard_size if cfg.num_shards > 1 else 0,
        workers=-1,
    )


def quality_verdicts(q: SamplingQuality, cfg) -> dict[str, tuple[bool, str]]:
    """``{check: (passed, reason)}`` against ``sampling.validation`` and ``sampling.stratification``.

    ``discrepancy`` passes when the prefix's CD^2 is below ``max_discrepancy`` and, for every
    point set of at least ``discrepancy_min_points`` points (the prefix and each shard block),
    CD^2 / E_iid[CD^2] is at most ``max_discrepancy_ratio``. Smaller sets are reported, not
    judged: a Sobol net of a few dozen points in 10+ dimensions is not reliably better than
    i.i.d. points (ratio 0.4-0.7 at 32 points).
    """
    v, st = cfg.sampling.validation, cfg.sampling.stratification
    out = {}
    if v.check_discrepancy:
        problems = []
        if not q.discrepancy < v.max_discrepancy:
            problems.append(f"CD^2 {q.discrepancy:.3g} >= max_discrepancy {v.max_discrepancy:.3g}")
        judged = q.discrepancy_n >= v.discrepancy_min_points
        if judged and q.discrepancy_ratio > v.max_discrepancy_ratio:
            problems.append(
                f"first {q.discrepancy_n} points: CD^2 is {q.discrepancy_ratio:.3f} x the i.i.d. expectation "
                f"(max_discrepancy_ratio {v.max_discrepancy_ratio:.3g}): not a low-discrepancy sample"
            )
        bad = [b for b in q.blocks if b.n >= v.discrepancy_min_points and b.ratio > v.max_discrepancy_ratio]
        if bad:
            listed = ", ".join(f"[{b.start}, {b.start + b.n}) ratio {b.ratio:.3f}" for b in bad[:10])
            problems.append(f"{len(bad)} shard block(s) above max_discrepancy_ratio {v.max_discrepancy_ratio:.3g}: {listed}")
        worst = max((b.ratio for b in q.blocks if b.n >= v.discrepancy_min_points), default=None)
        summary = (
            f"CD^2 {q.discrepancy:.3g} on the first {q.discrepancy_n} points = {q.discrepancy_ratio:.3f} x i.i.d. "
            f"({q.discrepancy_iid:.3g})" + ("" if judged else f" (fewer than {v.discrepancy_min_points} points: ratio not judged)")
            + (f"; worst shard block ratio {worst:.3f}" if worst is not None else "")
        )
        out["discrepancy"] = (not problems, "; ".join(problems) or summary)
    if v.check_correlation:
        out["correlation"] = (
            q.max_abs_correlation < v.max_correlation,
            f"max |corr| {q.max_abs_correlation:.3g} vs threshold {v.max_correlation:.3g}",
        )
    if v.check_stratification:
        out["stratification"] = (
            q.min_stratum_count >= st.min_samples_per_stratum,
            f"min stratum count {q.min_stratum_count} vs required {st.min_samples_per_stratum} "
            f"({st.num_strata_per_dim} strata per dimension)",
        )
    return out
