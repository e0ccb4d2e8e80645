"""The interface every initial-condition generator implements, and shared parameter checks.

A generator is a stateless object with a ``name`` (its base type, the registry key), a
``params_model`` (a strict pydantic model of its parameters, every field defaulted) and
:meth:`ICGenerator.generate`, which draws one field ``[C, H, W]`` from a caller-supplied
``numpy.random.Generator``. Nothing here seeds anything: all randomness comes from ``rng``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from pydantic import BaseModel

__all__ = ["ICGenerator", "MIN_GRID_SIZE", "check_range"]

#: smallest grid a generator accepts (a 2x2 periodic grid has no usable wavenumbers)
MIN_GRID_SIZE = 4


def check_range(value: list[float], minimum: float) -> list[float]:
    """Validate a ``[lo, hi]`` pair: both finite, ``minimum <= lo <= hi``.

    Used inside pydantic field validators, so the field name is added by pydantic.

    Raises:
        ValueError: a non-finite bound, ``lo < minimum`` or ``lo > hi``.
    """
    lo, hi = value
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"bounds must be finite, got [{lo}, {hi}]")
    if lo < minimum:
        raise ValueError(f"lower bound {lo} is below the minimum {minimum}")
    if lo > hi:
        raise ValueError(f"lower bound {lo} exceeds upper bound {hi}")
    return value


class ICGenerator(ABC):
    """Base class of initial-condition generators.

    Subclasses set ``name`` and ``params_model`` and implement :meth:`_generate`; the public
    :meth:`generate` validates its arguments once for all of them.
    """

    #: base type name, the key in ``IC_GENERATORS``
    name: ClassVar[str]
    #: pydantic v2 model of the parameters (``extra="forbid"``, every field defaulted)
    params_model: ClassVar[type[BaseModel]]

    def default_params(self) -> BaseModel:
        """The parameters with every field at its default."""
        return self.params_model()

    def generate(self, params: BaseModel, grid_size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
        """Draw one initial condition.

        Args:
            params: an instance of ``self.params_model``.
            grid_size: ``H = W``, at least ``MIN_GRID_SIZE``.
            channels: ``C``, at least 1.
            rng: the only source of randomness; the same state gives the same field.

        Returns:
            float32 array ``[C, H, W]``, finite.

        Raises:
            TypeError: ``params`` is not a ``params_model`` instance, or ``rng`` is not a
                ``numpy.random.Generator``.
            ValueError: ``grid_size < MIN_GRID_SIZE`` or ``channels < 1``.
        """
        if not isinstance(params, self.params_model):
            raise TypeError(
                f"initial condition {self.name!r}: params must be a {self.params_model.__name__}, "
                f"got {type(params).__name__}"
            )
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        grid_size = _check_int("grid_size", grid_size, MIN_GRID_SIZE)
        channels = _check_int("channels", channels, 1)
        out = self._generate(params, grid_size, channels, rng)
        assert out.shape == (channels, grid_size, grid_size), out.shape
        return np.ascontiguousarray(out, dtype=np.float32)

    @abstractmethod
    def _generate(self, params: BaseModel, grid_size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``[C, H, W]`` (any float dtype) from validated arguments."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _check_int(what: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return int(value)
