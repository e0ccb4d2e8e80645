"""Torch helpers shared by the per-state feature groups (FEATURES.md, "Conventions").

Everything here works on a batch of fields ``u [B, H, W]`` (periodic, ``H = W`` even), on any
device, row by row: no result for one field depends on another field of the batch. Computation
happens in the *working dtype*: float64 for float64 input, float32 otherwise.

The spectrum is taken with ``rfft2`` over the last two axes. The half plane it returns is
flattened to ``Nh = H * (W // 2 + 1)`` bins; ``SpectralGrid.weight`` is 2 for the bins that stand
for a ``(k, -k)`` pair, 1 for the self-paired columns ``kx = 0`` and ``kx = W/2``, and 0 for DC, so
that ``(P * weight).sum(-1)`` equals the full-plane sum over the non-DC bins (FEATURES.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "EPS",
    "STD_FLOOR",
    "SpectralGrid",
    "Prepared",
    "working_dtype",
    "validate_fields",
    "validate_states",
    "dx",
    "dy",
    "laplacian",
    "standardized_moments",
    "sort_last",
    "quantiles_sorted",
    "ls_slope",
    "pearson",
    "spectral_grid",
    "band_edges_sq",
    "prepare",
    "log_spectrum",
    "correlation_length",
    "radial_spectrum",
]

#: the ``eps`` of FEATURES.md: guards divisions, and total power below it means "no power"
EPS = 1e-8
#: a std below this gives skewness and kurtosis 0 (and correlations 0)
STD_FLOOR = 1e-6
#: relative floor added to S(k) wherever its log is taken
LOG_FLOOR_REL = 1e-10
#: number of log-spaced radial bands (band_frac_0..7, coherence)
NUM_BANDS = 8


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 input, float32 for every other floating dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _validate_grid(shape: tuple[int, ...], name: str) -> None:
    h, w = shape[-2], shape[-1]
    if h != w:
        raise ValueError(f"{name} must hold square fields (H = W), got H={h}, W={w}")
    if h < 8 or h % 2:
        raise ValueError(f"{name} grid size must be even and >= 8, got {h}")


def validate_fields(u: Tensor, name: str = "u") -> Tensor:
    """Check ``u [B, H, W]`` (floating, square, even H >= 8); return it in the working dtype.

    Raises ``ValueError`` for a non-tensor, a wrong rank, a non-floating dtype or a bad grid.
    """
    if not isinstance(u, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(u).__name__}")
    if u.ndim != 3:
        raise ValueError(f"{name} must be [B, H, W], got shape {tuple(u.shape)}")
    if not u.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating tensor, got {u.dtype}")
    _validate_grid(tuple(u.shape), name)
    return u.detach().to(working_dtype(u.dtype))


def validate_states(x: Tensor, name: str = "x", channels: int = 3, convert: bool = True) -> Tensor:
    """Check ``x [B, C, H, W]`` with ``C == channels``; return it in the working dtype.

    With ``convert=False`` the tensor comes back unchanged (callers that work in chunks convert
    each chunk, so that a half-precision input is never copied whole).
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must be [B, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{name} must have C = {channels} channels, got {x.shape[1]}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating tensor, got {x.dtype}")
    _validate_grid(tuple(x.shape), name)
    return x.detach().to(working_dtype(x.dtype)) if convert else x.detach()


# ----------------------------------------------------------------------------- derivatives


def dx(u: Tensor) -> Tensor:
    """Periodic central difference along the last axis: ``(u[..., j+1] - u[..., j-1]) / 2``."""
    return (torch.roll(u, -1, dims=-1) - torch.roll(u, 1, dims=-1)) * 0.5


def dy(u: Tensor) -> Tensor:
    """Periodic central difference along the second-to-last axis (rows)."""
    return (torch.roll(u, -1, dims=-2) - torch.roll(u, 1, dims=-2)) * 0.5


def laplacian(u: Tensor) -> Tensor:
    """Periodic 5-point Laplacian (grid spacing 1) of ``u [..., H, W]``."""
    return (
        torch.roll(u, -1, dims=-1)
        + torch.roll(u, 1, dims=-1)
        + torch.roll(u, -1, dims=-2)
        + torch.roll(u, 1, dims=-2)
        - 4.0 * u
    )


# ----------------------------------------------------------------------------- statistics


def standardized_moments(a: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Mean, std (ddof 0), skewness and excess kurtosis over the last axis of ``a [..., n]``.

    The values are standardised before they are cubed, so no overflow for large amplitudes.
    Skewness and kurtosis are 0 where the std is below ``STD_FLOOR`` (never NaN).
    Returns four tensors of shape ``[...]``.
    """
    mean = a.mean(-1)
    c = a - mean.unsqueeze(-1)
    std = c.square().mean(-1).sqrt()
    ok = std >= STD_FLOOR
    z = c / torch.where(ok, std, torch.ones_like(std)).unsqueeze(-1)
    z2 = z * z
    skew = (z2 * z).mean(-1)
    kurt = z2.square().mean(-1) - 3.0
    zero = torch.zeros_like(std)
    return mean, std, torch.where(ok, skew, zero), torch.where(ok, kurt, zero)


def sort_last(a: Tensor) -> Tensor:
    """Values of ``a`` sorted along the last axis.

    On CPU this goes through numpy: its SIMD sort is about 14x faster than ``torch.sort`` on a
    [768, 4096] float32 batch (6 ms against 87 ms, torch 2.13, numpy 2.4). The numpy view is
    zero-copy and the result is identical; other devices use ``torch.sort``.
    """
    if a.device.type == "cpu":
        return torch.from_numpy(np.sort(a.detach().contiguous().numpy(), axis=-1))
    return torch.sort(a, dim=-1).values


def quantiles_sorted(s: Tensor, qs: tuple[float, ...]) -> Tensor:
    """Quantiles ``qs`` of each row of the sorted ``s [..., n]``, linear interpolation.

    Same convention as ``numpy.quantile``'s default (position ``q (n - 1)``). Returns
    ``[..., len(qs)]``.
    """
    n = s.shape[-1]
    pos = torch.tensor(qs, dtype=torch.float64) * (n - 1)
    lo = pos.floor().long().clamp(0, n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    frac = (pos - lo.double()).to(device=s.device, dtype=s.dtype)
    lo, hi = lo.to(s.device), hi.to(s.device)
    a, b = s.index_select(-1, lo), s.index_select(-1, hi)
    return a + (b - a) * frac


def ls_slope(y: Tensor, x: Tensor) -> Tensor:
    """Least-squares slope of ``y [..., n]`` against ``x [n]``; returns ``[...]``."""
    xc = x - x.mean()
    return (y * xc).sum(-1) / xc.square().sum()


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation over the last axis of ``a, b [..., n]``; 0 where a std < STD_FLOOR."""
    ac = a - a.mean(-1, keepdim=True)
    bc = b - b.mean(-1, keepdim=True)
    sa = ac.square().mean(-1).sqrt()
    sb = bc.square().mean(-1).sqrt()
    ok = (sa >= STD_FLOOR) & (sb >= STD_FLOOR)
    den = torch.where(ok, sa * sb, torch.ones_like(sa))
    r = ((ac * bc).mean(-1) / den).clamp(-1.0, 1.0)
    return torch.where(ok, r, torch.zeros_like(r))


# ----------------------------------------------------------------------------- spectral grid


@dataclass(frozen=True)
class SpectralGrid:
    """Constant per-bin tables of the rfft2 half plane of an ``n x n`` grid (``Nh`` bins).

    All wavenumbers are integers in cycles per domain; ``kN = n / 2``.
    """

    n: int
    kn: int
    #: [Nh] 0 at DC, 2 for paired bins, 1 for the self-paired columns kx = 0, n/2
    weight: Tensor
    #: [Nh] |k|, |kx|, |ky| (kx along the last axis, ky along rows)
    kmag: Tensor
    kx_abs: Tensor
    ky_abs: Tensor
    #: [Nh, kN] ring-average matrix: (P * weight) @ ring_avg = S(k), k = 1..kN
    ring_avg: Tensor
    #: [Nh, n/2] (P * weight) @ acf_rings / sum(P * weight) = ring-averaged autocorrelation,
    #: lags 1..n/2
    acf_rings: Tensor
    #: [Nh, 8] band membership (band_frac_0..7, coherence): see ``band_edges_sq``
    bands: Tensor
    #: [Nh, 5] columns |k|, |k|^2, kx^2 - ky^2, cos(2 theta), sin(2 theta)
    moments: Tensor
    #: [Nh] 1 where 0 < |k| <= max(1, kN / 8), resp. |k| >= kN / 2
    low: Tensor
    high: Tensor
    #: [Nh] order of the bins by |k|, and |k| in that order (for the rolloff)
    order: Tensor
    kmag_sorted: Tensor
    #: [Nh] for peak_frac: share of bin b's mode = (P[b] + P[partner[b]]) * pair_factor[b]
    partner: Tensor
    pair_factor: Tensor
    #: [kN] log k for k = 1..kN
    log_k: Tensor
    #: smallest k >= kN / 4 (first ring of slope_high)
    high_start: int


def _band_edges_sq(kn: int) -> np.ndarray:
    """Squared log-spaced edges e_0 = 1 ... e_8 = kN, snapped to integers where they are one."""
    e2 = float(kn) ** (np.arange(NUM_BANDS + 1) * 2.0 / NUM_BANDS)
    r = np.round(e2)
    return np.where(np.abs(e2 - r) < 1e-9 * np.maximum(1.0, e2), r, e2)


def band_edges_sq(n: int) -> np.ndarray:
    """Squared lower edges ``L_0 .. L_7`` of the 8 radial bands of an ``n x n`` grid: ``[8]``.

    A non-DC bin with integer ``k2 = kx^2 + ky^2`` belongs to band ``i`` when
    ``L_i <= k2 < L_{i+1}`` (band 7: ``k2 >= L_7``, which includes the corners beyond kN).
    Nominally ``L_i = e_i^2`` with log-spaced ``e_i = kN^(i/8)`` (FEATURES.md).

    FEATURES.md deviation: on grids 8, 10 and 12 some nominal bands hold no integer ``k2``
    (8x8: ``[2^(1/2), 2)`` in k^2 terms, among others), which would make their band fraction
    constant 0. Such a band is widened to the next available ``k2``: with ``a`` the smallest
    ``k2`` on the grid with ``a >= L_{i-1}``, ``L_i = e_i^2`` if ``a < e_i^2``, else ``a + 1``
    (band ``i - 1`` then holds ``a`` alone). Every band holds at least one ``k2`` on every even
    grid >= 8; where no nominal band is empty (every grid from 14 up) the membership is exactly
    the nominal one. On 8x8 the bands are ``k2 = 1 | 2 | 4 | 5 | 8 | 9 | 10 | >= 11``.
    """
    kn = n // 2
    k1 = np.fft.fftfreq(n, d=1.0 / n).round().astype(np.int64)
    k2 = np.unique((k1[:, None] ** 2 + k1[None, :] ** 2).ravel())
    k2 = k2[k2 > 0]
    nominal = _band_edges_sq(kn)
    lower = np.empty(NUM_BANDS)
    lower[0] = nominal[0]
    for i in range(1, NUM_BANDS):
        a = k2[k2 >= lower[i - 1]].min()
        lower[i] = nominal[i] if a < nominal[i] else a + 1
    assert (k2 >= lower[-1]).any(), "band 7 must be non-empty"
    return lower


def _grid_numpy_uncached(n: int) -> dict[str, np.ndarray]:
    kn = n // 2
    nx = n // 2 + 1
    ky = np.fft.fftfreq(n, d=1.0 / n).round().astype(np.int64)  # rows, signed
    kx = np.arange(nx, dtype=np.int64)
    KY, KX = np.meshgrid(ky, kx, indexing="ij")  # [n, nx]
    k2 = (KX**2 + KY**2).ravel()
    kmag = np.sqrt(k2.astype(np.float64))
    weight = np.where((KX == 0) | (KX == n // 2), 1.0, 2.0).ravel()
    weight[k2 == 0] = 0.0
    nh = k2.size

    # rings k - 0.5 <= |k| < k + 0.5; |k| never sits on a half-integer for integer k^2
    ring = np.floor(kmag + 0.5).astype(np.int64)
    ring_avg = np.zeros((nh, kn))
    for k in range(1, kn + 1):
        m = (ring == k) & (weight > 0)
        ring_avg[m, k - 1] = 1.0 / weight[m].sum()

    # ring-averaged autocorrelation: the mean of cos(2 pi k.x / n) over the lags x of ring r is
    # the (real) DFT of the symmetric ring mask divided by its size
    lag = np.fft.fftfreq(n, d=1.0 / n)
    LY, LX = np.meshgrid(lag, lag, indexing="ij")
    lring = np.floor(np.sqrt(LX**2 + LY**2) + 0.5).astype(np.int64)
    masks = np.stack([(lring == r).astype(np.float64) for r in range(1, kn + 1)])
    acf = np.fft.rfft2(masks).real / masks.sum(axis=(1, 2))[:, None, None]
    acf_rings = acf.reshape(kn, nh).T.copy()

    lower = band_edges_sq(n)
    band = np.zeros(nh, dtype=np.int64)
    for i in range(1, NUM_BANDS):
        band += (k2 >= lower[i]).astype(np.int64)
    bands = np.zeros((nh, NUM_BANDS))
    bands[np.arange(nh), band] = 1.0
    bands[k2 == 0] = 0.0

    kxf, kyf = KX.ravel().astype(np.float64), KY.ravel().astype(np.float64)
    safe_k2 = np.where(k2 > 0, k2, 1).astype(np.float64)
    moments = np.stack(
        [kmag, k2.astype(np.float64), kxf**2 - kyf**2, (kxf**2 - kyf**2) / safe_k2, 2 * kxf * kyf / safe_k2],
        axis=1,
    )
    moments[k2 == 0] = 0.0
    # +-n/2 is one and the same wavenumber: a Nyquist bin has no sign, so no sin(2 theta) (the
    # average of both labellings); without this the rfft and fft2 labellings disagree
    moments[(KX.ravel() == n // 2) | (np.abs(KY.ravel()) == n // 2), 4] = 0.0

    # 0 < |k| <= max(1, kN / 8), in integers: the ring |k| = 1 at least, so never empty
    low = ((k2 > 0) & (k2 * 64 <= max(64, kn * kn))).astype(np.float64)
    high = (k2 * 4 >= kn * kn).astype(np.float64)

    order = np.argsort(kmag, kind="stable")

    # conjugate partner of each half-plane bin: only the self-paired columns hold both k and -k
    iy = np.repeat(np.arange(n), nx)
    ix = np.tile(np.arange(nx), n)
    self_col = (ix == 0) | (ix == n // 2)
    partner = np.arange(nh)
    partner[self_col] = ((-iy[self_col]) % n) * nx + ix[self_col]
    pair_factor = np.ones(nh)
    pair_factor[self_col & (partner == np.arange(nh))] = 0.5

    ks = np.arange(1, kn + 1, dtype=np.float64)
    return dict(
        weight=weight,
        kmag=kmag,
        kx_abs=np.abs(kxf),
        ky_abs=np.abs(kyf),
        ring_avg=ring_avg,
        acf_rings=acf_rings,
        bands=bands,
        moments=moments,
        low=low,
        high=high,
        order=order,
        kmag_sorted=kmag[order],
        partner=partner,
        pair_factor=pair_factor,
        log_k=np.log(ks),
    )


#: cached (lru_cache(maxsize=32)): mutmut mutates only undecorated functions, so the body is
#: _grid_numpy_uncached and the cache is applied here
_grid_numpy = lru_cache(maxsize=32)(_grid_numpy_uncached)


def _spectral_grid_uncached(n: int, device: torch.device, dtype: torch.dtype) -> SpectralGrid:
    """The ``SpectralGrid`` of an ``n x n`` grid, built once per (n, device, dtype)."""
    g = _grid_numpy(n)
    f = {
        k: torch.as_tensor(v, device=device, dtype=torch.long if v.dtype == np.int64 else dtype)
        for k, v in g.items()
    }
    return SpectralGrid(n=n, kn=n // 2, high_start=-(-(n // 2) // 4), **f)


#: cached (lru_cache(maxsize=32)): mutmut mutates only undecorated functions, so the body is
#: _spectral_grid_uncached and the cache is applied here
spectral_grid = lru_cache(maxsize=32)(_spectral_grid_uncached)


# ----------------------------------------------------------------------------- prepared fields


@dataclass(frozen=True)
class Prepared:
    """Intermediates of ``u [B, H, W]`` shared by the spatial, spectral and cross-channel groups.

    The field is first shifted by its own pixel ``u[0, 0]``: this changes no feature but makes a
    constant field exactly zero after centring (no rounding noise posing as structure).
    """

    grid: SpectralGrid
    #: [B, H, W] input in the working dtype
    u: Tensor
    #: [B] spatial mean of u
    mean: Tensor
    #: [B, H, W] u minus its mean
    v: Tensor
    #: [B, H, W] periodic central differences and 5-point Laplacian of u
    gx: Tensor
    gy: Tensor
    lap: Tensor
    #: [B, Nh] complex rfft2 of v, flattened
    X: Tensor
    #: [B, Nh] |X|^2 with DC set to 0 (one value per bin, unweighted)
    power: Tensor
    #: [B] non-DC full-plane power sum P
    total: Tensor
    #: [B] total >= EPS (fields with less are "powerless": spectral fractions 0)
    has_power: Tensor
    #: [B, Nh] full-plane power shares: power * weight / total (0 for powerless fields)
    share: Tensor
    #: [B, kN] radial spectrum S(k) of the shares (S / sum P), k = 1..kN
    radial: Tensor
    #: [B, n/2] ring-averaged autocorrelation at lags 1..n/2
    acf: Tensor
    #: [B, 8] power fraction per band
    bands: Tensor
    #: [B, 5] share-weighted sums of |k|, |k|^2, kx^2 - ky^2, cos 2theta, sin 2theta
    moments: Tensor


def prepare(u: Tensor) -> Prepared:
    """Compute the shared intermediates of already validated fields ``u [B, H, W]``."""
    g = spectral_grid(u.shape[-1], u.device, u.dtype)
    shifted = u - u[..., :1, :1]
    m0 = shifted.mean(dim=(-2, -1))
    v = shifted - m0[:, None, None]
    X = torch.fft.rfft2(v).reshape(u.shape[0], -1)
    power = (X.real.square() + X.imag.square()) * (g.weight > 0)
    total = power @ g.weight
    has_power = total >= EPS
    inv = torch.where(has_power, 1.0 / torch.where(has_power, total, 1.0), 0.0)
    share = power * g.weight * inv[:, None]
    mats = torch.cat([g.ring_avg, g.acf_rings, g.bands, g.moments], dim=1)
    proj = share @ mats
    kn = g.kn
    radial, acf, bands, moments = torch.split(proj, [kn, kn, NUM_BANDS, 5], dim=1)
    acf = torch.where(has_power[:, None], acf, 1.0)  # a powerless field is perfectly correlated
    # the four neighbours, shared by the differences and the Laplacian
    xp, xm = torch.roll(v, -1, dims=-1), torch.roll(v, 1, dims=-1)
    yp, ym = torch.roll(v, -1, dims=-2), torch.roll(v, 1, dims=-2)
    return Prepared(
        grid=g,
        u=u,
        mean=u[..., 0, 0] + m0,
        v=v,
        gx=(xp - xm) * 0.5,
        gy=(yp - ym) * 0.5,
        lap=(xp + xm) + (yp + ym) - 4.0 * v,
        X=X,
        power=power,
        total=total,
        has_power=has_power,
        share=share,
        radial=radial,
        acf=acf,
        bands=bands,
        moments=moments,
    )


def log_spectrum(radial: Tensor) -> Tensor:
    """``log(S + 1e-10 sum_k S)`` of ``radial [..., kN]`` (finite also for an all-zero S)."""
    floor = LOG_FLOOR_REL * radial.sum(-1, keepdim=True) + torch.finfo(radial.dtype).tiny
    return torch.log(radial + floor)


def correlation_length(acf: Tensor, n: int) -> Tensor:
    """1/e crossing of the ring-averaged autocorrelation ``acf [B, n/2]`` (lags 1..n/2), / n.

    Lag 0 has autocorrelation 1. The crossing is linearly interpolated between the two lags that
    bracket it; 0.5 where the autocorrelation never drops below 1/e. Returns ``[B]``.
    """
    thr = math.exp(-1.0)
    full = torch.cat([torch.ones_like(acf[:, :1]), acf], dim=1)  # lags 0..n/2
    below = full < thr
    first = below.to(torch.int64).argmax(dim=1).clamp(min=1)  # lag 0 is never below
    a = full.gather(1, (first - 1)[:, None])[:, 0]
    b = full.gather(1, first[:, None])[:, 0]
    lag = (first - 1).to(acf.dtype) + (a - thr) / (a - b).clamp_min(torch.finfo(acf.dtype).tiny)
    return torch.where(below.any(dim=1), lag / n, torch.full_like(lag, 0.5))


def radial_spectrum(u: Tensor) -> Tensor:
    """Radial power spectrum ``S(k)``, k = 1..kN, of fields ``u [B, H, W]``: ``[B, kN]``.

    Unnormalised (the ring mean of ``|fft2(u - mean)|^2``), in the working dtype.
    """
    u = validate_fields(u)
    p = prepare(u)
    return p.radial * p.total[:, None]
