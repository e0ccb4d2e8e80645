"""The one time loop: roll an operator out for ``T`` states on ``M`` realisations at once."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from .operators.cnn import RandomCNNOperator
from .operators.policies import apply_policy
from .rng import DrawKey

__all__ = ["RolloutResult", "rollout"]

StepHook = Callable[[int, torch.Tensor, torch.Tensor], None]


@dataclass
class RolloutResult:
    #: ``[M, T, C, H, W]`` float32; states after a divergence repeat the last finite state
    trajectory: torch.Tensor
    diverged: bool
    #: number of states computed before stopping (``T`` when not diverged)
    valid_states: int


@torch.inference_mode()
def rollout(
    op: RandomCNNOperator,
    u0: torch.Tensor,
    *,
    realizations: int,
    num_timesteps: int,
    root_seed: int,
    index: int,
    divergence_threshold: float,
    autocast_dtype: torch.dtype | None = None,
    on_step: StepHook | None = None,
    out: torch.Tensor | None = None,
) -> RolloutResult:
    """Roll ``op`` out from ``u0 [C, H, W]``.

    State 0 is the initial condition (shared by all realisations); each of the ``T - 1`` steps
    applies the evolution policy with the operator's noise and dropout drawn by the counter-based
    generator (:mod:`spinlock_core.rng`) keyed by ``(root_seed, "noise", index)`` at counter step
    ``t - 1`` for realisation ``m``: the same bits whatever the batch, shard, device or process.
    A non-finite value or ``|u| > divergence_threshold`` stops the rollout; the remaining states
    repeat the last finite one and ``diverged`` is set.

    Args:
        on_step: called as ``on_step(step, u_before, u_after)`` with ``[M, C, H, W]`` tensors.
        out: optional float32 buffer ``[M, T, C, H, W]`` on the operator's device to write the
            trajectory into (a slot of a batch tensor: no copy afterwards).

    Returns:
        :class:`RolloutResult` with ``trajectory [M, T, C, H, W]`` on the operator's device.
    """
    if u0.ndim != 3:
        raise ValueError(f"u0 must be [C, H, W], got shape {tuple(u0.shape)}")
    if realizations < 1 or num_timesteps < 1:
        raise ValueError(f"realizations and num_timesteps must be >= 1, got {realizations}, {num_timesteps}")
    device = next(op.parameters()).device
    spec = op.spec
    shape = (realizations, num_timesteps, *u0.shape)
    if out is not None and (tuple(out.shape) != shape or out.dtype != torch.float32 or out.device != device):
        raise ValueError(f"out must be a float32 {shape} tensor on {device}, got {tuple(out.shape)} {out.dtype} on {out.device}")
    traj = out if out is not None else torch.empty(shape, device=device, dtype=torch.float32)
    u = u0.to(device=device, dtype=torch.float32).unsqueeze(0).expand(realizations, *u0.shape).contiguous()
    traj[:, 0] = u
    key = DrawKey.for_operator(root_seed, index, realizations, stage="noise")
    ctx = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    diverged, valid = False, num_timesteps
    for t in range(1, num_timesteps):
        with ctx:
            ou = op(u, t - 1, key.at_step(t - 1))
        new = apply_policy(spec.update_policy, u, ou.float(), dt=spec.dt, alpha=spec.alpha)
        # one reduction: the max-abs is NaN when any value is NaN, inf when any is inf
        peak = torch.linalg.vector_norm(new, ord=float("inf"))
        if not bool(peak <= divergence_threshold):
            diverged, valid = True, t
            traj[:, t:] = u.unsqueeze(1)
            break
        if on_step is not None:
            on_step(t - 1, u, new)
        traj[:, t] = new
        u = new
    return RolloutResult(trajectory=traj, diverged=diverged, valid_states=valid)
