"""Parameter-space models: one sampled dimension each (integer, continuous, choice, boolean).

Every operator parameter the builder understands is listed in ``KNOWN_PARAMETERS``; a name outside
it would be sampled but never used (an inert dimension), so the schema rejects it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class _Bounded(BaseModel):
    model_config = _STRICT

    @model_validator(mode="after")
    def _ordered(self):
        lo, hi = self.bounds
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"bounds must be finite, got [{lo}, {hi}]")
        if lo > hi:
            raise ValueError(f"bounds: lower bound {lo} exceeds upper bound {hi}")
        return self


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

    @model_validator(mode="after")
    def _log_positive(self):
        if self.log_scale and self.bounds[0] <= 0:
            raise ValueError(f"bounds: log_scale needs bounds > 0, got lower bound {self.bounds[0]}")
        return self

    @property
    def cardinality(self) -> float:
        return math.inf if self.bounds[0] != self.bounds[1] else 1


class ChoiceParam(BaseModel):
    """One of ``choices``, with optional ``weights`` (non-negative, one per choice, summing to 1)."""

    model_config = _STRICT

    type: Literal["choice"]
    choices: list[Any] = Field(min_length=1)
    weights: list[float] | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _weights(self):
        if self.weights is not None:
            if len(self.weights) != len(self.choices):
                raise ValueError(
                    f"weights: {len(self.weights)} weights for {len(self.choices)} choices"
                )
            if any((not math.isfinite(w)) or w < 0 for w in self.weights):
                raise ValueError(f"weights: must be finite and non-negative, got {self.weights}")
            total = sum(self.weights)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"weights: must sum to 1 (within 1e-6), got {total:.8g}")
        if len({repr(c) for c in self.choices}) != len(self.choices):
            raise ValueError(f"choices: duplicate values in {self.choices}")
        return self

    @property
    def cardinality(self) -> int:
        return len(self.choices)


class BooleanParam(BaseModel):
    """``u >= 0.5``."""

    model_config = _STRICT

    type: Literal["boolean"]
    description: str | None = None

    @property
    def cardinality(self) -> int:
        return 2


ParameterSpec = Annotated[
    Union[IntegerParam, ContinuousParam, ChoiceParam, BooleanParam], Field(discriminator="type")
]


class ParameterSpace(BaseModel):
    """The sampled dimensions, grouped; order = YAML order inside architecture, stochastic,
    operator, evolution."""

    model_config = _STRICT

    architecture: dict[str, ParameterSpec] = Field(default_factory=dict)
    stochastic: dict[str, ParameterSpec] = Field(default_factory=dict)
    operator: dict[str, ParameterSpec] = Field(default_factory=dict)
    evolution: dict[str, ParameterSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self):
        seen: dict[str, str] = {}
        for group in PARAMETER_GROUPS:
            for name in getattr(self, group):
                if name not in KNOWN_PARAMETERS:
                    raise ValueError(
                        f"{group}.{name}: unknown parameter (it would be sampled but never used); "
                        f"known: {', '.join(sorted(KNOWN_PARAMETERS))}"
                    )
                if name in seen:
                    raise ValueError(f"{group}.{name}: also defined in {seen[name]}")
                seen[name] = group
        if not seen:
            raise ValueError("no parameters defined")
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
