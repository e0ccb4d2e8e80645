"""SUMMARY spectral block (columns 12-23): the power spectrum at the end, on average and its
drift.

``*_final`` / ``*_mean`` / ``*_slope`` as in the spatial block, from the TEMPORAL features
``centroid``, ``slope`` (the log-log fit over the rings with ``S >= 1e-6 max S``, 0 when fewer
than two: ``spectral.spectral_features``) and ``entropy``; ``low_frac_final`` (``0 < |k| <=
max(1, kN / 8)``) and ``high_frac_final`` (``|k| >= kN / 2``) are the TEMPORAL band fractions at
the last state. ``spectral_change``: per channel, the time mean of the
total-variation distance ``0.5 sum_k |p_t(k) - p_{t+1}(k)|`` between the normalised radial spectra
``p_t = S_t / sum_k S_t`` of consecutive states (a spectrum with total non-DC power below eps is
all zeros), then the channel mean.

With ``T = 1`` the slopes and ``spectral_change`` (columns 18-20, 23) are NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import SummaryInputs
from ._series import nan_full, slope

__all__ = ["NAMES", "features"]

NAMES = (
    "centroid_final",
    "slope_final",
    "entropy_final",
    "centroid_mean",
    "slope_mean",
    "entropy_mean",
    "centroid_slope",
    "slope_slope",
    "entropy_slope",
    "low_frac_final",
    "high_frac_final",
    "spectral_change",
)


def _spectral_change(radial: Tensor) -> Tensor:
    """``radial [N, M, C, T, K]`` -> ``[N, M]``."""
    if radial.shape[-2] < 2:
        return nan_full(radial.shape[:2], radial)
    tv = 0.5 * (radial[..., 1:, :] - radial[..., :-1, :]).abs().sum(-1)  # [N, M, C, T-1]
    return tv.mean(-1).mean(-1)


def features(inp: SummaryInputs) -> Tensor:
    """``[N, M, 12]`` float64 in ``NAMES`` order."""
    T = inp.T
    series = [inp.temporal(name) for name in ("centroid", "slope", "entropy")]
    cols = (
        [s[..., -1] for s in series]
        + [s.mean(-1) for s in series]
        + [slope(s, T) for s in series]
        + [
            inp.temporal("low_frac")[..., -1],
            inp.temporal("high_frac")[..., -1],
            _spectral_change(inp.radial),
        ]
    )
    return torch.stack(cols, dim=-1)
