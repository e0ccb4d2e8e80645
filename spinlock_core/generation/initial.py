"""Stage 2: IC types (balanced over the weights) and the initial-condition fields of a shard."""

from __future__ import annotations

import numpy as np

from ..config.experiment import ExperimentConfig
from ..sampling import assign_labels
from ..seeding import numpy_generator

__all__ = ["ic_weights_by_family", "ic_families", "ic_types_for", "initial_conditions_for"]


def ic_families(cfg: ExperimentConfig) -> dict[str, str]:
    """``{variant: family}``: the family is the variant's base generator name."""
    return {name: gen.name for name, (gen, _) in cfg.simulation.input_generation.resolved().items()}


def ic_weights_by_family(cfg: ExperimentConfig) -> dict[str, float]:
    """IC weights reordered so the variants of one family are adjacent (family fractions are then
    balanced as tightly as the variants')."""
    fam = ic_families(cfg)
    order = list(dict.fromkeys(fam.values()))
    w = cfg.simulation.input_generation.ic_type_weights
    return {v: w[v] for f in order for v in w if fam[v] == f}


def ic_types_for(cfg: ExperimentConfig, indices: np.ndarray) -> np.ndarray:
    """IC variant names ``[n]`` for global operator ``indices``."""
    return assign_labels(ic_weights_by_family(cfg), np.asarray(indices), seed=cfg.root_seed)


def initial_conditions_for(cfg: ExperimentConfig, indices: np.ndarray, ic_types: np.ndarray) -> np.ndarray:
    """Fields ``[n, C, H, W]`` float32; operator ``i`` draws from ``(root, "ic", i)``."""
    resolved = cfg.simulation.input_generation.resolved()
    c, h = cfg.simulation.num_channels, cfg.grid_size
    out = np.empty((len(indices), c, h, h), dtype=np.float32)
    for j, (i, name) in enumerate(zip(indices, ic_types)):
        gen, params = resolved[str(name)]
        out[j] = gen.generate(params, h, c, numpy_generator(cfg.root_seed, "ic", int(i)))
    return out
