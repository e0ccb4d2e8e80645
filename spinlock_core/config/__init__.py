"""Config schema (pydantic) and YAML loading."""

from .experiment import ExperimentConfig
from .loading import ConfigError, load_experiment, load_yaml_model
from .parameters import KNOWN_PARAMETERS, ParameterSpace

__all__ = ["ExperimentConfig", "ConfigError", "load_experiment", "load_yaml_model", "KNOWN_PARAMETERS", "ParameterSpace"]
