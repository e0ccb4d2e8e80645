"""Reductions of raw fields used by the SUMMARY blocks, one state (or one pair of consecutive
states) at a time.

Every function maps fields ``[..., H, W]`` (periodic grid, ``H == W``) to statistics ``[...]`` or
``[..., k]`` with the leading axes untouched, so each field is reduced on its own (no statistic
depends on the rest of the batch). Conventions follow FEATURES.md: central differences with
wrap-around, ``dx`` along the last axis (columns), ``dy`` along rows; wavenumbers in cycles per
domain; ``eps = 1e-8``.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from ._series import EPS, FLAT_REL

__all__ = [
    "INVARIANTS",
    "SCALES",
    "HISTOGRAM_BINS",
    "central_gradients",
    "gradient_kurtosis",
    "radial_distribution",
    "flow_correlations",
    "field_invariants",
]

INVARIANTS = ("linf", "l2", "entropy", "tv")
SCALES = ("raw", "low", "high")
HISTOGRAM_BINS = 32
#: Moments of a field whose std is below this are 0 (FEATURES.md conventions).
_MOMENT_STD_MIN = 1e-6


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Sum over pixels of ``a * b``: ``[..., H, W] x2 -> [...]`` (one fused pass)."""
    return torch.einsum("...hw,...hw->...", a, b)


def _twice_central_difference(u: Tensor, dim: int) -> Tensor:
    """``u[j + 1] - u[j - 1]`` along ``dim`` with wrap-around, written in one pass: twice the
    catalogue's central difference (every consumer here is scale-free, so the factor 2 is never
    divided out)."""
    out = torch.empty_like(u)
    src, dst = u.movedim(dim, -1), out.movedim(dim, -1)  # views: writing dst fills out
    torch.sub(src[..., 2:], src[..., :-2], out=dst[..., 1:-1])
    torch.sub(src[..., 1:2], src[..., -1:], out=dst[..., :1])
    torch.sub(src[..., :1], src[..., -2:-1], out=dst[..., -1:])
    return out


def central_gradients(u: Tensor) -> tuple[Tensor, Tensor]:
    """``(2 dx u, 2 dy u)`` for fields ``[..., H, W]`` (periodic central differences; ``dx`` along
    the last axis)."""
    return _twice_central_difference(u, -1), _twice_central_difference(u, -2)


def gradient_kurtosis(gx: Tensor, gy: Tensor) -> Tensor:
    """Excess kurtosis of ``|grad u|`` over pixels from ``central_gradients``: ``[...]``; 0 when
    the std of ``|grad u|`` is below 1e-6."""
    n = gx.shape[-2] * gx.shape[-1]
    g = torch.hypot(gx, gy)  # 2 |grad u|
    d = g - g.mean((-2, -1), keepdim=True)
    d2 = d * d
    m2 = d2.mean((-2, -1))
    m4 = _dot(d2, d2) / n
    kurt = m4 / torch.where(m2 > 0, m2, torch.ones_like(m2)) ** 2 - 3.0
    # g is twice |grad u|, hence the threshold 2e-6 on its std
    return torch.where(m2.sqrt() < 2 * _MOMENT_STD_MIN, torch.zeros_like(kurt), kurt)


def _ring_weights_uncached(H: int, W: int, device: str) -> tuple[Tensor, Tensor]:
    """rfft2 bin weights: ``rings [H * (W//2 + 1), kN]`` (weight / ring size, so that ``P @ rings``
    is the ring average over the full plane) and ``total [H * (W//2 + 1)]`` (non-DC weights)."""
    ky = torch.fft.fftfreq(H, 1.0 / H, dtype=torch.float64)
    kx = torch.fft.rfftfreq(W, 1.0 / W, dtype=torch.float64)
    q = (ky[:, None] ** 2 + kx[None, :] ** 2).round().long()  # integer |k|^2
    # bins present once in the rfft half plane stand for two full-plane bins
    mult = torch.full((H, kx.numel()), 2.0, dtype=torch.float64)
    mult[:, 0] = 1.0
    if W % 2 == 0:
        mult[:, -1] = 1.0
    kN = H // 2
    # ring k holds k - 1/2 <= |k| < k + 1/2, i.e. k^2 - k + 1 <= q <= k^2 + k for integer q
    ring = torch.floor(torch.sqrt(q.double()) + 0.5).long()
    ks = torch.arange(1, kN + 1)
    member = (ring[..., None] == ks) & (q[..., None] > 0)  # [H, W', kN]
    weights = member.double() * mult[..., None]
    weights = weights / weights.sum((0, 1)).clamp_min(1.0)
    total = mult.clone()
    total[0, 0] = 0.0
    return (
        weights.reshape(-1, kN).to(device),
        total.reshape(-1).to(device),
    )


