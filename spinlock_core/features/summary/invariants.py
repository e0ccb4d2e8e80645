"""SUMMARY invariant-drift block (columns 62-109): how norms, histogram entropy and total
variation of the fields drift, at three spatial scales.

Invariants ``I(t)`` per channel, then the channel mean: ``linf`` (max |u|), ``l2``
(sqrt(mean u^2)), ``entropy`` (of a 32-bin histogram of the min-max normalised field, nats; a field
whose range is at most 1e-6 of the raw field's max |u| counts as constant, entropy 0), ``tv`` (mean
over both axes of the mean |forward difference|, periodic). Scales: ``raw``; ``low`` (periodic
Gaussian blur, sigma = H/32 pixels, in Fourier space); ``high`` (raw - low). Per-field code in
``_fields.field_invariants``.

Metrics of each series:

- ``half_time``: first ``t`` where ``|I(t) - I(0)|`` reaches half of ``|I(T-1) - I(0)|``, linearly
  interpolated, divided by ``T - 1``; 0 when ``|I(T-1) - I(0)|`` is at most 1e-6 of ``mean |I|``
  (the catalogue's "I(T-1) = I(0)" with the relative tolerance used everywhere) or the series is
  flat.
- ``drift_std``: population std of the increments / (``mean_t |I|`` + eps).
- ``ratio``: ``log((I(T-1) + eps) / (I(0) + eps))``.
- ``monotonicity``: mean sign of the increments, increments below 1e-3 of their std counting 0;
  0 for a flat series (std at most 1e-6 of its mean absolute value).

Column order: invariant, then scale, then metric, named ``{invariant}_{scale}_{metric}``. With
``T = 1`` all 48 columns are NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._fields import INVARIANTS, SCALES
from ._inputs import SummaryInputs
from ._series import EPS, FLAT_REL, is_flat, log_ratio, nan_full

__all__ = ["NAMES", "METRICS", "features"]

METRICS = ("half_time", "drift_std", "ratio", "monotonicity")
NAMES = tuple(f"{i}_{s}_{m}" for i in INVARIANTS for s in SCALES for m in METRICS)


def _half_time(I: Tensor, flat: Tensor) -> Tensor:
    T = I.shape[-1]
    d = (I - I[..., :1]).abs()
    total = d[..., -1]
    half = total / 2
    reached = d >= half[..., None]
    reached[..., 0] = False
    reached[..., -1] = True
    k = reached.int().argmax(-1).clamp_min(1)
    d_prev = d.gather(-1, (k - 1)[..., None])[..., 0]
    d_k = d.gather(-1, k[..., None])[..., 0]
    gap = d_k - d_prev
    t = (k - 1).double() + (half - d_prev) / torch.where(gap > 0, gap, torch.ones_like(gap))
    still = flat | (total <= FLAT_REL * I.abs().mean(-1))
    return torch.where(still, torch.zeros_like(t), t / (T - 1))


def _monotonicity(inc: Tensor, flat: Tensor) -> Tensor:
    std = inc.std(-1, correction=0, keepdim=True)
    sign = torch.sign(inc) * (inc.abs() >= 1e-3 * std)
    return torch.where(flat, torch.zeros_like(sign[..., 0]), sign.mean(-1))


def features(inp: SummaryInputs) -> Tensor:
    """``[N, M, 48]`` float64 in ``NAMES`` order."""
    I = inp.invariants  # [N, M, 4, 3, T]
    N, M, _, _, T = I.shape
    if T < 2:
        return nan_full((N, M, len(NAMES)), I)
    flat = is_flat(I)
    inc = I[..., 1:] - I[..., :-1]
    metrics = torch.stack(
        [
            _half_time(I, flat),
            inc.std(-1, correction=0) / (I.abs().mean(-1) + EPS),
            log_ratio(I[..., 0], I[..., -1]),
            _monotonicity(inc, flat),
        ],
        dim=-1,
    )  # [N, M, 4, 3, 4]
    return metrics.reshape(N, M, len(NAMES))
