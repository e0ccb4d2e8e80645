"""Time-series helpers shared by the SUMMARY blocks.

Every function takes float64 series with time on the last axis (``[..., L]``) and works on any
device. "Slope" is always the least-squares slope against ``t / (T - 1)`` where ``T`` is the number
of stored states (a series of increments has ``L = T - 1`` samples on the same axis).

Flat series: a series whose (population) std is at most ``FLAT_REL`` times a reference magnitude
(its own mean absolute value unless a reference is passed) counts as flat; correlation-, phase- and
moment-type statistics of a flat series are 0. The comparison is ``<=`` so an exactly constant
series (std 0) is always flat.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "EPS",
    "FLAT_REL",
    "time_axis",
    "nan_full",
    "slope",
    "quadratic_coefficient",
    "detrend",
    "is_flat",
    "pearson",
    "skewness",
    "log_ratio",
    "hann",
    "analytic_signal",
]

#: Additive guard of the catalogue.
EPS = 1e-8
#: Relative threshold below which a fluctuation counts as none.
FLAT_REL = 1e-6


def time_axis(T: int, length: int, like: Tensor) -> Tensor:
    """``t / (T - 1)`` for ``t = 0 .. length - 1`` (float64, on ``like``'s device)."""
    t = torch.arange(length, dtype=torch.float64, device=like.device)
    return t / max(T - 1, 1)


def nan_full(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """A NaN tensor of ``shape`` with ``like``'s dtype and device."""
    return torch.full(shape, math.nan, dtype=like.dtype, device=like.device)


def slope(y: Tensor, T: int) -> Tensor:
    """Least-squares slope of ``y [..., L]`` against ``t / (T - 1)``; NaN when ``L < 2``."""
    L = y.shape[-1]
    if L < 2:
        return nan_full(y.shape[:-1], y)
    x = time_axis(T, L, y)
    xc = x - x.mean()
    yc = y - y.mean(-1, keepdim=True)
    return (yc * xc).sum(-1) / (xc * xc).sum()


def quadratic_coefficient(y: Tensor, T: int) -> Tensor:
    """Coefficient of ``tau^2`` in a least-squares quadratic fit of ``y [..., L]`` against
    ``tau = t / (T - 1)``; NaN when ``L < 3``."""
    L = y.shape[-1]
    if L < 3:
        return nan_full(y.shape[:-1], y)
    x = time_axis(T, L, y)
    design = torch.stack([torch.ones_like(x), x, x * x], dim=-1)  # [L, 3]
    row = torch.linalg.pinv(design)[2]  # [L]
    return ((y - y.mean(-1, keepdim=True)) * row).sum(-1)


def detrend(y: Tensor, T: int) -> Tensor:
    """``y [..., L]`` minus its least-squares line (zeros when ``L < 2``)."""
    L = y.shape[-1]
    mean = y.mean(-1, keepdim=True)
    if L < 2:
        return y - mean
    x = time_axis(T, L, y)
    xc = x - x.mean()
    b = ((y - mean) * xc).sum(-1, keepdim=True) / (xc * xc).sum()
    return y - mean - b * xc


def is_flat(y: Tensor, reference: Tensor | None = None) -> Tensor:
    """``[..., L] -> [...]``: True where ``std(y) <= FLAT_REL * reference`` (default ``mean |y|``)."""
    if reference is None:
        reference = y.abs().mean(-1)
    std = y.std(-1, correction=0) if y.shape[-1] > 1 else torch.zeros_like(y[..., 0])
    return std <= FLAT_REL * reference


def pearson(
    a: Tensor,
    b: Tensor,
    ref_a: Tensor | None = None,
    ref_b: Tensor | None = None,
) -> Tensor:
    """Pearson correlation over the last axis, 0 where either series is flat (see module doc).

    ``ref_a``/``ref_b`` are the magnitudes the std is compared with (default: the series' own mean
    absolute value); use them for detrended series, whose own mean is ~0.
    """
    flat = is_flat(a, ref_a) | is_flat(b, ref_b)
    ac = a - a.mean(-1, keepdim=True)
    bc = b - b.mean(-1, keepdim=True)
    den = torch.sqrt((ac * ac).mean(-1) * (bc * bc).mean(-1))
    r = (ac * bc).mean(-1) / torch.where(den > 0, den, torch.ones_like(den))
    r = r.clamp(-1.0, 1.0)
    return torch.where(flat | (den <= 0), torch.zeros_like(r), r)


def skewness(y: Tensor, reference: Tensor | None = None) -> Tensor:
    """Skewness over the last axis, 0 where the series is flat."""
    flat = is_flat(y, reference)
    d = y - y.mean(-1, keepdim=True)
    m2 = (d * d).mean(-1)
    m3 = (d * d * d).mean(-1)
    safe = torch.where(m2 > 0, m2, torch.ones_like(m2))
    s = m3 / safe.pow(1.5)
    return torch.where(flat | (m2 <= 0), torch.zeros_like(s), s)


def log_ratio(first: Tensor, last: Tensor) -> Tensor:
    """The catalogue's "ratio": ``log((last + eps) / (first + eps))``."""
    return torch.log((last + EPS) / (first + EPS))


def hann(L: int, like: Tensor) -> Tensor:
    """Periodic Hann taper of length ``L`` (the spectral-analysis convention of
    ``scipy.signal.get_window("hann", L)``), float64."""
    return torch.hann_window(L, periodic=True, dtype=torch.float64, device=like.device)


def analytic_signal(x: Tensor) -> Tensor:
    """Analytic signal of real ``x [..., L]`` (as ``scipy.signal.hilbert``), complex128."""
    L = x.shape[-1]
    h = torch.zeros(L, dtype=torch.float64, device=x.device)
    h[0] = 1.0
    if L % 2 == 0:
        h[L // 2] = 1.0
        h[1 : L // 2] = 2.0
    else:
        h[1 : (L + 1) // 2] = 2.0
    return torch.fft.ifft(torch.fft.fft(x, dim=-1) * h, dim=-1)
