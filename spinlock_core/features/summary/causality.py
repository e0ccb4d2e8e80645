"""SUMMARY causality block (columns 48-61): directed coupling between channels and the arrow of
time, on ``x_c`` (channel means with their least-squares line removed).

- ``lag_asym_max_tau`` (tau = 1, 2, 3): ``max_pairs |A_ij(tau)|`` with
  ``A_ij = corr(x_i(t), x_j(t + tau)) - corr(x_j(t), x_i(t + tau))`` (Pearson over the ``T - tau``
  overlapping samples); ``lag_asym_ij`` the signed ``A_ij(1)`` (positive when ``i`` leads ``j``).
- ``granger_ij``: the larger over both directions of
  ``1 - MSE(full) / MSE(restricted)``, restricted = intercept + 2 own lags of the target, full =
  restricted + 2 lags of the source, ordinary least squares over the ``T - 2`` predictable samples,
  clipped to [0, 1]. Series are scaled to unit std first (the gain is scale-free) and the normal
  equations carry a ridge of 1e-10 of their trace so that collinear designs stay solvable; a
  restricted MSE below 1e-12 (the target is already exactly predictable) gives 0.
- ``transfer_entropy_max`` / ``_asym``: lag-1 transfer entropy ``TE_{i->j} =
  I(x_j(t+1); x_i(t) | x_j(t))`` in nats, plug-in estimate over 4 equal-frequency bins of each
  whole series (ranks, ties broken by time), minus the mean over the source circularly shifted by
  ``floor(T/4), floor(T/2), floor(3T/4)`` steps. ``_max`` over the 6 ordered pairs, ``_asym`` the
  mean over the 3 pairs of ``|TE_ij - TE_ji|``.
- ``irreversibility``: skewness of the increments of ``x_c``, channel mean.
- ``flow_x`` / ``flow_y``: time-and-channel mean of the pixel correlation of ``dx u(t)``
  (``dy u(t)``) with ``u(t+1) - u(t)`` (an advection ``u_t = -c u_x`` with ``c > 0`` gives
  ``flow_x`` near -1).

A channel whose ``x_c`` std is at most 1e-6 of ``mean_t |s_c|`` is flat: every statistic involving
it is 0 (as are correlations of overlapping segments that are flat by the same measure).

NaN where the states do not suffice: every column when ``T = 1``; ``lag_asym_max_tau`` when
``T < tau + 2`` (so ``lag_asym_ij`` when ``T < 3``); ``granger_*`` when ``T < 8`` (the full model
has 5 coefficients and needs more than 5 samples); ``transfer_entropy_*`` when ``T < 4`` (no
distinct shifts for the bias correction).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import SummaryInputs
from ._series import is_flat, nan_full, pearson, skewness

__all__ = ["NAMES", "PAIRS", "features"]

NAMES = (
    "lag_asym_max_1",
    "lag_asym_max_2",
    "lag_asym_max_3",
    "lag_asym_01",
    "lag_asym_02",
    "lag_asym_12",
    "granger_01",
    "granger_02",
    "granger_12",
    "transfer_entropy_max",
    "transfer_entropy_asym",
    "irreversibility",
    "flow_x",
    "flow_y",
)

PAIRS = ((0, 1), (0, 2), (1, 2))
#: Ordered (source, target) pairs: the 3 pairs forwards, then backwards.
_DIRECTIONS = PAIRS + tuple((j, i) for i, j in PAIRS)
_TE_BINS = 4
_GRANGER_MIN_T = 8


def _lag_asymmetry(x: Tensor, ref: Tensor, flat: Tensor, tau: int) -> Tensor:
    """``A_ij(tau)`` for the 3 pairs: ``[3, N, M]``."""
    T = x.shape[-1]
    out = []
    for i, j in PAIRS:
        a = pearson(x[:, :, i, : T - tau], x[:, :, j, tau:], ref[:, :, i], ref[:, :, j])
        b = pearson(x[:, :, j, : T - tau], x[:, :, i, tau:], ref[:, :, j], ref[:, :, i])
        value = a - b
        out.append(torch.where(flat[:, :, i] | flat[:, :, j], torch.zeros_like(value), value))
    return torch.stack(out)


def _residual_mse(design: Tensor, y: Tensor) -> Tensor:
    """Least-squares residual mean square of ``y [..., n]`` on ``design [..., n, p]``."""
    gram = design.transpose(-1, -2) @ design
    p = gram.shape[-1]
    ridge = 1e-10 * gram.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(1.0)
    gram = gram + ridge[..., None, None] * torch.eye(p, dtype=gram.dtype, device=gram.device)
    beta = torch.linalg.solve_ex(gram, design.transpose(-1, -2) @ y[..., None])[0]
    resid = y - (design @ beta)[..., 0]
    return (resid * resid).mean(-1)


def _granger(x: Tensor, flat: Tensor) -> Tensor:
    """Prediction gains for the 3 pairs, larger direction: ``[3, N, M]``."""
    std = x.std(-1, correction=0, keepdim=True)
    z = torch.where(flat[..., None], torch.zeros_like(x), x / torch.where(std > 0, std, 1.0))
    src = torch.stack([z[:, :, i] for i, _ in _DIRECTIONS], dim=2)  # [N, M, 6, T]
    tgt = torch.stack([z[:, :, j] for _, j in _DIRECTIONS], dim=2)
    y = tgt[..., 2:]
    ones = torch.ones_like(y)
    restricted = torch.stack([ones, tgt[..., 1:-1], tgt[..., :-2]], dim=-1)
    full = torch.cat([restricted, torch.stack([src[..., 1:-1], src[..., :-2]], dim=-1)], dim=-1)
    mse_r = _residual_mse(restricted, y)
    mse_f = _residual_mse(full, y)
    gain = (1.0 - mse_f / torch.where(mse_r > 1e-12, mse_r, torch.ones_like(mse_r))).clamp(0.0, 1.0)
    dead = (mse_r <= 1e-12) | torch.stack(
        [flat[:, :, i] | flat[:, :, j] for i, j in _DIRECTIONS], dim=2
    )
    gain = torch.where(dead, torch.zeros_like(gain), gain)  # [N, M, 6]
    return torch.maximum(gain[..., :3], gain[..., 3:]).permute(2, 0, 1)


def _equal_frequency_bins(x: Tensor) -> Tensor:
    """4 equal-frequency bins of each series ``[..., T]`` (int64 in 0..3)."""
    T = x.shape[-1]
    order = torch.argsort(x, dim=-1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(T, device=x.device).expand_as(order))
    return ranks * _TE_BINS // T


def _transfer_entropy(x: Tensor, flat: Tensor) -> Tensor:
    """Bias-corrected lag-1 transfer entropy for the 6 directions: ``[N, M, 6]``."""
    T = x.shape[-1]
    b = _equal_frequency_bins(x)  # [N, M, C, T]
    shifts = (0, T // 4, T // 2, (3 * T) // 4)
    src = torch.stack(
        [torch.stack([b[:, :, i].roll(-s, -1) for s in shifts], dim=2) for i, _ in _DIRECTIONS],
        dim=2,
    )  # [N, M, 6, 4, T]
    tgt = torch.stack([b[:, :, j] for _, j in _DIRECTIONS], dim=2)[:, :, :, None, :]
    code = (tgt[..., 1:] * _TE_BINS + tgt[..., :-1]) * _TE_BINS + src[..., :-1]
    counts = torch.zeros((*code.shape[:-1], _TE_BINS**3), dtype=torch.float64, device=x.device)
    counts.scatter_add_(-1, code, torch.ones_like(code, dtype=torch.float64))
    p = (counts / (T - 1)).unflatten(-1, (_TE_BINS,) * 3)  # [..., next, now, source]
    p_next_now = p.sum(-1, keepdim=True)
    p_now_src = p.sum(-3, keepdim=True)
    p_now = p.sum((-3, -1), keepdim=True)
    live = p > 0
    one = torch.ones_like(p)
    ratio = torch.where(live, p * p_now, one) / torch.where(live, p_next_now * p_now_src, one)
    te = (p * torch.log(ratio)).sum((-3, -2, -1))  # [N, M, 6, 4]
    te = te[..., 0] - te[..., 1:].mean(-1)
    dead = torch.stack([flat[:, :, i] | flat[:, :, j] for i, j in _DIRECTIONS], dim=2)
    return torch.where(dead, torch.zeros_like(te), te)


def features(inp: SummaryInputs) -> Tensor:
    """``[N, M, 14]`` float64 in ``NAMES`` order."""
    T = inp.T
    x, ref = inp.fluctuations()  # [N, M, C, T], [N, M, C]
    nan = nan_full(x.shape[:2], x)
    if T < 2:
        return nan_full((*x.shape[:2], len(NAMES)), x)
    flat = is_flat(x, ref)
    asym = {tau: _lag_asymmetry(x, ref, flat, tau) for tau in (1, 2, 3) if T >= tau + 2}
    lag_max = [asym[tau].abs().amax(0) if tau in asym else nan for tau in (1, 2, 3)]
    lag_1 = list(asym[1]) if 1 in asym else [nan] * 3
    granger = list(_granger(x, flat)) if T >= _GRANGER_MIN_T else [nan] * 3
    if T >= 4:
        te = _transfer_entropy(x, flat)
        te_max = te.amax(-1)
        te_asym = (te[..., :3] - te[..., 3:]).abs().mean(-1)
    else:
        te_max = te_asym = nan
    increments = x[..., 1:] - x[..., :-1]
    irreversibility = skewness(increments, ref).mean(-1)
    flow = inp.flow.mean((2, 3))  # [N, M, 2]
    cols = [*lag_max, *lag_1, *granger, te_max, te_asym, irreversibility, *flow.unbind(-1)]
    return torch.stack(cols, dim=-1)