#: cached (functools.lru_cache(maxsize=16)): mutmut mutates only undecorated functions, so the body is
#: _ring_weights_uncached and the cache is applied here
_ring_weights = functools.lru_cache(maxsize=16)(_ring_weights_uncached)


def radial_distribution(u: Tensor) -> Tensor:
    """Normalised radial power spectrum ``S(k) / sum_k S(k)``, ``k = 1 .. H/2``:
    ``[..., H, W] -> [..., H/2]``; all zeros when the total non-DC power is below eps."""
    H, W = u.shape[-2:]
    rings, total_w = _ring_weights(H, W, str(u.device))
    X = torch.fft.rfft2(u - u.mean((-2, -1), keepdim=True))
    P = (X.real**2 + X.imag**2).flatten(-2)
    S = P @ rings.to(P.dtype)
    total = P @ total_w.to(P.dtype)
    norm = S.sum(-1, keepdim=True)
    p = S / torch.where(norm > 0, norm, torch.ones_like(norm))
    return torch.where((total < EPS)[..., None], torch.zeros_like(p), p)


def flow_correlations(gx: Tensor, gy: Tensor, du: Tensor) -> Tensor:
    """Pixel (Pearson) correlations of ``dx u`` and ``dy u`` (from ``central_gradients`` of
    ``u(t)``) with the increment ``du = u(t+1) - u(t)``: ``[..., H, W] x3 -> [..., 2]`` (x then y).

    A field whose std is at most 1e-6 of its mean absolute value counts as flat and gives 0. The
    test used is ``std <= 1e-6 |mean|``, which differs from that only when the std lies within a
    relative 1e-6 of the threshold (``|mean| <= mean|.| <= |mean| + std``) and needs no extra pass.
    Periodic central differences have zero mean, so only ``du`` is centred.
    """
    n = du.shape[-2] * du.shape[-1]
    mean_b = du.mean((-2, -1), keepdim=True)
    centred = du - mean_b
    std_b = torch.linalg.vector_norm(centred, dim=(-2, -1)) / math.sqrt(n)
    flat_b = std_b <= FLAT_REL * mean_b[..., 0, 0].abs()
    out = []
    for g in (gx, gy):
        mean_a = g.mean((-2, -1))
        rms_a = torch.linalg.vector_norm(g, dim=(-2, -1)) / math.sqrt(n)
        std_a = torch.sqrt((rms_a * rms_a - mean_a * mean_a).clamp_min(0.0))
        den = std_a * std_b
        r = (_dot(g, centred) / n) / torch.where(den > 0, den, torch.ones_like(den))
        dead = flat_b | (std_a <= FLAT_REL * mean_a.abs()) | (den <= 0)
        out.append(torch.where(dead, torch.zeros_like(r), r.clamp(-1.0, 1.0)))
    return torch.stack(out, dim=-1)


