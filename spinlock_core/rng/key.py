"""Where a draw sits in the generator's key and counter space.

The Philox key is derived from ``SeedSequence([root, STAGES[stage], operator_index])``; the
128-bit counter of element block ``b`` is ``(b, step, realization, stream)``. A draw therefore
depends on (root seed, stage, operator index, realization, step, stream, element position) and on
nothing else: not on batch composition, batch size, shard size, device or process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..seeding import seed_sequence
from .constants import MASK32

__all__ = ["philox_key", "DrawKey"]


def _philox_key_uncached(root: int, stage: str, index: int) -> tuple[int, int]:
    """The two uint32 key words of ``SeedSequence([root, STAGES[stage], index])``.

    Raises:
        ValueError: unknown stage, or a negative root/index (from :func:`~spinlock_core.seeding.seed_sequence`).
    """
    k0, k1 = seed_sequence(root, stage, index).generate_state(2, dtype=np.uint32)
    return int(k0), int(k1)


#: cached (lru_cache(maxsize=4096)): mutmut mutates only undecorated functions, so the body is
#: _philox_key_uncached and the cache is applied here
philox_key = lru_cache(maxsize=4096)(_philox_key_uncached)


def _check_word(name: str, value: int) -> int:
    value = int(value)
    if not 0 <= value <= MASK32:
        raise ValueError(f"DrawKey.{name} must lie in [0, 2^32), got {value}")
    return value


@dataclass(frozen=True)
class DrawKey:
    """The draws of operator ``index`` (stage ``stage``) for ``realizations``, at counter ``step``.

    ``realizations[i]`` is the realization id of row ``i`` of every batch drawn with this key, so
    a realization draws the same numbers whichever others share its batch.

    Raises:
        ValueError: no realizations, or a realization id or step outside ``[0, 2^32)``; an unknown
            stage or a negative root/index.
    """

    root_seed: int
    index: int
    realizations: tuple[int, ...]
    step: int = 0
    stage: str = "noise"

    def __post_init__(self):
        reals = tuple(_check_word("realizations", r) for r in self.realizations)
        if not reals:
            raise ValueError("DrawKey.realizations must not be empty")
        object.__setattr__(self, "realizations", reals)
        object.__setattr__(self, "step", _check_word("step", self.step))
        philox_key(int(self.root_seed), self.stage, int(self.index))  # validates stage, root, index

    @classmethod
    def for_operator(cls, root_seed: int, index: int, realizations: int, *, stage: str = "noise") -> DrawKey:
        """Realizations ``0 .. realizations - 1`` of operator ``index`` at step 0."""
        if realizations < 1:
            raise ValueError(f"realizations must be >= 1, got {realizations}")
        return cls(root_seed, index, tuple(range(realizations)), 0, stage)

    @property
    def key_words(self) -> tuple[int, int]:
        """The Philox key ``(k0, k1)``."""
        return philox_key(int(self.root_seed), self.stage, int(self.index))

    def at_step(self, step: int) -> DrawKey:
        """The same key at counter step ``step``."""
        return dataclasses.replace(self, step=step)
