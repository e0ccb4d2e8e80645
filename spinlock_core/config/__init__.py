"""Config schema (pydantic) and YAML loading: experiments (``configs/experiments/``) and tokenizer
configs (``configs/vqvae/``)."""

from .experiment import ExperimentConfig
from .loading import ConfigError, load_config, load_experiment, load_tokenizer_config, load_yaml_model
from .parameters import KNOWN_PARAMETERS, ParameterSpace
from .tokenizer import TokenizerConfig

__all__ = [
    "ExperimentConfig",
    "TokenizerConfig",
    "ConfigError",
    "load_config",
    "load_experiment",
    "load_tokenizer_config",
    "load_yaml_model",
    "KNOWN_PARAMETERS",
    "ParameterSpace",
]
