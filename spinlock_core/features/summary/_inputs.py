"""The shared inputs of the SUMMARY blocks: one pass over the raw fields, in chunks over time.

``build_inputs`` reduces a trajectory batch ``[N, M, T, C, H, W]`` to per-state time series
(float64, time on the last axis) and bundles them with the TEMPORAL per-state features; the
block modules (spatial, spectral, ...) only see this bundle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import _fields
from ._series import detrend

__all__ = ["SummaryInputs", "build_inputs", "temporal_names", "N_TEMPORAL"]

#: Columns of the TEMPORAL per-state features.
N_TEMPORAL = 63
#: Raw field elements per chunk (float32); bounds the working memory of the field pass.
_CHUNK_ELEMENTS = 1 << 22


def temporal_names() -> tuple[str, ...]:
    """The TEMPORAL column names (imported lazily: the TEMPORAL module is only needed when used)."""
    from spinlock_core.features.temporal import TEMPORAL_NAMES

    return tuple(TEMPORAL_NAMES)


@dataclass(frozen=True)
class SummaryInputs:
    """Per-state series of one batch of trajectories (all float64).

    Attributes:
        state: TEMPORAL per-state features ``[N, M, T, 63]``.
        energy: spatial mean of ``u_c^2`` ``[N, M, C, T]``.
        mean: spatial mean ``s_c`` ``[N, M, C, T]``.
        variance: spatial variance ``[N, M, C, T]``.
        radial: normalised radial spectra ``[N, M, C, T, H/2]``.
        grad_kurtosis: excess kurtosis of ``|grad u|`` ``[N, M, C, T]``.
        step_norm: ``||u(t+1) - u(t)||`` over the whole state ``[N, M, T-1]``.
        flow: pixel correlation of ``(dx u(t), dy u(t))`` with ``u(t+1) - u(t)``
            ``[N, M, C, T-1, 2]``.
        invariants: channel-mean invariants ``[N, M, 4, 3, T]`` (``_fields.INVARIANTS`` x
            ``_fields.SCALES``).
    """

    state: Tensor
    energy: Tensor
    mean: Tensor
    variance: Tensor
    radial: Tensor
    grad_kurtosis: Tensor
    step_norm: Tensor
    flow: Tensor
    invariants: Tensor

    @property
    def T(self) -> int:
        return self.energy.shape[-1]

    def temporal(self, name: str) -> Tensor:
        """TEMPORAL feature ``name`` over time, ``[N, M, T]``."""
        names = temporal_names()
        if name not in names:
            raise KeyError(f"TEMPORAL feature {name!r} not in TEMPORAL_NAMES")
        return self.state[..., names.index(name)]

    def fluctuations(self) -> tuple[Tensor, Tensor]:
        """``x_c`` (the channel means with their least-squares line removed) ``[N, M, C, T]`` and
        the magnitude their flatness is judged against, ``mean_t |s_c|`` ``[N, M, C]``.

        The detrended series has mean ~0, so its own mean absolute value cannot tell a fluctuation
        from rounding noise; the catalogue's relative threshold is applied against the channel
        mean ``s_c`` it comes from.
        """
        return detrend(self.mean, self.T), self.mean.abs().mean(-1)


def _validate(traj: Tensor, state_feats: Tensor | None) -> None:
    if not isinstance(traj, Tensor) or traj.ndim != 6:
        shape = tuple(traj.shape) if isinstance(traj, Tensor) else type(traj).__name__
        raise ValueError(f"traj must be a tensor [N, M, T, C, H, W], got {shape}")
    if not traj.is_floating_point():
        raise ValueError(f"traj must be floating point, got {traj.dtype}")
    N, M, T, C, H, W = traj.shape
    if min(N, M, T) < 1:
        raise ValueError(f"traj needs N, M, T >= 1, got shape {tuple(traj.shape)}")
    if C != 3:
        raise ValueError(f"SUMMARY features need C = 3 channels, got C = {C}")
    if H != W or H < 4:
        raise ValueError(f"SUMMARY features need a square grid with H = W >= 4, got {H}x{W}")
    if state_feats is not None and tuple(state_feats.shape) != (N, M, T, N_TEMPORAL):
        raise ValueError(
            f"state_feats must have shape {(N, M, T, N_TEMPORAL)}, got {tuple(state_feats.shape)}"
        )


def build_inputs(traj: Tensor, state_feats: Tensor | None = None) -> SummaryInputs:
    """Reduce ``traj [N, M, T, C, H, W]`` to the SUMMARY inputs.

    ``state_feats [N, M, T, 63]`` are the TEMPORAL per-state features; when None they are computed
    here with ``spinlock_core.features.temporal.state_features`` (chunk by chunk).

    Raises:
        ValueError: wrong rank, dtype, channel count, non-square grid or state_feats shape.
    """
    _validate(traj, state_feats)
    N, M, T, C, H, W = traj.shape
    if traj.dtype not in (torch.float32, torch.float64):
        traj = traj.float()
    state_features = None
    if state_feats is None:
        from spinlock_core.features.temporal import state_features

    chunk = max(1, _CHUNK_ELEMENTS // (N * M * C * H * W))
    parts: dict[str, list[Tensor]] = {k: [] for k in (
        "state", "energy", "mean", "variance", "radial", "gk", "step", "flow", "inv")}
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        u = traj[:, :, t0:t1]  # [N, M, t, C, H, W]
        if state_features is not None:
            feats = state_features(u.reshape(-1, C, H, W))
            parts["state"].append(feats.reshape(N, M, t1 - t0, -1).double())
        parts["energy"].append((u * u).mean((-2, -1), dtype=torch.float64))
        parts["mean"].append(u.mean((-2, -1), dtype=torch.float64))
        parts["variance"].append(u.var((-2, -1), correction=0).double())
        parts["radial"].append(_fields.radial_distribution(u).double())
        gx, gy = _fields.central_gradients(u)
        parts["gk"].append(_fields.gradient_kurtosis(gx, gy).double())
        parts["inv"].append(_fields.field_invariants(u).mean(-3))  # channel mean
        pairs = min(T, t1 + 1) - t0 - 1  # (t, t+1) with t in this chunk
        if pairs > 0:
            du = traj[:, :, t0 + 1 : t0 + 1 + pairs] - traj[:, :, t0 : t0 + pairs]
            step = torch.linalg.vector_norm(du.flatten(-3), dim=-1, dtype=torch.float64)
            parts["step"].append(step)
            flow = _fields.flow_correlations(gx[:, :, :pairs], gy[:, :, :pairs], du)
            parts["flow"].append(flow.double())

    def cat(key: str, empty_shape: tuple[int, ...]) -> Tensor:
        if parts[key]:
            return torch.cat(parts[key], dim=2)
        return torch.zeros(empty_shape, dtype=torch.float64, device=traj.device)

    state = state_feats.double() if state_feats is not None else cat("state", (N, M, T, N_TEMPORAL))
    return SummaryInputs(
        state=state,
        energy=cat("energy", ()).transpose(2, 3),
        mean=cat("mean", ()).transpose(2, 3),
        variance=cat("variance", ()).transpose(2, 3),
        radial=cat("radial", ()).transpose(2, 3),
        grad_kurtosis=cat("gk", ()).transpose(2, 3),
        step_norm=cat("step", (N, M, 0)),
        flow=cat("flow", (N, M, 0, C, 2)).transpose(2, 3),
        invariants=cat("inv", ()).permute(0, 1, 3, 4, 2),
    )
