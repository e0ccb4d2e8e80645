"""Spectral statistics of one field: TEMPORAL columns 19-45 (FEATURES.md, "Spectral")."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import LOG_FLOOR_REL, Prepared, log_spectrum, ls_slope, prepare, validate_fields

__all__ = ["NAMES", "spectral_features"]

NAMES: tuple[str, ...] = (
    *(f"band_frac_{i}" for i in range(8)),
    "dynamic_range",
    "centroid",
    "bandwidth",
    "entropy",
    "flatness",
    "rolloff_85",
    "slope",
    "peak_k",
    "peak_frac",
    "peak_kx",
    "peak_ky",
    "anisotropy",
    "orientation_coherence",
    "low_frac",
    "slope_high",
    "high_frac",
    "ring_peaks",
    "k_skewness",
    "k_kurtosis",
)


def spectral_features(u: Tensor) -> Tensor:
    """The 27 spectral columns of each field ``u [B, H, W]`` (square, even H >= 8): ``[B, 27]``.

    ``P = |fft2(u - mean)|^2`` over the full plane (computed from rfft2 with paired bins counted
    twice), DC excluded, wavenumbers in cycles per domain, ``kN = H / 2``. A field whose non-DC
    power sum is below 1e-8 (e.g. a constant field) gets 0 in every column. ``ring_peaks`` is a
    count (not normalised); a ring whose mean power share is below ``1e-10 / (H W - 1)`` never
    counts (guards against rounding noise when all power lies beyond ``kN``). A field whose
    power lies entirely beyond ``kN`` (corner modes only) has rings of pure rounding noise, so
    its log-S columns (dynamic_range, slope, slope_high) are arbitrary, though finite.
    ``orientation_coherence``: bins on the Nyquist row or column (``|kx|`` or ``|ky| = kN``) add
    no ``sin 2 theta``, since the sign of a Nyquist wavenumber is ambiguous.
    Computed in float64 for float64 input, float32 otherwise.
    Raises ``ValueError`` for a malformed ``u``.
    """
    return spectral_from(prepare(validate_fields(u)))


def spectral_from(p: Prepared) -> Tensor:
    """Spectral columns from shared intermediates (see ``_common.prepare``): ``[B, 27]``."""
    g = p.grid
    kn = float(g.kn)
    share = p.share  # full-plane shares, sums to 1 (or 0 without power)
    n_bins = g.n * g.n - 1
    S = p.radial

    logS = log_spectrum(S)
    floor = LOG_FLOOR_REL * S.sum(-1, keepdim=True)
    tiny = torch.finfo(S.dtype).tiny
    dyn = torch.log10((S.amax(-1) + floor[:, 0] + tiny) / (_median(S) + floor[:, 0] + tiny))

    kbar = p.moments[:, 0]
    d = g.kmag - kbar[:, None]
    d2 = d * d
    var = (share * d2).sum(-1)
    m3 = (share * d2 * d).sum(-1)
    m4 = (share * d2 * d2).sum(-1)
    std_k = var + 1.0 / 12.0

    # per-bin shares (unweighted): entropy and flatness are over the n^2 - 1 full-plane bins
    pb = share / g.weight.clamp_min(1.0)
    # p log p with 0 log 0 = 0 (plain log + mul: xlogy is several times slower on CPU)
    plogp = pb * torch.log(pb.clamp_min(torch.finfo(pb.dtype).tiny))
    entropy = -(g.weight * plogp).sum(-1) / math.log(n_bins)
    delta = LOG_FLOOR_REL / n_bins
    geo = torch.exp((g.weight * torch.log(pb + delta)).sum(-1) / n_bins)
    flatness = geo / (share.sum(-1) / n_bins + delta)

    cum = share.index_select(1, g.order).cumsum(-1)
    idx = (cum < 0.85 * share.sum(-1, keepdim=True)).sum(-1).clamp(max=cum.shape[1] - 1)
    rolloff = g.kmag_sorted[idx] / kn

    peak = p.power.argmax(-1)
    partner = g.partner[peak]
    peak_pow = p.power.gather(1, peak[:, None])[:, 0] + p.power.gather(1, partner[:, None])[:, 0]
    safe_total = torch.where(p.has_power, p.total, torch.ones_like(p.total))
    peak_frac = peak_pow * g.pair_factor[peak] / safe_total

    k2 = p.moments[:, 1]
    anis = p.moments[:, 2] / torch.where(k2 > 0, k2, torch.ones_like(k2))
    orient = torch.sqrt(p.moments[:, 3].square() + p.moments[:, 4].square())

    mid = S[:, 1:-1]
    # S holds power shares; rings below 1e-10 of a uniform bin's share are rounding noise (this
    # matters when all the power sits in the corners |k| > kN, outside every ring)
    thresh = (0.1 * S.amax(-1, keepdim=True)).clamp_min(LOG_FLOOR_REL / n_bins)
    ring_peaks = ((mid > S[:, :-2]) & (mid > S[:, 2:]) & (mid > thresh)).sum(-1).to(S.dtype)

    hk = slice(g.high_start - 1, None)  # k >= kN / 4 (a slice: a mask would sync a GPU)
    cols = [
        *p.bands.unbind(1),
        dyn,
        kbar / kn,
        var.clamp_min(0).sqrt() / kn,
        entropy,
        flatness,
        rolloff,
        ls_slope(logS, g.log_k),
        g.kmag[peak] / kn,
        peak_frac,
        g.kx_abs[peak] / kn,
        g.ky_abs[peak] / kn,
        anis,
        orient,
        share @ g.low,
        ls_slope(logS[:, hk], g.log_k[hk]),
        share @ g.high,
        ring_peaks,
        m3 / std_k.pow(1.5),
        m4 / std_k.square(),
    ]
    out = torch.stack(cols, dim=1)
    return torch.where(p.has_power[:, None], out, torch.zeros_like(out))


def _median(a: Tensor) -> Tensor:
    """Median over the last axis, the mean of the two middle values for an even count."""
    s = a.sort(dim=-1).values
    n = s.shape[-1]
    if n % 2:
        return s[..., n // 2]
    return 0.5 * (s[..., n // 2 - 1] + s[..., n // 2])
