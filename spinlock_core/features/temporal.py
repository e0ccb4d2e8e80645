"""TEMPORAL family: the 63 per-state features (FEATURES.md), ``[N, T, 63]`` per dataset.

Columns 0-18 spatial, 19-45 spectral (both averaged over channels), 46-62 cross-channel.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import cross_channel, spatial, spectral
from ._common import prepare, validate_states, working_dtype

__all__ = ["TEMPORAL_NAMES", "VERSION", "state_features", "temporal_features"]

TEMPORAL_NAMES: tuple[str, ...] = spatial.NAMES + spectral.NAMES + cross_channel.NAMES
#: 1.1: dynamic_range, slope and slope_high over the rings that carry energy (S >= 1e-6 max S)
#: instead of a log floor; low_frac over 0 < |k| <= max(1, kN/8); radial bands (band_frac_*,
#: coherence_*) never empty on grids 8-12
VERSION = "1.1"

assert len(TEMPORAL_NAMES) == 63 and len(set(TEMPORAL_NAMES)) == 63


def state_features(x: Tensor, chunk: int = 256) -> Tensor:
    """The 63 TEMPORAL features of each state ``x [B, 3, H, W]``, before realization averaging.

    Per-channel groups (spatial, spectral) are computed per channel and averaged over the 3
    channels; the cross-channel group is computed per state. States are processed ``chunk`` at a
    time (smaller working sets stay in cache: see notes/performance.md 1(c)); every result
    depends on its own state only, so neither ``chunk`` nor the rest of the batch changes it
    beyond float rounding. Runs on ``x``'s device; float64 input is computed in float64,
    everything else in float32. Non-finite states give non-finite features (no check, which
    would force a device sync).

    Returns ``[B, 63]`` float32, columns ``TEMPORAL_NAMES``.
    Raises ``ValueError`` for a malformed ``x`` or ``chunk < 1``.
    """
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    x = validate_states(x, convert=False)
    dtype = working_dtype(x.dtype)
    b, c, h, w = x.shape
    out = torch.empty(b, len(TEMPORAL_NAMES), dtype=torch.float32, device=x.device)
    with torch.inference_mode():
        for start in range(0, b, chunk):
            xs = x[start : start + chunk].to(dtype)
            nb = xs.shape[0]
            p = prepare(xs.reshape(nb * c, h, w))
            per_channel = torch.cat([spatial.spatial_from(p), spectral.spectral_from(p)], dim=1)
            out[start : start + nb, : per_channel.shape[1]] = per_channel.reshape(nb, c, -1).mean(1)
            out[start : start + nb, per_channel.shape[1] :] = cross_channel.cross_channel_from(p, nb)
    return out


def temporal_features(traj: Tensor, chunk: int = 256) -> Tensor:
    """TEMPORAL features of trajectories ``traj [N, M, T, 3, H, W]``, averaged over realizations.

    Returns ``[N, T, 63]`` float32: ``state_features`` of every (n, m, t), mean over m.
    Raises ``ValueError`` for a malformed ``traj`` (wrong rank, M = 0, bad channels or grid).
    """
    if not isinstance(traj, Tensor) or traj.ndim != 6:
        shape = tuple(traj.shape) if isinstance(traj, Tensor) else type(traj).__name__
        raise ValueError(f"traj must be [N, M, T, C, H, W], got {shape}")
    n, m, t = traj.shape[:3]
    if m < 1:
        raise ValueError(f"traj needs at least one realization (M >= 1), got shape {tuple(traj.shape)}")
    flat = traj.reshape(n * m * t, *traj.shape[3:])
    return state_features(flat, chunk=chunk).reshape(n, m, t, -1).mean(1)
