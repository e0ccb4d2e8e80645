"""How many operators one grouped rollout call advances: the memory budget and the group plan."""

from __future__ import annotations

import logging

import torch

from ..config.batching import MAX_AUTO_GROUP, BatchingConfig
from ..operators.grouped import group_by_signature
from ..operators.spec import OperatorSpec

__all__ = ["GroupPlan", "operator_bytes", "budget_bytes", "resolve_group_size", "plan_groups"]

log = logging.getLogger(__name__)

#: float32 tensors of the widest layer live at once in one grouped step: conv output, norm,
#: activation, dropout factor, noise, padded input, residual sum, and slack for the allocator
WORKING_TENSORS = 10
CPU_BUDGET_GB = 2.0
CUDA_BUDGET_FRACTION = 0.4


def operator_bytes(spec: OperatorSpec, realizations: int, num_timesteps: int) -> int:
    """Bytes one operator adds to a group: its float32 trajectory ``[M, T, C, H, W]`` plus
    :data:`WORKING_TENSORS` activations ``[M, widest, H, W]`` of one step."""
    hw = spec.grid_size**2
    widest = max(spec.base_channels, *spec.widths())
    traj = realizations * num_timesteps * spec.channels * hw * 4
    return traj + WORKING_TENSORS * realizations * widest * hw * 4


def budget_bytes(batching: BatchingConfig, device: torch.device) -> int:
    """The configured budget, or ``auto``: 2 GiB on the CPU, 40% of the free memory on CUDA."""
    if batching.memory_budget_gb != "auto":
        return int(float(batching.memory_budget_gb) * 2**30)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(CUDA_BUDGET_FRACTION * free)
    return int(CPU_BUDGET_GB * 2**30)


def resolve_group_size(batching: BatchingConfig, device: torch.device, largest: int) -> int:
    """Operators per group for ``device`` when one operator takes ``largest`` bytes.

    ``group_size: auto`` is 1 on the CPU (grouped convolutions measured slower than the loop there)
    and ``min(MAX_AUTO_GROUP, budget // largest)`` on CUDA; a number is capped by the budget.
    Never below 1: an operator larger than the budget still runs alone.
    """
    fits = max(1, budget_bytes(batching, device) // max(largest, 1))
    if batching.group_size == "auto":
        return 1 if device.type != "cuda" else int(min(MAX_AUTO_GROUP, fits))
    g = int(min(batching.group_size, fits))
    if g < batching.group_size:
        log.info("simulation.batching: group_size %d capped at %d by the memory budget", batching.group_size, g)
    return g


class GroupPlan:
    """The shard's operators (positions ``0 .. n-1``) in groups of equal signature.

    Attributes:
        groups: positions of each group, in order of their first member.
        group_size: the bound each group respects.
    """

    def __init__(self, groups: list[list[int]], group_size: int):
        self.groups, self.group_size = groups, group_size

    def __len__(self) -> int:
        return len(self.groups)


def plan_groups(
    specs: list[OperatorSpec], batching: BatchingConfig, device: torch.device, *, realizations: int, num_timesteps: int
) -> GroupPlan:
    """Group ``specs`` by signature with at most :func:`resolve_group_size` operators per group
    (a mixed shard gives several groups; a signature seen once runs alone)."""
    if not specs:
        return GroupPlan([], 1)
    largest = max(operator_bytes(s, realizations, num_timesteps) for s in specs)
    g = resolve_group_size(batching, device, largest)
    if g == 1:
        return GroupPlan([[i] for i in range(len(specs))], 1)
    return GroupPlan(group_by_signature(specs, g), g)
