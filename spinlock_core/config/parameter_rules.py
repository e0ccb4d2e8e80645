"""What each known parameter may take, and which parameters need another one to act.

The operator builder reads parameters by name (``spinlock_core.operators.spec.OperatorSpec``);
these rules reject at load time the values it cannot use and the parameters it would never read.
Both functions return ``[(location, reason)]`` and never raise: the caller reports them all.
"""

from __future__ import annotations

import math
from typing import Any

from .parameters import BooleanParam, ChoiceParam, ContinuousParam, IntegerParam

__all__ = ["CATEGORICAL", "INTEGER_RANGES", "REAL_RANGES", "MIN_GRID_SIZE", "grid_size_problem", "value_problems", "inert_problems"]

#: parameters that take one of a fixed set of names (a choice)
CATEGORICAL: dict[str, frozenset[str]] = {
    "activation": frozenset({"gelu", "relu", "tanh", "silu", "elu", "leaky_relu", "sigmoid", "softplus"}),
    "normalization": frozenset({"instance", "layer", "none"}),
    "noise_type": frozenset({"gaussian", "laplace", "uniform"}),
    "noise_schedule": frozenset({"constant", "annealing", "periodic"}),
    "update_policy": frozenset({"residual", "convex", "autoregressive"}),
    "padding_mode": frozenset({"circular", "reflect", "replicate", "zeros"}),
}
#: integer parameters (an integer range or a choice of integers) and their allowed range
INTEGER_RANGES: dict[str, tuple[int, int]] = {"num_layers": (1, 16), "base_channels": (1, 1024), "kernel_size": (1, 31)}
#: real parameters (a continuous range or a choice of numbers) and their allowed range
REAL_RANGES: dict[str, tuple[float, float]] = {
    "dropout_rate": (0.0, 0.95),
    "alpha": (0.0, 1.0),
    "spatial_correlation": (0.0, 1.0),
    "noise_scale": (0.0, math.inf),
    "dt": (0.0, math.inf),
}
#: the feature extractors need an even grid of at least this size (features/_common.py)
MIN_GRID_SIZE = 8
#: the policy of an operator when update_policy is not a parameter (OperatorSpec's default)
DEFAULT_POLICY = "residual"
#: parameters that only shape the additive noise, which is zero unless noise_scale is sampled
NOISE_SHAPERS = ("noise_type", "noise_schedule", "spatial_correlation")

Problems = list[tuple[tuple, str]]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def grid_size_problem(v: Any) -> str | None:
    """Why ``v`` cannot be a grid size, or None."""
    if not _is_int(v):
        return f"grid size must be an integer, got {v!r}"
    if v < MIN_GRID_SIZE or v % 2:
        return (
            f"grid size must be even and >= {MIN_GRID_SIZE} (the spectral and gradient features need it), got {v}"
        )
    return None


def _values(spec) -> tuple[str, list]:
    if isinstance(spec, ChoiceParam):
        return "choices", list(spec.choices)
    return "bounds", list(getattr(spec, "bounds", []))


def value_problems(name: str, spec) -> Problems:
    """Problems of parameter ``name`` given its validated ``spec``; locations relative to it."""
    if name in CATEGORICAL:
        if not isinstance(spec, ChoiceParam):
            return [((), "must be a choice")]
        allowed = CATEGORICAL[name]
        bad = [c for c in spec.choices if not isinstance(c, str) or c not in allowed]
        return [(("choices",), f"unknown value(s) {bad}; known: {sorted(allowed)}")] if bad else []
    if name == "grid_size":
        if not isinstance(spec, ChoiceParam) or len(spec.choices) != 1:
            return [((), "one dataset holds one grid size; use a choice with a single value (run one experiment per grid size)")]
        reason = grid_size_problem(spec.choices[0])
        return [(("choices",), reason)] if reason else []
    if name in INTEGER_RANGES:
        if not isinstance(spec, (IntegerParam, ChoiceParam)):
            return [((), f"must be an integer range or a choice of integers, got type {spec.type!r}")]
        lo, hi = INTEGER_RANGES[name]
        where, values = _values(spec)
        out = []
        bad = [v for v in values if not (_is_int(v) and lo <= v <= hi)]
        if bad:
            out.append(((where,), f"values must be integers in [{lo}, {hi}], got {bad}"))
        if name == "kernel_size":
            if isinstance(spec, IntegerParam) and spec.bounds[0] != spec.bounds[1]:
                out.append(((where,), "use a choice of odd sizes (an integer range would give even kernels)"))
            elif even := [v for v in values if _is_int(v) and v % 2 == 0]:
                out.append(((where,), f"kernel sizes must be odd, got {even}"))
        return out
    if name in REAL_RANGES:
        if isinstance(spec, BooleanParam):
            return [((), "must be a continuous range or a choice of numbers, got type 'boolean'")]
        lo, hi = REAL_RANGES[name]
        where, values = _values(spec)
        bad = [v for v in values if not (_is_real(v) and lo <= v <= hi)]
        if bad:
            span = f">= {lo}" if hi == math.inf else f"in [{lo}, {hi}]"
            return [((where,), f"values must be numbers {span}, got {bad}")]
    return []


def _possible(spec: ChoiceParam) -> list:
    """The values a choice can take (those of positive weight)."""
    w = spec.weights or [1.0] * len(spec.choices)
    return [c for c, p in zip(spec.choices, w) if p > 0]


def inert_problems(specs: dict[str, Any]) -> list[tuple[str, str]]:
    """``[(name, reason)]`` for parameters that no operator would read, given the others."""
    out = []
    policy = specs.get("update_policy")
    policies = _possible(policy) if isinstance(policy, ChoiceParam) else [DEFAULT_POLICY]
    shown = policies if policy is not None else f"['{DEFAULT_POLICY}'] (update_policy is not a parameter)"
    for name, needs, constant in (("alpha", "convex", "simulation.alpha"), ("dt", "residual", "simulation.dt")):
        if name in specs and needs not in policies:
            out.append((name, (
                f"only the {needs} policy reads {name}, and no operator can have it: update_policy values {shown}; "
                f"add '{needs}' to update_policy or remove {name} ({constant} sets the constant)"
            )))
    scale = specs.get("noise_scale")
    silent = scale is None or (isinstance(scale, ChoiceParam) and not any(_is_real(v) and v > 0 for v in scale.choices)) or (
        isinstance(scale, (IntegerParam, ContinuousParam)) and scale.bounds[1] <= 0
    )
    if silent:
        why = "noise_scale is not a parameter (no noise is added)" if scale is None else "noise_scale is never > 0"
        for name in NOISE_SHAPERS:
            if name in specs:
                out.append((name, f"shapes the additive noise, but {why}; {name} would change nothing"))
    return out
