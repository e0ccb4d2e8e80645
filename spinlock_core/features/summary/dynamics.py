"""SUMMARY temporal-dynamics block (columns 36-47): growth, memory, oscillation and regularity of
the energy series.

Series (float64): ``e(t)`` = spatial mean of ``u^2`` averaged over channels, ``v(t)`` = spatial
variance averaged over channels, ``de`` = first difference of ``e`` (``T - 1`` samples). Slopes and
the quadratic coefficient are least-squares fits against ``t / (T - 1)``; standard deviations are
population (ddof 0) ones. Columns, as in FEATURES.md:

- ``autocorr_time``: first lag where the (biased, lag-0-normalised) autocorrelation of ``de``
  falls below 1/e, linearly interpolated between the bracketing lags, divided by ``T``; 1 if never.
- ``dominant_freq``: ``(j + d) / (T - 1)`` cycles per step for the largest ``j >= 1`` bin of the
  one-sided periodogram of ``de`` (mean removed, periodic Hann taper), ``d`` in [-1/2, 1/2] the
  quadratic interpolation of the peak from bins ``j - 1, j, j + 1`` (a deviation from FEATURES.md:
  the bare bin index was constant on real rollouts, whose relaxing energy peaks at bin 1); ``oscillation_strength``: the share of
  bins ``j - 1 .. j + 1`` in the total power of that periodogram (DC included, there is one).
- ``regime_switches``: sign changes between consecutive kept steps of ``de``, a step being dropped
  when ``|de| < 1e-3 std(de)``, divided by ``T - 2``.
- ``stationarity``: halves of ``de`` are its first and last ``floor((T - 1) / 2)`` samples (the
  middle one is dropped when ``T - 1`` is odd).
- ``divergence_rate``: slope of ``log(||u(t+1) - u(t)|| + eps)``, the Euclidean norm over the whole
  state, sampled at ``t = 0 .. T - 2``.
- ``dc_share_change``: ``sum_c s_c^2 / (C e)`` (0 where ``C e < eps``), final minus initial.

Flat ``e`` (``trend_r2``) or flat ``de`` (``autocorr_time``, ``dominant_freq``,
``oscillation_strength``, ``roughness``, ``regime_switches``, ``stationarity``) give 0.

NaN where the states do not suffice: every column when ``T = 1``; with ``T = 2`` also
``energy_curvature``, ``autocorr_time``, ``dominant_freq``, ``oscillation_strength``,
``roughness``, ``regime_switches``, ``stationarity`` and ``divergence_rate`` (each needs
``T >= 3``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._inputs import SummaryInputs
from ._series import EPS, hann, is_flat, nan_full, pearson, quadratic_coefficient, slope, time_axis

__all__ = ["NAMES", "features"]

NAMES = (
    "energy_growth",
    "energy_curvature",
    "variance_growth",
    "autocorr_time",
    "dominant_freq",
    "oscillation_strength",
    "trend_r2",
    "roughness",
    "regime_switches",
    "stationarity",
    "divergence_rate",
    "dc_share_change",
)

_INV_E = math.exp(-1.0)


def _zero_where(flat: Tensor, x: Tensor) -> Tensor:
    return torch.where(flat, torch.zeros_like(x), x)


def _autocorr_time(de: Tensor, T: int, flat: Tensor) -> Tensor:
    L = de.shape[-1]
    d = de - de.mean(-1, keepdim=True)
    spec = torch.fft.rfft(d, n=2 * L, dim=-1)
    acov = torch.fft.irfft(spec.real**2 + spec.imag**2, n=2 * L, dim=-1)[..., :L]
    c0 = acov[..., :1]
    r = acov / torch.where(c0 > 0, c0, torch.ones_like(c0))
    below = r < _INV_E
    found = below.any(-1)
    k = below.int().argmax(-1).clamp_min(1)  # r(0) = 1, so the first crossing is at k >= 1
    r_prev = r.gather(-1, (k - 1)[..., None])[..., 0]
    r_k = r.gather(-1, k[..., None])[..., 0]
    gap = r_prev - r_k
    lag = (k - 1).double() + (r_prev - _INV_E) / torch.where(gap > 0, gap, torch.ones_like(gap))
    out = torch.where(found, lag / T, torch.ones_like(lag))
    return _zero_where(flat, out)


def _periodogram_peak(de: Tensor, flat: Tensor) -> tuple[Tensor, Tensor]:
    L = de.shape[-1]
    y = (de - de.mean(-1, keepdim=True)) * hann(L, de)
    X = torch.fft.rfft(y, dim=-1)
    power = X.real**2 + X.imag**2
    nb = power.shape[-1]
    weight = torch.full((nb,), 2.0, dtype=power.dtype, device=power.device)
    weight[0] = 1.0
    if L % 2 == 0:
        weight[-1] = 1.0
    power = power * weight
    j = power[..., 1:].argmax(-1) + 1
    idx = torch.stack([j - 1, j, (j + 1).clamp_max(nb - 1)], dim=-1)
    near = power.gather(-1, idx)
    near[..., 2] = torch.where(j + 1 < nb, near[..., 2], torch.zeros_like(near[..., 2]))
    # quadratic interpolation of the peak between its neighbours (sub-bin frequency): without it a
    # smooth relaxing energy puts the peak on bin 1 for every operator and the column is constant
    a, b, c = near.unbind(-1)
    den = a - 2 * b + c
    delta = torch.where((den < 0) & (j + 1 < nb), 0.5 * (a - c) / torch.where(den < 0, den, -torch.ones_like(den)), torch.zeros_like(den))
    freq = (j.double() + delta.clamp(-0.5, 0.5)) / L
    total = power.sum(-1)
    share = near.sum(-1) / torch.where(total > 0, total, torch.ones_like(total))
    return _zero_where(flat, freq), _zero_where(flat, share)


def _regime_switches(de: Tensor, T: int, flat: Tensor) -> Tensor:
    L = de.shape[-1]
    std = de.std(-1, correction=0, keepdim=True)
    sign = torch.sign(de) * (de.abs() >= 1e-3 * std)
    pos = torch.arange(L, device=de.device).expand_as(sign)
    last = torch.where(sign != 0, pos, torch.full_like(pos, -1)).cummax(-1).values
    prev = torch.cat([torch.full_like(last[..., :1], -1), last[..., :-1]], dim=-1)
    prev_sign = sign.gather(-1, prev.clamp_min(0)) * (prev >= 0)
    changes = ((sign != 0) & (prev_sign != 0) & (sign != prev_sign)).sum(-1)
    return _zero_where(flat, changes.double() / (T - 2))


def _stationarity(de: Tensor, flat: Tensor) -> Tensor:
    L = de.shape[-1]
    h = L // 2
    v1 = de[..., :h].var(-1, correction=0)
    v2 = de[..., L - h :].var(-1, correction=0)
    return _zero_where(flat, torch.log((v2 + EPS) / (v1 + EPS)).abs())


def features(inp: SummaryInputs) -> Tensor:
    """``[N, M, 12]`` float64 in ``NAMES`` order."""
    T = inp.T
    e = inp.energy.mean(-2)  # [N, M, T]
    if T < 2:
        return nan_full((*e.shape[:-1], len(NAMES)), e)
    v = inp.variance.mean(-2)
    log_e = torch.log(e + EPS)
    de = e[..., 1:] - e[..., :-1]
    flat_de = is_flat(de)
    nan = nan_full(e.shape[:-1], e)
    if T >= 3:
        autocorr = _autocorr_time(de, T, flat_de)
        freq, strength = _periodogram_peak(de, flat_de)
        d2 = de[..., 1:] - de[..., :-1]
        rough = _zero_where(flat_de, d2.abs().mean(-1) / (de.std(-1, correction=0) + EPS))
        switches = _regime_switches(de, T, flat_de)
        station = _stationarity(de, flat_de)
    else:
        autocorr = freq = strength = rough = switches = station = nan
    trend = pearson(e, time_axis(T, T, e).expand_as(e)) ** 2
    power = inp.energy.sum(-2)  # C e
    dc = (inp.mean**2).sum(-2) / torch.where(power >= EPS, power, torch.ones_like(power))
    dc = _zero_where(power < EPS, dc)
    cols = [
        slope(log_e, T),
        quadratic_coefficient(log_e, T),
        slope(torch.log(v + EPS), T),
        autocorr,
        freq,
        strength,
        trend,
        rough,
        switches,
        station,
        slope(torch.log(inp.step_norm + EPS), T),
        dc[..., -1] - dc[..., 0],
    ]
    return torch.stack(cols, dim=-1)
