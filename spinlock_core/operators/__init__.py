"""Random CNN operators: spec, blocks, noise, evolution policies."""

from .cnn import RandomCNNOperator, build_operator
from .noise import correlate, draw_noise, schedule_factor
from .policies import POLICIES, apply_policy
from .spec import OperatorSpec, noise_regime, operator_spec

__all__ = [
    "OperatorSpec",
    "operator_spec",
    "noise_regime",
    "RandomCNNOperator",
    "build_operator",
    "apply_policy",
    "POLICIES",
    "draw_noise",
    "correlate",
    "schedule_factor",
]
