"""Configured fractions of the categorical labels that the balance checks compare against."""

from __future__ import annotations

from ..config.experiment import ExperimentConfig
from .initial import ic_families

__all__ = ["ic_type_weights", "family_weights", "policy_weights"]


def ic_type_weights(cfg: ExperimentConfig) -> dict[str, float]:
    return dict(cfg.simulation.input_generation.ic_type_weights)


def family_weights(cfg: ExperimentConfig) -> dict[str, float]:
    """IC family (base generator) -> summed weight of its variants."""
    fam = ic_families(cfg)
    out: dict[str, float] = {}
    for variant, w in cfg.simulation.input_generation.ic_type_weights.items():
        out[fam[variant]] = out.get(fam[variant], 0.0) + w
    return out


def policy_weights(cfg: ExperimentConfig) -> dict[str, float]:
    """Evolution policy -> configured fraction (the ``update_policy`` choice, uniform without
    weights; ``residual`` only when it is not sampled)."""
    spec = dict(cfg.parameter_space.ordered()).get("update_policy")
    if spec is None:
        return {"residual": 1.0}
    k = len(spec.choices)
    w = spec.weights or [1.0 / k] * k
    return {str(c): float(x) for c, x in zip(spec.choices, w)}