def _gaussian_transfer_uncached(H: int, W: int, device: str) -> Tensor:
    """rfft2 transfer function of a periodic Gaussian blur with sigma = H/32 pixels."""
    sigma = H / 32.0
    fy = torch.fft.fftfreq(H, dtype=torch.float64)  # cycles per pixel
    fx = torch.fft.rfftfreq(W, dtype=torch.float64)
    g = torch.exp(-2.0 * math.pi**2 * sigma**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    return g.to(device)


#: cached (functools.lru_cache(maxsize=16)): mutmut mutates only undecorated functions, so the body is
#: _gaussian_transfer_uncached and the cache is applied here
_gaussian_transfer = functools.lru_cache(maxsize=16)(_gaussian_transfer_uncached)


def _histogram_entropy(f: Tensor, lo: Tensor, hi: Tensor, reference: Tensor) -> Tensor:
    """Entropy (nats) of a 32-bin histogram of the min-max normalised field ``f [..., H, W]``
    (``lo``/``hi`` its min/max ``[...]``), float64 ``[...]``. ``f`` must be (about) zero-mean so
    that the affine map to bins keeps full precision. A field whose range is at most 1e-6 of
    ``reference`` (the raw field's max |u|) counts as constant: entropy 0 (its min-max
    normalisation would only amplify rounding noise)."""
    span = hi - lo
    const = span <= FLAT_REL * reference
    safe = torch.where(const, torch.ones_like(span), span)
    scale = torch.where(const, torch.zeros_like(span), HISTOGRAM_BINS / safe)
    # bins in [0, BINS]; only values at the maximum land on BINS and are merged into the last bin
    idx = torch.addcmul((-lo * scale)[..., None, None], f, scale[..., None, None]).long()
    idx.clamp_(0, HISTOGRAM_BINS)  # only non-finite fields leave [0, BINS]; they give NaN below
    rows = idx.reshape(-1, idx.shape[-2] * idx.shape[-1])
    counts = torch.zeros(rows.shape[0], HISTOGRAM_BINS + 1, dtype=f.dtype, device=f.device)
    counts.scatter_add_(1, rows, torch.ones((), dtype=f.dtype, device=f.device).expand(rows.shape))
    counts[:, HISTOGRAM_BINS - 1] += counts[:, HISTOGRAM_BINS]
    counts = counts[:, :HISTOGRAM_BINS]
    p = counts.double() / rows.shape[1]
    ent = -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(-1).reshape(f.shape[:-2])
    return torch.where(torch.isfinite(span), ent, torch.full_like(ent, math.nan))


def _total_variation(f: Tensor) -> Tensor:
    """Mean over both axes of the mean |forward difference| (periodic), ``[..., H, W] -> [...]``."""
    H, W = f.shape[-2:]
    l1 = torch.linalg.vector_norm
    along_x = l1(f[..., :, 1:] - f[..., :, :-1], ord=1, dim=(-2, -1)) + l1(
        f[..., :, 0] - f[..., :, -1], ord=1, dim=-1
    )
    along_y = l1(f[..., 1:, :] - f[..., :-1, :], ord=1, dim=(-2, -1)) + l1(
        f[..., 0, :] - f[..., -1, :], ord=1, dim=-1
    )
    return (along_x + along_y) / (2 * H * W)


def field_invariants(u: Tensor) -> Tensor:
    """Invariants of each field at three scales: ``[..., H, W] -> [..., 4, 3]`` (float64), rows
    ``INVARIANTS`` (linf, l2, entropy, tv), columns ``SCALES`` (raw; low = periodic Gaussian blur
    with sigma = H/32 pixels applied in Fourier space; high = raw - low).

    Everything is computed from zero-mean fields (the fluctuation ``u - mean``, its blur, and
    ``high``) plus the mean, which passes the blur unchanged: the histogram and total variation
    do not see a shift, and the norms add the mean back exactly. This keeps float32 precision for
    fields with a large offset.
    """
    H, W = u.shape[-2:]
    n = H * W
    g = _gaussian_transfer(H, W, str(u.device)).to(u.dtype)
    mean = u.mean((-2, -1), keepdim=True)
    centred = u - mean
    blur = torch.fft.irfft2(torch.fft.rfft2(centred) * g, s=(H, W))
    high = centred - blur
    m = mean[..., 0, 0]
    shifts = (m, m, torch.zeros_like(m))  # raw = centred + m, low = blur + m, high
    extremes = [torch.aminmax(f.flatten(-2), dim=-1) for f in (centred, blur, high)]
    reference = torch.maximum((extremes[0][0] + m).abs(), (extremes[0][1] + m).abs())
    per_scale = []
    for f, shift, (lo, hi) in zip((centred, blur, high), shifts, extremes):
        linf = torch.maximum((lo + shift).abs(), (hi + shift).abs())
        ms = torch.linalg.vector_norm(f, dim=(-2, -1)) ** 2 / n
        l2 = torch.sqrt(ms.double() + shift.double() ** 2)
        entropy = _histogram_entropy(f, lo, hi, reference)
        tv = _total_variation(f).double()
        per_scale.append(torch.stack([linf.double(), l2, entropy, tv], dim=-1))
    return torch.stack(per_scale, dim=-1)
