"""Unit-cube values -> parameter values (SPEC section 2), and parameter values -> [0, 1] features."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..config.parameters import BooleanParam, ChoiceParam, ContinuousParam, IntegerParam, ParameterSpace

__all__ = ["map_unit", "decode_params", "decode_row", "normalized_params"]


def map_unit(u: np.ndarray, spec) -> np.ndarray:
    """Map unit values ``u [N]`` in ``[0, 1)`` to parameter values for one ``spec``.

    integer -> ``lo + floor(u (hi - lo + 1))`` clipped to hi; continuous -> ``lo + u (hi - lo)`` or
    log-uniform; choice -> index ``searchsorted(cumsum(weights), u, side='right')`` clipped, then
    the choice (object array); boolean -> ``u >= 0.5``.
    """
    u = np.asarray(u, dtype=np.float64)
    if isinstance(spec, IntegerParam):
        lo, hi = spec.bounds
        return np.minimum(lo + np.floor(u * (hi - lo + 1)).astype(np.int64), hi)
    if isinstance(spec, ContinuousParam):
        lo, hi = spec.bounds
        if spec.log_scale:
            return np.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        return lo + u * (hi - lo)
    if isinstance(spec, ChoiceParam):
        idx = choice_index(u, spec)
        out = np.empty(len(u), dtype=object)
        for i, c in enumerate(spec.choices):
            out[idx == i] = c
        return out
    if isinstance(spec, BooleanParam):
        return u >= 0.5
    raise TypeError(f"unknown parameter spec {type(spec).__name__}")


def choice_index(u: np.ndarray, spec: ChoiceParam) -> np.ndarray:
    k = len(spec.choices)
    w = np.asarray(spec.weights if spec.weights is not None else [1.0 / k] * k, dtype=np.float64)
    cum = np.cumsum(w)
    cum[-1] = 1.0
    return np.minimum(np.searchsorted(cum, np.asarray(u, dtype=np.float64), side="right"), k - 1)


def decode_params(unit: np.ndarray, space: ParameterSpace) -> dict[str, np.ndarray]:
    """``unit [N, P]`` -> ``{name: values [N]}`` in parameter order."""
    unit = np.asarray(unit)
    if unit.ndim != 2 or unit.shape[1] != space.dim:
        raise ValueError(f"unit values must be [N, {space.dim}], got shape {unit.shape}")
    return {name: map_unit(unit[:, j], spec) for j, (name, spec) in enumerate(space.ordered())}


def decode_row(unit_row: np.ndarray, space: ParameterSpace) -> dict[str, Any]:
    """One operator's unit values ``[P]`` -> ``{name: python value}``."""
    cols = decode_params(np.asarray(unit_row, dtype=np.float64)[None, :], space)
    out = {}
    for k, v in cols.items():
        x = v[0]
        out[k] = x.item() if isinstance(x, np.generic) else x
    return out


def normalized_params(unit: np.ndarray, space: ParameterSpace) -> np.ndarray:
    """ARCHITECTURE features ``[N, P]`` in [0, 1]: decoded values normalised by their bounds.

    continuous by its bounds (log bounds for log scale); integers ``(v - lo) / (hi - lo)``; choices
    ``index / (K - 1)`` (0 when K = 1); booleans 0/1. A degenerate range gives 0.
    """
    unit = np.asarray(unit, dtype=np.float64)
    cols = []
    for j, (name, spec) in enumerate(space.ordered()):
        u = unit[:, j]
        if isinstance(spec, IntegerParam):
            lo, hi = spec.bounds
            v = map_unit(u, spec)
            cols.append((v - lo) / (hi - lo) if hi > lo else np.zeros_like(u))
        elif isinstance(spec, ContinuousParam):
            lo, hi = spec.bounds
            v = map_unit(u, spec)
            if hi == lo:
                cols.append(np.zeros_like(u))
            elif spec.log_scale:
                cols.append((np.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)))
            else:
                cols.append((v - lo) / (hi - lo))
        elif isinstance(spec, ChoiceParam):
            k = len(spec.choices)
            cols.append(choice_index(u, spec) / (k - 1) if k > 1 else np.zeros_like(u))
        else:
            cols.append((u >= 0.5).astype(np.float64))
    return np.clip(np.stack(cols, axis=1), 0.0, 1.0).astype(np.float32)
