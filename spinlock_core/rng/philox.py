"""Philox4x32-10 on int64 tensors holding uint32 values: exact on every torch device.

Philox4x32-R is the counter-based generator of Salmon, Moraes, Dror and Shaw, "Parallel random
numbers: as easy as 1, 2, 3", SC'11 (reference implementation: the Random123 library,
``philox.h``). A 128-bit counter ``(c0, c1, c2, c3)`` and a 64-bit key ``(k0, k1)`` give four
uint32 words through ``R`` rounds of

    hi0, lo0 = mulhilo(M0, c0);  hi1, lo1 = mulhilo(M1, c2)
    (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)

with the key bumped by the Weyl increments ``(W0, W1)`` (mod 2^32) between rounds.

torch has no uint32 right shift on the CPU and int64 products overflow (signed wraparound is not
something to rely on), so words are int64 tensors in ``[0, 2^32)`` and the 32x32 -> 64-bit
product is formed from the multiplier's two 16-bit halves: every partial product stays below 2^49.
"""

from __future__ import annotations

import torch

from .constants import MASK32, PHILOX_M0, PHILOX_M1, PHILOX_ROUNDS, PHILOX_W0, PHILOX_W1

__all__ = ["mulhilo", "round_keys", "philox4x32"]

Word = torch.Tensor | int


def mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of ``a * m`` for int64 ``a`` in ``[0, 2^32)`` and a uint32 ``m``."""
    t0 = a * (m & 0xFFFF)  # < 2^48
    t1 = a * (m >> 16)  # < 2^48
    s = t0 + ((t1 & 0xFFFF) << 16)  # < 2^49: the low 48 bits of the product
    return (t1 >> 16) + (s >> 32), s & MASK32


def round_keys(k0: int, k1: int, rounds: int = PHILOX_ROUNDS) -> list[tuple[int, int]]:
    """The key of each round: ``(k0 + r W0, k1 + r W1) mod 2^32`` for ``r = 0 .. rounds - 1``."""
    if not (0 <= k0 <= MASK32 and 0 <= k1 <= MASK32):
        raise ValueError(f"Philox key words must be uint32, got {k0}, {k1}")
    return [((k0 + r * PHILOX_W0) & MASK32, (k1 + r * PHILOX_W1) & MASK32) for r in range(rounds)]


def _tensor_round_keys(k0: torch.Tensor, k1: torch.Tensor, rounds: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`round_keys` for int64 tensors of key words (one key per element). Their values are
    not read back here (that would stall a GPU once per draw): callers build them from
    :attr:`~.key.DrawKey.key_words`, which are uint32 by construction."""
    for name, k in (("k0", k0), ("k1", k1)):
        if k.dtype != torch.int64:
            raise ValueError(f"philox4x32: key tensor {name} must be int64, got {k.dtype}")
    return [((k0 + r * PHILOX_W0) & MASK32, (k1 + r * PHILOX_W1) & MASK32) for r in range(rounds)]


def philox4x32(
    c0: Word, c1: Word, c2: Word, c3: Word, k0: Word, k1: Word, rounds: int = PHILOX_ROUNDS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox4x32-``rounds`` of the counters ``(c0, c1, c2, c3)`` under key ``(k0, k1)``.

    Args:
        c0, c2: int64 tensors with values in ``[0, 2^32)`` (broadcastable to each other).
        c1, c3: int64 tensors or Python ints in ``[0, 2^32)``.
        k0, k1: the key words: Python ints, or int64 tensors of uint32 values broadcastable with
            the counters (one key per element: many operators' draws in one evaluation).

    Returns:
        Four int64 tensors of the broadcast shape, values in ``[0, 2^32)``.
    """
    if not (isinstance(c0, torch.Tensor) and isinstance(c2, torch.Tensor)):
        raise ValueError("philox4x32: c0 and c2 must be int64 tensors")
    if c0.dtype != torch.int64 or c2.dtype != torch.int64:
        raise ValueError(f"philox4x32: counters must be int64 tensors, got {c0.dtype}, {c2.dtype}")
    if isinstance(k0, torch.Tensor) or isinstance(k1, torch.Tensor):
        keys = _tensor_round_keys(torch.as_tensor(k0, device=c0.device), torch.as_tensor(k1, device=c0.device), rounds)
    else:
        keys = round_keys(k0, k1, rounds)
    for ka, kb in keys:
        hi0, lo0 = mulhilo(c0, PHILOX_M0)
        hi1, lo1 = mulhilo(c2, PHILOX_M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ ka, lo1, hi0 ^ c3 ^ kb, lo0
    return tuple(torch.broadcast_tensors(*(torch.as_tensor(c, device=c0.device) for c in (c0, c1, c2, c3))))
