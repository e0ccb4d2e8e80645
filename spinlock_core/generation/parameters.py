"""Stage 1: the experiment's parameter sample (unit cube) and its quality metrics."""

from __future__ import annotations

import numpy as np

from ..config.experiment import ExperimentConfig
from ..sampling import SamplingQuality, decode_params, sample_quality_for, sobol_points

__all__ = ["sample_parameters", "decoded_parameters"]


def sample_parameters(cfg: ExperimentConfig) -> tuple[np.ndarray, SamplingQuality]:
    """``parameters/params [N, P]`` float32 unit-cube values, and their quality metrics.

    The stored float32 values are the source of truth: every later stage decodes these rounded
    values, so an operator rebuilt from the file is the one that was simulated.
    """
    s = cfg.sampling
    unit = sobol_points(
        s.total_samples,
        cfg.parameter_space.dim,
        seed=cfg.root_seed,
        scramble=s.sobol.scramble,
        scramble_method=s.sobol.scramble_method,
    ).astype(np.float32)
    return unit, sample_quality_for(unit, cfg)


def decoded_parameters(unit: np.ndarray, cfg: ExperimentConfig) -> dict[str, np.ndarray]:
    """``{name: values [n]}`` decoded from stored unit values ``[n, P]``."""
    return decode_params(np.asarray(unit, dtype=np.float64), cfg.parameter_space)
