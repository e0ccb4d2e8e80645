"""Every random draw derives from (root seed, stage, global operator index, ...).

Stages are named, and each name maps to a fixed integer below (never Python's ``hash()``, which is
salted per process). A stream for operator ``i`` is therefore the same whatever the shard size,
worker count or process that computes it.

Example::

    rng = numpy_generator(42, "ic", 17)          # numpy Generator for operator 17's IC
    g = torch_generator(42, "operator", 17)      # torch.Generator for operator 17's weights
"""

from __future__ import annotations

import numpy as np

__all__ = ["STAGES", "seed_sequence", "numpy_generator", "torch_generator", "seed_int"]

#: Stage name -> fixed integer. Append only: changing a number changes every dataset.
STAGES: dict[str, int] = {
    "sobol": 1,
    "ic_type": 2,
    "ic": 3,
    "operator": 4,
    "noise": 5,
    "subsample": 6,
    "sensitivity": 7,
    "split": 8,
    "tokenizer": 9,
}


def seed_sequence(root: int, stage: str, *index: int) -> np.random.SeedSequence:
    """SeedSequence for ``(root, stage, *index)``.

    Raises:
        ValueError: unknown stage, or a negative root/index.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown seeding stage {stage!r}; known: {sorted(STAGES)}")
    entropy = [int(root), STAGES[stage], *(int(i) for i in index)]
    if any(v < 0 for v in entropy):
        raise ValueError(f"seed components must be non-negative, got {entropy}")
    return np.random.SeedSequence(entropy)


def numpy_generator(root: int, stage: str, *index: int) -> np.random.Generator:
    """A numpy ``Generator`` (PCG64) for ``(root, stage, *index)``."""
    return np.random.Generator(np.random.PCG64(seed_sequence(root, stage, *index)))


def seed_int(root: int, stage: str, *index: int) -> int:
    """A 63-bit integer seed for ``(root, stage, *index)`` (for torch and scipy)."""
    state = seed_sequence(root, stage, *index).generate_state(1, dtype=np.uint64)[0]
    return int(state) & ((1 << 63) - 1)


def torch_generator(root: int, stage: str, *index: int, device: str = "cpu"):
    """A ``torch.Generator`` on ``device`` seeded from ``(root, stage, *index)``."""
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(seed_int(root, stage, *index))
    return g
