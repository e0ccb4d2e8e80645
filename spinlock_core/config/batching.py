"""``simulation.batching``: how many operators one rollout call advances (no effect on the data
beyond float32 rounding of the convolutions' summation order, like the device itself).

Operators that share an architecture signature (:func:`spinlock_core.operators.grouped.signature`)
are rolled out G at a time with stacked weights and grouped convolutions. G is bounded by a memory
budget computed from the shapes (:mod:`spinlock_core.generation.grouping`).
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, StrictInt, field_validator

__all__ = ["BatchingConfig", "MAX_AUTO_GROUP"]

#: the largest group ``group_size: auto`` forms on a GPU (more operators per launch stopped paying
#: off in the benchmark's G = 1, 8, 32, 128 sweep once the device is full)
MAX_AUTO_GROUP = 128


class BatchingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: operators per grouped call: ``auto`` = 1 on the CPU (grouped convolutions measured slower
    #: than the loop there: benchmarks/rollout.py --batched) and, on CUDA, as many as the memory
    #: budget allows, at most MAX_AUTO_GROUP; or a number (still capped by the budget)
    group_size: Union[Literal["auto"], StrictInt] = "auto"
    #: GiB a group may hold (trajectories plus one step's working set): ``auto`` = 2 GiB on the
    #: CPU, 40% of the free device memory on CUDA
    memory_budget_gb: Union[Literal["auto"], float] = "auto"
    #: grouped ``conv2d(groups=G)`` or ``torch.func.vmap`` over the operators' convolutions
    #: (``auto``: grouped_conv, the faster or equal of the two on every device measured)
    method: Literal["auto", "grouped_conv", "vmap"] = "auto"
    #: compile the deterministic part of a grouped step: ``torch_compile`` (inductor), or
    #: ``cuda_graphs`` (inductor with CUDA graphs, CUDA only); ``none`` runs eagerly
    compile: Literal["none", "torch_compile", "cuda_graphs"] = "none"

    @field_validator("group_size")
    @classmethod
    def _group(cls, v):
        if v != "auto" and (isinstance(v, bool) or v < 1):
            raise ValueError(f"must be 'auto' or an integer >= 1, got {v!r}")
        return v

    @field_validator("memory_budget_gb")
    @classmethod
    def _budget(cls, v):
        if v != "auto" and not v > 0:
            raise ValueError(f"must be 'auto' or a number > 0, got {v!r}")
        return v
