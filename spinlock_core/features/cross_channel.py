"""Cross-channel statistics of one state: TEMPORAL columns 46-62 (FEATURES.md, "Cross-channel")."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import EPS, STD_FLOOR, Prepared, log_spectrum, pearson, prepare, validate_states

__all__ = ["NAMES", "PAIRS", "MI_BINS", "cross_channel_features"]

NAMES: tuple[str, ...] = (
    "corr_01",
    "corr_02",
    "corr_12",
    "corr_abs_mean",
    "quadrature_index",
    "eig_2",
    "corr_mean",
    "participation_ratio",
    "spectral_shape_corr",
    "coherence_01",
    "coherence_02",
    "coherence_12",
    "mi_01",
    "mi_02",
    "mi_12",
    "energy_share_max",
    "grad_alignment",
)

#: the channel pairs, in column order
PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))
#: bins per axis of the joint histogram behind mi_01, mi_02, mi_12
MI_BINS = 16
#: a band takes part in the coherence when both channels hold at least this share of their power
_BAND_SHARE_MIN = 1e-6


def cross_channel_features(x: Tensor) -> Tensor:
    """The 17 cross-channel columns of each state ``x [B, 3, H, W]`` (square, even H >= 8).

    Returns ``[B, 17]`` in the working dtype (float64 for float64 input, float32 otherwise).
    Correlations involving a channel whose std is below 1e-6 are 0 (that channel keeps a 1 on
    the diagonal of the correlation matrix, whose eigenvalues then still sum to 3).
    Mutual information: plug-in estimate in nats from a 16 x 16 joint histogram of the min-max
    normalised channels, **without** Miller-Madow correction (its bias for independent channels
    is about 225 / (2 H W) nats: 0.027 at 64 x 64); a constant channel gives 0.
    Quadrature index and coherence are 0 for a pair with a powerless channel.
    Raises ``ValueError`` for a malformed ``x``.
    """
    x = validate_states(x)
    b, c, h, w = x.shape
    return cross_channel_from(prepare(x.reshape(b * c, h, w)), b)


def cross_channel_from(p: Prepared, batch: int) -> Tensor:
    """Cross-channel columns from intermediates of ``x.reshape(B * 3, H, W)``: ``[B, 17]``."""
    g = p.grid
    c = p.u.shape[0] // batch
    if c != 3 or c * batch != p.u.shape[0]:
        raise ValueError(f"expected {batch} states of 3 channels, got {p.u.shape[0]} fields")

    v = p.v.reshape(batch, c, -1)
    gram = torch.bmm(v, v.transpose(1, 2)) / v.shape[-1]  # [B, C, C] covariance
    var = torch.diagonal(gram, dim1=1, dim2=2)
    std = var.clamp_min(0).sqrt()
    cov = _pairs_of(gram)
    si, sj = _pair_operands(std)
    ok = (si >= STD_FLOOR) & (sj >= STD_FLOOR)
    corr = torch.where(ok, (cov / torch.where(ok, si * sj, 1.0)).clamp(-1.0, 1.0), 0.0)

    eig2, pr = _corr_eigen(corr)

    # spectra normalised by each channel's total power (avoids overflow at large amplitudes)
    has_i, has_j = _pair_operands(p.has_power.reshape(batch, c))
    pair_has = has_i & has_j
    inv = torch.where(p.has_power, torch.rsqrt(torch.where(p.has_power, p.total, 1.0)), 0.0)
    xn = (p.X * inv[:, None]).reshape(batch, c, -1)
    z = _pair_product(xn, xn.conj())  # X_i conj(X_j)  [B, 3, Nh]
    quad_num = z.imag.abs() @ g.weight
    quad_den = z.abs() @ g.weight
    quad_ok = pair_has & (quad_den > 0)
    quad = torch.where(quad_ok, quad_num / torch.where(quad_ok, quad_den, 1.0), 0.0)

    cross_band = (z.real * g.weight) @ g.bands  # [B, 3, 8]
    fi, fj = _pair_operands(p.bands.reshape(batch, c, -1))
    qual = (fi >= _BAND_SHARE_MIN) & (fj >= _BAND_SHARE_MIN) & pair_has[..., None]
    coh_b = cross_band.square() / torch.where(qual, fi * fj, 1.0)
    n_qual = qual.sum(-1)
    coherence = torch.where(qual, coh_b, 0.0).sum(-1) / n_qual.clamp(min=1).to(coh_b.dtype)

    log_i, log_j = _pair_operands(log_spectrum(p.radial).reshape(batch, c, -1))
    shape_corr = pearson(log_i, log_j).mean(-1)

    mi = _mutual_information(p.u.reshape(batch, c, -1))

    energy = p.u.reshape(batch, c, -1).square().sum(-1)  # [B, C]
    e_tot = energy.sum(-1)
    e_ok = e_tot >= EPS
    share_max = torch.where(e_ok, energy.amax(-1) / torch.where(e_ok, e_tot, 1.0), 0.0)

    gx = p.gx.reshape(batch, c, -1)
    gy = p.gy.reshape(batch, c, -1)
    gm = torch.sqrt(gx.square() + gy.square())
    dot = _pair_product(gx, gx) + _pair_product(gy, gy)
    align = (dot.abs() / (_pair_product(gm, gm) + EPS)).mean(-1).mean(-1)

    cols = [
        *corr.unbind(1),
        corr.abs().mean(-1),
        quad.mean(-1),
        eig2,
        corr.mean(-1),
        pr,
        shape_corr,
        *coherence.unbind(1),
        *mi.unbind(1),
        share_max,
        align,
    ]
    return torch.stack(cols, dim=1)


def _pair_product(a: Tensor, b: Tensor) -> Tensor:
    """``a_i * b_j`` for the pairs (0, 1), (0, 2), (1, 2) of ``a, b [B, 3, ...]``: ``[B, 3, ...]``.

    Broadcast slices instead of gathered copies (advanced indexing is slow on CPU).
    """
    return torch.cat([a[:, :1] * b[:, 1:], a[:, 1:2] * b[:, 2:]], dim=1)


def _pair_operands(a: Tensor) -> tuple[Tensor, Tensor]:
    """``(a_i, a_j)`` over the pairs, each ``[B, 3, ...]``, for small per-channel tensors."""
    return a[:, [0, 0, 1]], a[:, [1, 2, 2]]


def _pairs_of(m: Tensor) -> Tensor:
    """Entries (0, 1), (0, 2), (1, 2) of ``m [B, 3, 3]``: ``[B, 3]``."""
    return torch.stack([m[:, 0, 1], m[:, 0, 2], m[:, 1, 2]], dim=1)


def _corr_eigen(corr: Tensor) -> tuple[Tensor, Tensor]:
    """Middle eigenvalue and participation ratio of the 3x3 correlation matrix.

    ``corr [B, 3]`` holds (r01, r02, r12) and the diagonal is 1. Closed form for a symmetric
    3x3 matrix with equal diagonal (trigonometric solution): no per-matrix LAPACK call.
    Returns ``([B], [B])``.
    """
    r01, r02, r12 = corr.unbind(1)
    p1 = r01.square() + r02.square() + r12.square()
    pp = torch.sqrt(p1 / 3.0)
    degenerate = pp < 1e-12
    safe = torch.where(degenerate, torch.ones_like(pp), pp)
    r = (r01 * r02 * r12 / safe.pow(3)).clamp(-1.0, 1.0)
    phi = torch.acos(r) / 3.0
    e1 = 1.0 + 2.0 * safe * torch.cos(phi)
    e3 = 1.0 + 2.0 * safe * torch.cos(phi + 2.0 * math.pi / 3.0)
    e2 = torch.where(degenerate, torch.ones_like(pp), 3.0 - e1 - e3)
    pr = 9.0 / (3.0 + 2.0 * p1)
    return e2, pr


def _mutual_information(u: Tensor) -> Tensor:
    """Plug-in mutual information (nats) of the channel pairs of ``u [B, 3, n]``: ``[B, 3]``.

    Each channel is min-max normalised to [0, 1] and cut into ``MI_BINS`` equal bins (the
    maximum falls in the last); the joint histogram of every (state, pair) comes from one
    ``bincount`` over a flattened index. No Miller-Madow correction.
    """
    b, c, n = u.shape
    lo = u.amin(-1, keepdim=True)
    span = u.amax(-1, keepdim=True) - lo
    scale = torch.where(span > 0, MI_BINS / torch.where(span > 0, span, 1.0), 0.0)
    # bin arithmetic stays in floating point (exact for these small integers): int64 element-wise
    # ops are several times slower on CPU
    bins = ((u - lo) * scale).floor().clamp(0, MI_BINS - 1)  # [B, C, n]
    # pairs (0, 1), (0, 2) then (1, 2), the order of PAIRS
    joint = torch.cat([bins[:, :1] * MI_BINS + bins[:, 1:], bins[:, 1:2] * MI_BINS + bins[:, 2:]], dim=1)
    npairs = len(PAIRS)
    offset = torch.arange(b * npairs, device=u.device, dtype=torch.int64).reshape(b, npairs, 1) * MI_BINS**2
    idx = joint.to(torch.int64) + offset
    counts = torch.bincount(idx.reshape(-1), minlength=b * npairs * MI_BINS * MI_BINS)
    joint = counts.reshape(b, npairs, MI_BINS, MI_BINS).to(u.dtype) / n
    pi = joint.sum(-1)
    pj = joint.sum(-2)
    h_joint = -torch.xlogy(joint, joint).sum((-2, -1))
    h_i = -torch.xlogy(pi, pi).sum(-1)
    h_j = -torch.xlogy(pj, pj).sum(-1)
    return (h_i + h_j - h_joint).clamp_min(0.0)
