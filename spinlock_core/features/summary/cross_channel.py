"""SUMMARY cross-channel block (columns 24-35): how the channels relate and synchronise.

From the TEMPORAL features: ``corr_abs_*`` (``corr_abs_mean``), ``participation_*``
(``participation_ratio``), ``mi_*`` (mean of ``mi_01, mi_02, mi_12``), ``coherence_*`` (mean of
``coherence_01, _02, _12``), ``energy_share_std`` (population std over time of
``energy_share_max``). From the raw fields: ``energy_sync`` (mean over pairs of the Pearson
correlation over time of the channel energies ``mean u_c^2``) and ``phase_locking`` (mean over
pairs of ``|mean_t exp(i (phi_i - phi_j))|``, ``phi`` the phase of the analytic signal of ``x_c``
after a periodic Hann taper; samples where the analytic signal vanishes (below 1e-12 of its
maximum) contribute 0).

Flat series give 0 for ``energy_sync`` and ``phase_locking`` (``x_c`` is flat when its std is at
most 1e-6 of ``mean_t |s_c|``). With ``T = 1`` columns 26 (``corr_abs_slope``), 31, 32 and 33 are
NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import SummaryInputs
from ._series import analytic_signal, hann, is_flat, nan_full, pearson, slope

__all__ = ["NAMES", "PAIRS", "features"]

NAMES = (
    "corr_abs_final",
    "corr_abs_mean",
    "corr_abs_slope",
    "participation_final",
    "participation_mean",
    "mi_final",
    "mi_mean",
    "energy_sync",
    "phase_locking",
    "energy_share_std",
    "coherence_final",
    "coherence_mean",
)

#: Channel pairs, in the order of the TEMPORAL pair columns.
PAIRS = ((0, 1), (0, 2), (1, 2))


def _energy_sync(energy: Tensor) -> Tensor:
    """``energy [N, M, C, T]`` -> ``[N, M]``."""
    if energy.shape[-1] < 2:
        return nan_full(energy.shape[:2], energy)
    return torch.stack([pearson(energy[:, :, i], energy[:, :, j]) for i, j in PAIRS]).mean(0)


def _phase_locking(x: Tensor, reference: Tensor) -> Tensor:
    """``x [N, M, C, T]`` detrended channel means, ``reference [N, M, C]`` -> ``[N, M]``."""
    T = x.shape[-1]
    if T < 2:
        return nan_full(x.shape[:2], x)
    z = analytic_signal(x * hann(T, x))
    amp = z.abs()
    live = amp > 1e-12 * amp.amax(-1, keepdim=True)
    unit = torch.where(live, z / torch.where(live, amp, torch.ones_like(amp)), torch.zeros_like(z))
    flat = is_flat(x, reference)  # [N, M, C]
    plv = []
    for i, j in PAIRS:
        value = (unit[:, :, i] * unit[:, :, j].conj()).mean(-1).abs()
        plv.append(torch.where(flat[:, :, i] | flat[:, :, j], torch.zeros_like(value), value))
    return torch.stack(plv).mean(0)


def features(inp: SummaryInputs) -> Tensor:
    """``[N, M, 12]`` float64 in ``NAMES`` order."""
    T = inp.T
    corr = inp.temporal("corr_abs_mean")
    part = inp.temporal("participation_ratio")
    mi = torch.stack([inp.temporal(f"mi_{i}{j}") for i, j in PAIRS]).mean(0)
    coh = torch.stack([inp.temporal(f"coherence_{i}{j}") for i, j in PAIRS]).mean(0)
    share = inp.temporal("energy_share_max")
    x, reference = inp.fluctuations()
    cols = [
        corr[..., -1],
        corr.mean(-1),
        slope(corr, T),
        part[..., -1],
        part.mean(-1),
        mi[..., -1],
        mi.mean(-1),
        _energy_sync(inp.energy),
        _phase_locking(x, reference),
        share.std(-1, correction=0) if T > 1 else nan_full(share.shape[:-1], share),
        coh[..., -1],
        coh.mean(-1),
    ]
    return torch.stack(cols, dim=-1)
