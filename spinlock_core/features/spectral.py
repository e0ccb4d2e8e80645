"""Spectral statistics of one field: TEMPORAL columns 19-45 (FEATURES.md, "Spectral")."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import LOG_FLOOR_REL, Prepared, prepare, validate_fields

__all__ = ["NAMES", "ENERGY_REL", "RING_NOISE_SHARE", "spectral_features", "masked_slope"]

#: a ring carries energy when S(k) >= ENERGY_REL * max_k S (dynamic_range, slope, slope_high)
ENERGY_REL = 1e-6
#: ... and its mean power share S(k) / sum P is at least this (float rounding leaves ~1e-17)
RING_NOISE_SHARE = 1e-12

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
    twice), DC excluded, wavenumbers in cycles per domain, ``kN = H / 2``, ``S(k)`` the ring mean
    of ``P`` over ``k - 0.5 <= |k| < k + 0.5``, ``k = 1..kN``. A field whose non-DC power sum is
    below 1e-8 (e.g. a constant field) gets 0 in every column.

    Columns decided by the rings that carry energy, ``E = {k : S(k) >= 1e-6 max_k S}``:

    - ``dynamic_range = log10(max_k S / median_{k in E} S)`` (median of an even count: the mean of
      the two middle values); 0 when ``|E| < 2``;
    - ``slope``: least-squares slope of ``log S(k)`` against ``log k`` over ``k in E``; 0 when
      ``|E| < 2``;
    - ``slope_high``: the same over ``k in E`` with ``k >= kN / 4`` (the threshold stays relative
      to the maximum over all rings); 0 when fewer than two such rings.

    A single sinusoid fills one ring, so its dynamic_range and slope are 0 whatever its
    wavelength (there is no spread of energy over rings to measure). A ring whose mean power
    share ``S(k) / sum P`` is below 1e-12 never carries energy: float rounding leaves about 1e-17
    there, and it is all the rings hold when the power lies entirely beyond kN (corner modes), so
    such a field has ``|E| < 2`` and these columns are 0 instead of fits to rounding noise.

    ``band_frac_0..7``: power fraction per radial band, see ``_common.band_edges_sq`` (FEATURES.md
    deviation: on grids 8, 10 and 12, nominal bands that hold no integer ``k^2`` are widened to
    the next available one). ``low_frac``: ``0 < |k| <= max(1, kN / 8)``, never empty.
    ``high_frac``: ``|k| >= kN / 2``. ``ring_peaks`` is a count (not normalised); a ring whose
    mean power share is below ``1e-10 / (H W - 1)`` never counts.
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

    smax = S.amax(-1, keepdim=True)
    energetic = (S >= ENERGY_REL * smax) & (S >= RING_NOISE_SHARE)  # [B, kN]
    logS = torch.log(torch.where(energetic, S, torch.ones_like(S)))
    dyn = _dynamic_range(S, energetic)

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
    slope = masked_slope(logS, g.log_k, energetic)
    slope_high = masked_slope(logS[:, hk], g.log_k[hk], energetic[:, hk])
    cols = [
        *p.bands.unbind(1),
        dyn,
        kbar / kn,
        var.clamp_min(0).sqrt() / kn,
        entropy,
        flatness,
        rolloff,
        slope,
        g.kmag[peak] / kn,
        peak_frac,
        g.kx_abs[peak] / kn,
        g.ky_abs[peak] / kn,
        anis,
        orient,
        share @ g.low,
        slope_high,
        share @ g.high,
        ring_peaks,
        m3 / std_k.pow(1.5),
        m4 / std_k.square(),
    ]
    out = torch.stack(cols, dim=1)
    return torch.where(p.has_power[:, None], out, torch.zeros_like(out))


def masked_slope(y: Tensor, x: Tensor, mask: Tensor) -> Tensor:
    """Least-squares slope of ``y [B, n]`` against ``x [n]`` over the entries where ``mask [B, n]``
    holds: ``sum_m (x - xbar)(y - ybar) / sum_m (x - xbar)^2`` with means over the masked entries;
    0 for rows with fewer than two such entries (or no spread in ``x``). ``y`` must be finite
    everywhere (its value outside the mask is ignored). Returns ``[B]``.
    """
    w = mask.to(y.dtype)
    cnt = w.sum(-1, keepdim=True)
    safe = cnt.clamp_min(1.0)
    xm = (w * x).sum(-1, keepdim=True) / safe
    ym = (w * y).sum(-1, keepdim=True) / safe
    xc = w * (x - xm)
    sxx = xc.square().sum(-1)
    sxy = (xc * (y - ym)).sum(-1)
    ok = (cnt[:, 0] >= 2) & (sxx > 0)
    return torch.where(ok, sxy / torch.where(ok, sxx, torch.ones_like(sxx)), torch.zeros_like(sxx))


def _dynamic_range(S: Tensor, energetic: Tensor) -> Tensor:
    """``log10(max S / median of S over the energetic rings)``, 0 with fewer than two: ``[B]``."""
    vals = torch.where(energetic, S, torch.full_like(S, math.inf)).sort(dim=-1).values
    cnt = energetic.sum(-1, keepdim=True)
    lo = ((cnt - 1) // 2).clamp_min(0)
    hi = (cnt // 2).clamp(max=S.shape[-1] - 1)
    med = 0.5 * (vals.gather(-1, lo) + vals.gather(-1, hi))[:, 0]
    ok = cnt[:, 0] >= 2
    ratio = S.amax(-1) / torch.where(ok, med, torch.ones_like(med))
    return torch.where(ok, torch.log10(torch.where(ok, ratio, torch.ones_like(ratio))), torch.zeros_like(med))
