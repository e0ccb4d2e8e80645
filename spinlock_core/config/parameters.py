"""Parameter-space models: one sampled dimension each (integer, continuous, choice, boolean).

Every operator parameter the builder understands is listed in ``KNOWN_PARAMETERS``; a name outside
it would be sampled but never used (an inert dimension), so the schema rejects it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from .problems import problem, raise_problems, relocated

__all__ = [
    "IntegerParam",
    "ContinuousParam",
    "ChoiceParam",
    "BooleanParam",
    "ParameterSpec",
    "ParameterSpace",
    "KNOWN_PARAMETERS",
    "PARAMETER_GROUPS",
]

#: Parameter name -> what it controls (the operator builder, noise model or evolution policy reads it).
KNOWN_PARAMETERS: dict[str, str] = {
    "num_layers": "number of conv blocks after the input block",
    "base_channels": "width b of the first block (later blocks 2b, 4b, 4b, ...)",
    "kernel_size": "conv kernel size (odd)",
    "activation": "activation function",
    "dropout_rate": "dropout probability, active during rollouts",
    "padding_mode": "conv padding mode (circular, reflect, replicate, zeros)",
    "normalization": "normalisation layer (instance, layer, none)",
    "grid_size": "grid size H = W (one value per dataset)",
    "noise_type": "distribution of the additive noise (gaussian, laplace, uniform; unit variance)",
    "noise_scale": "amplitude of the additive noise",
    "noise_schedule": "time profile of the noise amplitude (constant, annealing, periodic)",
    "spatial_correlation": "noise correlation length as a fraction of the domain",
    "update_policy": "evolution policy (residual, convex, autoregressive)",
    "dt": "step size of the residual policy",
    "alpha": "mixing weight of the convex policy",
}

PARAMETER_GROUPS = ("architecture", "stochastic", "operator", "evolution")

_STRICT = ConfigDict(extra="forbid")


class _Spec(BaseModel):
    """Base of the parameter specs: one validator reporting every problem of the spec."""

    model_config = _STRICT

    def _problems(self) -> list:
        return []

    @model_validator(mode="after")
    def _check(self):
        raise_problems(type(self).__name__, self._problems())
        return self


class _Bounded(_Spec):
    def _problems(self) -> list:
        lo, hi = self.bounds
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return [problem("bounds", f"bounds must be finite, got [{lo}, {hi}]", list(self.bounds))]
        if lo > hi:
            return [problem("bounds", f"lower bound {lo} exceeds upper bound {hi}", list(self.bounds))]
        return []


class IntegerParam(_Bounded):
    """Integer in ``[lo, hi]``, every value equally likely: ``lo + floor(u (hi - lo + 1))``."""

    type: Literal["integer"]
    bounds: tuple[int, int]
    description: str | None = None

    @property
    def cardinality(self) -> int:
        return self.bounds[1] - self.bounds[0] + 1


class ContinuousParam(_Bounded):
    """Real in ``[lo, hi]``; log-uniform when ``log_scale`` (bounds must then be > 0)."""

    type: Literal["continuous"]
    bounds: tuple[float, float]
    log_scale: bool = False
    description: str | None = None

    def _problems(self) -> list:
        out = super()._problems()
        if self.log_scale and self.bounds[0] <= 0:
            out.append(problem("bounds", f"log_scale needs bounds > 0, got lower bound {self.bounds[0]}", list(self.bounds)))
        return out

    @property
    def cardinality(self) -> float:
        return math.inf if self.bounds[0] != self.bounds[1] else 1


class ChoiceParam(_Spec):
    """One of ``choices``, with optional ``weights`` (non-negative, one per choice, summing to 1)."""

    type: Literal["choice"]
    choices: list[Any] = Field(min_length=1)
    weights: list[float] | None = None
    description: str | None = None

    def _problems(self) -> list:
        out = []
        if self.weights is not None:
            counted = len(self.weights) == len(self.choices)
            finite = all(math.isfinite(w) and w >= 0 for w in self.weights)
            if not counted:
                out.append(problem("weights", f"{len(self.weights)} weights for {len(self.choices)} choices", self.weights))
            if not finite:
                out.append(problem("weights", f"must be finite and non-negative, got {self.weights}", self.weights))
            if counted and finite and abs(sum(self.weights) - 1.0) > 1e-6:
                out.append(problem("weights", f"must sum to 1 (within 1e-6), got {sum(self.weights):.8g}", self.weights))
        if len({repr(c) for c in self.choices}) != len(self.choices):
            out.append(problem("choices", f"duplicate values in {self.choices}", self.choices))
        return out

    @property
    def cardinality(self) -> int:
        return len(self.choices)


class BooleanParam(_Spec):
    """``u >= 0.5``."""

    type: Literal["boolean"]
    description: str | None = None

    @property
    def cardinality(self) -> int:
        return 2


ParameterSpec = Annotated[
    Union[IntegerParam, ContinuousParam, ChoiceParam, BooleanParam], Field(discriminator="type")
]

_SPEC = TypeAdapter(ParameterSpec)


class ParameterSpace(BaseModel):
    """The sampled dimensions, grouped; order = YAML order inside architecture, stochastic,
    operator, evolution.

    Each parameter is validated on its own (its type's rules, then what its name allows, see
    :mod:`.parameter_rules`), so one broken parameter hides no problem of another; then the
    space as a whole (a name in two groups, a parameter that another one makes inert).
    """

    model_config = _STRICT

    architecture: dict[str, ParameterSpec] = Field(default_factory=dict)
    stochastic: dict[str, ParameterSpec] = Field(default_factory=dict)
    operator: dict[str, ParameterSpec] = Field(default_factory=dict)
    evolution: dict[str, ParameterSpec] = Field(default_factory=dict)

    @field_validator(*PARAMETER_GROUPS, mode="wrap")
    @classmethod
    def _group(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> dict[str, Any]:
        from .parameter_rules import value_problems

        if not isinstance(value, dict):
            return handler(value)  # pydantic's own message for a non-mapping
        problems, out = [], {}
        for name, raw in value.items():
            if not isinstance(name, str):
                problems.append(problem((name,), f"parameter names must be strings, got {name!r}", name))
                continue
            if name not in KNOWN_PARAMETERS:
                problems.append(problem((name,), (
                    f"unknown parameter (it would be sampled but never used); "
                    f"known: {', '.join(sorted(KNOWN_PARAMETERS))}"
                ), raw))
            try:
                spec = _SPEC.validate_python(raw)
            except ValidationError as e:
                problems += relocated(e, (name,))
                continue
            problems += [problem((name, *loc), reason, raw) for loc, reason in value_problems(name, spec)]
            out[name] = spec
        raise_problems("ParameterSpace", problems)
        return out

    @model_validator(mode="after")
    def _space(self):
        from .parameter_rules import inert_problems

        problems = []
        seen: dict[str, str] = {}
        for group in PARAMETER_GROUPS:
            for name in getattr(self, group):
                if name in seen:
                    problems.append(problem((group, name), f"also defined in {seen[name]}"))
                else:
                    seen[name] = group
        if not seen:
            problems.append(problem((), "no parameters defined"))
        specs = dict(self.ordered())
        problems += [problem((seen[name], name), reason) for name, reason in inert_problems(specs)]
        raise_problems("ParameterSpace", problems)
        return self

    def ordered(self) -> list[tuple[str, Any]]:
        """``[(name, spec), ...]`` in sampling order (the columns of ``parameters/params``)."""
        return [(n, s) for g in PARAMETER_GROUPS for n, s in getattr(self, g).items()]

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.ordered()]

    @property
    def dim(self) -> int:
        return len(self.ordered())
