"""The one time loop: roll an operator out for ``T`` states on ``M`` realisations at once."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .operators.cnn import RandomCNNOperator
from .operators.grouped import GroupedOperator
from .operators.policies import apply_policy
from .rng import DrawKey

__all__ = ["RolloutResult", "rollout", "rollout_group"]

StepHook = Callable[[int, torch.Tensor, torch.Tensor], None]


@dataclass
class RolloutResult:
    #: ``[M, T, C, H, W]`` float32; states after a divergence repeat the last finite state
    trajectory: torch.Tensor
    diverged: bool
    #: number of states computed before stopping (``T`` when not diverged)
    valid_states: int


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
    # a with-block, not a decorator: mutmut mutates only undecorated functions
    with torch.inference_mode():
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
        ctx = _autocast(device, autocast_dtype)
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


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def rollout_group(
    group: GroupedOperator,
    u0: torch.Tensor,
    *,
    realizations: int,
    num_timesteps: int,
    root_seed: int,
    indices: Sequence[int],
    divergence_threshold: float,
    autocast_dtype: torch.dtype | None = None,
    out: torch.Tensor | None = None,
    step_fn: Callable | None = None,
) -> list[RolloutResult]:
    """:func:`rollout` of the G operators of ``group`` at once, from ``u0 [G, C, H, W]``.

    Operator ``g`` (global index ``indices[g]``) draws with its own key, so its trajectory equals
    ``rollout(group.ops[g], u0[g], index=indices[g], ...)`` up to float32 rounding of the grouped
    convolutions. A diverged operator is frozen at its last finite state (which its remaining
    states repeat, as in :func:`rollout`) while the others go on; the loop stops when all have
    diverged.

    Args:
        out: optional float32 buffer ``[G, M, T, C, H, W]`` on the group's device.
        step_fn: replaces ``group(u, step, keys)`` (a compiled or CUDA-graphed version of it).

    Returns:
        One :class:`RolloutResult` per operator; ``trajectory`` is ``out[g]`` ``[M, T, C, H, W]``.
    """
    # a with-block, not a decorator: mutmut mutates only undecorated functions
    with torch.inference_mode():
        g = group.g
        indices = [int(i) for i in indices]
        if len(indices) != g:
            raise ValueError(f"{len(indices)} indices for a group of {g} operators")
        if u0.ndim != 4 or u0.shape[0] != g:
            raise ValueError(f"u0 must be [G={g}, C, H, W], got shape {tuple(u0.shape)}")
        if realizations < 1 or num_timesteps < 1:
            raise ValueError(f"realizations and num_timesteps must be >= 1, got {realizations}, {num_timesteps}")
        device = group.device
        m, c, hw = realizations, u0.shape[1], tuple(u0.shape[2:])
        shape = (g, m, num_timesteps, c, *hw)
        if out is not None and (tuple(out.shape) != shape or out.dtype != torch.float32 or out.device != device):
            raise ValueError(f"out must be a float32 {shape} tensor on {device}, got {tuple(out.shape)} {out.dtype} on {out.device}")
        traj = out if out is not None else torch.empty(shape, device=device, dtype=torch.float32)
        first = u0.to(device=device, dtype=torch.float32)
        traj[:, :, 0] = first.unsqueeze(1)
        u = first.reshape(1, g * c, *hw).expand(m, g * c, *hw).contiguous()  # [M, G*C, H, W]
        keys = [DrawKey.for_operator(root_seed, i, m, stage="noise") for i in indices]
        apply = step_fn or group
        ctx = _autocast(device, autocast_dtype)
        valid = [num_timesteps] * g
        keep = None  # [1, G*C, 1, 1] bool once an operator has diverged: False on its channels
        for t in range(1, num_timesteps):
            with ctx:
                ou = apply(u, t - 1, [k.at_step(t - 1) for k in keys])
            new = group.apply_policy(u, ou.float())
            # per operator, one reduction: NaN when any value is NaN, inf when any is inf
            peak = torch.linalg.vector_norm(new.view(m, g, -1), ord=float("inf"), dim=(0, 2))
            ok = (peak <= divergence_threshold).tolist()  # the step's one device sync
            newly = [j for j in range(g) if not ok[j] and valid[j] == num_timesteps]
            if newly:
                for j in newly:
                    valid[j] = t
                alive = [v == num_timesteps for v in valid]
                if not any(alive):
                    traj[:, :, t:] = u.view(m, g, c, *hw).transpose(0, 1).unsqueeze(2)
                    break
                keep = torch.tensor(alive, device=device).repeat_interleave(c).view(1, g * c, 1, 1)
            if keep is not None:
                new = torch.where(keep, new, u)  # diverged operators stay at their last finite state
            traj[:, :, t] = new.view(m, g, c, *hw).transpose(0, 1)
            u = new
        return [RolloutResult(trajectory=traj[j], diverged=valid[j] < num_timesteps, valid_states=valid[j]) for j in range(g)]
