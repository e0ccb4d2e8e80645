"""The generation stages as library calls: parameters -> initial conditions -> rollouts."""

from .initial import ic_families, ic_types_for, ic_weights_by_family, initial_conditions_for
from .parameters import decoded_parameters, sample_parameters
from .stages import (
    ShardResult,
    StageResult,
    load_shard_inputs,
    simulate_shard,
    write_feature_family,
    write_initial_conditions,
    write_parameters,
    write_rollouts,
)
from .simulate import BatchConsumer, ShardSimulation, operator_specs, simulate_operators

__all__ = [
    "sample_parameters",
    "decoded_parameters",
    "ic_types_for",
    "ic_families",
    "ic_weights_by_family",
    "initial_conditions_for",
    "operator_specs",
    "simulate_operators",
    "ShardSimulation",
    "BatchConsumer",
    "write_parameters",
    "write_initial_conditions",
    "write_rollouts",
    "load_shard_inputs",
    "StageResult",
    "ShardResult",
    "simulate_shard",
    "write_feature_family",
]
