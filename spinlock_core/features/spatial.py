"""Spatial statistics of one field: TEMPORAL columns 0-18 (FEATURES.md, "Spatial")."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import EPS, Prepared, correlation_length, prepare, quantiles_sorted, sort_last
from ._common import standardized_moments, validate_fields

__all__ = ["NAMES", "spatial_features"]

NAMES: tuple[str, ...] = (
    "mean",
    "std",
    "skewness",
    "kurtosis",
    "min",
    "max",
    "p05",
    "p25",
    "median",
    "p75",
    "p95",
    "mad",
    "grad_energy",
    "grad_mean",
    "grad_max",
    "grad_anisotropy",
    "laplacian_energy",
    "laplacian_kurtosis",
    "corr_length",
)

_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def spatial_features(u: Tensor) -> Tensor:
    """The 19 spatial columns of each field ``u [B, H, W]`` (square, even H >= 8): ``[B, 19]``.

    std is the population std (ddof 0); quantiles interpolate linearly (numpy's default);
    kurtoses are excess kurtoses, 0 with skewness where the std is below 1e-6.
    corr_length is 0.5 for a field without power (a constant field never decorrelates).
    Computed in float64 for float64 input, float32 otherwise; returned in that dtype.
    Raises ``ValueError`` for a malformed ``u``.
    """
    return spatial_from(prepare(validate_fields(u)))


def spatial_from(p: Prepared) -> Tensor:
    """Spatial columns from shared intermediates (see ``_common.prepare``): ``[B, 19]``."""
    b = p.u.shape[0]
    flat_v = p.v.reshape(b, -1)
    _, std, skew, kurt = standardized_moments(flat_v)

    s = sort_last(p.u.reshape(b, -1))
    q = quantiles_sorted(s, _QUANTILES)
    median = q[:, 2]
    mad = quantiles_sorted(sort_last((p.u.reshape(b, -1) - median[:, None]).abs()), (0.5,))[:, 0]

    gx, gy = p.gx.reshape(b, -1), p.gy.reshape(b, -1)
    g2 = gx.square() + gy.square()
    gmag = g2.sqrt()
    ax, ay = gx.abs().mean(-1), gy.abs().mean(-1)

    lap = p.lap.reshape(b, -1)
    _, _, _, lap_kurt = standardized_moments(lap)

    cols = [
        p.mean,
        std,
        skew,
        kurt,
        s[:, 0],
        s[:, -1],
        q[:, 0],
        q[:, 1],
        median,
        q[:, 3],
        q[:, 4],
        mad,
        g2.mean(-1),
        gmag.mean(-1),
        gmag.amax(-1),
        (ax - ay) / (ax + ay + EPS),
        lap.square().mean(-1),
        lap_kurt,
        correlation_length(p.acf, p.grid.n),
    ]
    return torch.stack(cols, dim=1)
