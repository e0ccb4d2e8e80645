"""Quality metrics of a unit-cube sample: discrepancy, pairwise correlation, stratum coverage."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import qmc

from ..seeding import numpy_generator

__all__ = ["SamplingQuality", "sampling_quality"]


@dataclass(frozen=True)
class SamplingQuality:
    n: int
    dim: int
    #: squared centred L2 discrepancy (scipy's ``method="CD"``), on ``discrepancy_n`` points
    discrepancy: float
    discrepancy_n: int
    max_abs_correlation: float
    mean_abs_correlation: float
    num_strata: int
    #: minimum count over all strata of all dimensions
    min_stratum_count: int
    #: per dimension, the minimum stratum count ``[P]``
    min_stratum_count_per_dim: list[int]

    def as_dict(self) -> dict:
        return asdict(self)


def sampling_quality(
    unit: np.ndarray, *, num_strata: int = 5, max_points: int = 10_000, seed: int = 0, workers: int = 1
) -> SamplingQuality:
    """Metrics of ``unit [N, P]`` (SPEC section 2).

    The discrepancy is O(N^2); above ``max_points`` it is computed on a deterministic subsample
    drawn with ``(seed, "subsample")``. Correlation is Pearson over all points; with one point
    or a constant column it is reported as 0.
    """
    unit = np.asarray(unit, dtype=np.float64)
    if unit.ndim != 2 or unit.shape[0] < 1:
        raise ValueError(f"unit sample must be [N, P] with N >= 1, got shape {unit.shape}")
    if num_strata < 1:
        raise ValueError(f"num_strata must be >= 1, got {num_strata}")
    n, p = unit.shape
    sub = unit
    if n > max_points:
        idx = np.sort(numpy_generator(seed, "subsample").choice(n, size=max_points, replace=False))
        sub = unit[idx]
    disc = float(qmc.discrepancy(sub, method="CD", workers=workers)) if len(sub) > 1 else 0.0
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
        discrepancy_n=len(sub),
        max_abs_correlation=max_c,
        mean_abs_correlation=mean_c,
        num_strata=num_strata,
        min_stratum_count=int(per_dim.min()),
        min_stratum_count_per_dim=[int(x) for x in per_dim],
    )


def sample_quality_for(unit: np.ndarray, cfg) -> SamplingQuality:
    """:func:`sampling_quality` with the experiment's strata, subsample size and seed."""
    v, st = cfg.sampling.validation, cfg.sampling.stratification
    return sampling_quality(
        unit, num_strata=st.num_strata_per_dim, max_points=v.discrepancy_subsample, seed=cfg.root_seed, workers=-1
    )


def quality_verdicts(q: SamplingQuality, cfg) -> dict[str, tuple[bool, str]]:
    """``{check: (passed, reason)}`` against ``sampling.validation`` and ``sampling.stratification``."""
    v, st = cfg.sampling.validation, cfg.sampling.stratification
    iid = ((5 / 4) ** q.dim - (13 / 12) ** q.dim) / max(q.discrepancy_n, 1)
    out = {}
    if v.check_discrepancy:
        out["discrepancy"] = (
            q.discrepancy < v.max_discrepancy,
            f"CD^2 {q.discrepancy:.3g} vs threshold {v.max_discrepancy:.3g} (iid expectation {iid:.3g})",
        )
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
