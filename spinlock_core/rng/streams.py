"""The stream ids: the fourth counter word, one per kind of draw. The one table of them.

========================  =========================  ===========================================
stream                    stage (key)                counter step word
========================  =========================  ===========================================
``NOISE`` = 0             ``noise``: rollouts;       rollout: the operator application
                          ``sensitivity``: F_a, F_b  ``t - 1``; sensitivity: ``DRAW_A`` or ``DRAW_B``
``1 + b``                 as ``NOISE``               as ``NOISE``: dropout mask of conv block ``b``
(``dropout_stream(b)``)                              (``b = 0`` the input block, then the hidden blocks)
``PERTURBATION`` = 2^20   ``sensitivity``            the perturbation's number ``k``
``POWER_START`` = 2^20+1  ``sensitivity``            0: the power iteration's start vector
========================  =========================  ===========================================

Append only: changing a number changes every dataset (and ``GENERATOR``'s version).
"""

from __future__ import annotations

__all__ = ["NOISE", "DROPOUT_BASE", "MAX_BLOCKS", "PERTURBATION", "POWER_START", "DRAW_A", "DRAW_B", "dropout_stream"]

NOISE = 0
DROPOUT_BASE = 1
MAX_BLOCKS = 1 << 16
PERTURBATION = 1 << 20
POWER_START = PERTURBATION + 1

#: Counter step words of the sensitivity features' two fixed draws of noise and dropout.
DRAW_A = 0
DRAW_B = 1


def dropout_stream(block: int) -> int:
    """Stream of conv block ``block``'s dropout mask.

    Raises:
        ValueError: ``block`` outside ``[0, MAX_BLOCKS)``.
    """
    if not 0 <= block < MAX_BLOCKS:
        raise ValueError(f"dropout block must lie in [0, {MAX_BLOCKS}), got {block}")
    return DROPOUT_BASE + block
