"""The train/validation split of the tokenizer, keyed by global operator index.

Every operator gets a key ``u_i``: the first 64-bit word of ``SeedSequence([seed, "split", i])``
as a fraction of ``2^64``. The ``round(fraction * N)`` operators with the smallest keys form the
validation split. An operator's key never depends on which other operators a dataset holds, its
order, shard size or process, so the same operator falls on the same side in every run (and
stays on it when operators are added, unless the count boundary moves past it).
"""

from __future__ import annotations

import numpy as np

from ..seeding import seed_sequence

__all__ = ["operator_keys", "validation_mask"]


def operator_keys(operator_index, seed: int) -> np.ndarray:
    """``[N]`` float64 keys in ``[0, 1)`` of the global ``operator_index [N]`` (see module doc).

    Raises:
        ValueError: ``operator_index`` not 1-D, negative or repeated; ``seed`` negative.
    """
    idx = np.asarray(operator_index)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"operator_index must be a 1-D integer array, got {idx.dtype} of shape {idx.shape}")
    if idx.size and idx.min() < 0:
        raise ValueError("operator_index must be non-negative")
    if np.unique(idx).size != idx.size:
        raise ValueError("operator_index holds repeated operators")
    if seed < 0:
        raise ValueError(f"split seed must be >= 0, got {seed}")
    words = [seed_sequence(seed, "split", int(i)).generate_state(1, dtype=np.uint64)[0] for i in idx]
    return np.asarray(words, dtype=np.uint64).astype(np.float64) / 2.0**64


def validation_mask(operator_index, fraction: float, seed: int) -> np.ndarray:
    """``[N]`` bool: the validation split, the ``round(fraction * N)`` smallest keys (at least 1
    when ``N >= 2``; ties broken by operator index).

    Raises:
        ValueError: ``fraction`` outside ``(0, 1)``, fewer than 2 operators, or as :func:`operator_keys`.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    idx = np.asarray(operator_index)
    keys = operator_keys(idx, seed)
    n = keys.size
    if n < 2:
        raise ValueError(f"a train/validation split needs at least 2 operators, got {n}")
    n_val = min(max(1, int(round(fraction * n))), n - 1)
    order = np.lexsort((idx, keys))
    mask = np.zeros(n, dtype=bool)
    mask[order[:n_val]] = True
    return mask
