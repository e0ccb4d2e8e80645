"""SUMMARY spatial block (columns 0-11): how the spatial statistics of a trajectory end up and
drift.

``*_final`` is the TEMPORAL feature at the last state, ``*_mean`` its time mean over all ``T``
states, ``*_ratio`` ``log((final + eps) / (initial + eps))``, ``*_slope`` the least-squares slope
against ``t / (T - 1)``. ``intermittency`` is the time mean of the excess kurtosis of ``|grad u|``
(per channel, then the channel mean).

With ``T = 1`` the ratios and the slope (columns 8-10) are NaN; all other columns are defined.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import SummaryInputs
from ._series import log_ratio, nan_full, slope

__all__ = ["NAMES", "features"]

NAMES = (
    "std_final",
    "grad_energy_final",
    "corr_length_final",
    "skewness_final",
    "kurtosis_final",
    "std_mean",
    "grad_energy_mean",
    "corr_length_mean",
    "std_ratio",
    "grad_energy_ratio",
    "corr_length_slope",
    "intermittency",
)


def features(inp: SummaryInputs) -> Tensor:
    """``[N, M, 12]`` float64 in ``NAMES`` order."""
    std = inp.temporal("std")
    grad = inp.temporal("grad_energy")
    corr = inp.temporal("corr_length")
    T = inp.T

    def ratio(x: Tensor) -> Tensor:
        return log_ratio(x[..., 0], x[..., -1]) if T > 1 else nan_full(x.shape[:-1], x)

    cols = [
        std[..., -1],
        grad[..., -1],
        corr[..., -1],
        inp.temporal("skewness")[..., -1],
        inp.temporal("kurtosis")[..., -1],
        std.mean(-1),
        grad.mean(-1),
        corr.mean(-1),
        ratio(std),
        ratio(grad),
        slope(corr, T),
        inp.grad_kurtosis.mean(-1).mean(-1),
    ]
    return torch.stack(cols, dim=-1)
