"""The experiment YAML as pydantic models (strict: unknown keys are rejected with their path).

Top-level sections: ``version``, ``metadata``, ``parameter_space``, ``sampling``, ``simulation``,
``dataset``, ``features`` (see ``configs/experiments/100k_full_features.yaml``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .parameters import ChoiceParam, ParameterSpace

__all__ = [
    "ExperimentConfig",
    "Metadata",
    "SamplingConfig",
    "SimulationConfig",
    "InputGeneration",
    "DatasetConfig",
    "StorageConfig",
    "FeaturesConfig",
]

_STRICT = ConfigDict(extra="forbid")


class Metadata(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    author: str | None = None
    tags: list[str] = Field(default_factory=list)


class SobolConfig(BaseModel):
    model_config = _STRICT
    scramble: bool = True
    seed: int = Field(default=0, ge=0)
    #: ``lms`` = scipy's default (linear matrix scramble + digital shift); ``owen`` adds
    #: nested-uniform (hash-based Owen) scrambling on top.
    scramble_method: Literal["lms", "owen"] = "lms"


class StratificationConfig(BaseModel):
    model_config = _STRICT
    method: Literal["adaptive", "uniform", "none"] = "adaptive"
    num_strata_per_dim: int = Field(default=5, ge=1)
    min_samples_per_stratum: int = Field(default=1, ge=0)


class ValidationConfig(BaseModel):
    model_config = _STRICT
    check_discrepancy: bool = True
    check_correlation: bool = True
    check_stratification: bool = True
    max_discrepancy: float = Field(default=0.01, gt=0)
    max_correlation: float = Field(default=0.05, gt=0)
    #: allowed |realised - configured| fraction of IC types, families and policies; default
    #: 1 percentage point, widened to 3 counts for small N (see sampling.balance_tolerance)
    balance_tolerance: float | None = Field(default=None, ge=0)
    #: discrepancy is O(N^2): computed on a deterministic subsample of at most this many points
    discrepancy_subsample: int = Field(default=10_000, ge=16)


class SamplingConfig(BaseModel):
    model_config = _STRICT
    strategy: Literal["sobol", "sobol_stratified"] = "sobol_stratified"
    sobol: SobolConfig = Field(default_factory=SobolConfig)
    stratification: StratificationConfig = Field(default_factory=StratificationConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    total_samples: int = Field(gt=0)
    #: operators per rollout batch
    batch_size: int = Field(default=8, ge=1)


class InputGeneration(BaseModel):
    """``method``, ``ic_type_weights`` and one block per IC variant (any other key).

    Every variant named in the weights is resolved to a registered generator (from the block's
    ``type``, its name, or its fields), and every block present must be named in the weights:
    nothing is silently ignored.
    """

    model_config = ConfigDict(extra="allow")
    method: Literal["sampled"] = "sampled"
    ic_type_weights: dict[str, float] = Field(min_length=1)

    @model_validator(mode="after")
    def _variants(self):
        from ..initial_conditions.registry import resolve_variant

        weights = self.ic_type_weights
        for name, w in weights.items():
            if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
                raise ValueError(f"ic_type_weights.{name}: weight must be finite and >= 0, got {w}")
        total = sum(weights.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"ic_type_weights: weights must sum to 1 (within 1e-6), got {total:.8g}")
        blocks = self.variant_blocks()
        for name in blocks:
            if name not in weights:
                raise ValueError(
                    f"{name}: IC variant block has no entry in ic_type_weights (it would be ignored)"
                )
        for name in weights:
            block = blocks.get(name)
            if block is not None and not isinstance(block, dict):
                raise ValueError(f"{name}: IC variant block must be a mapping, got {type(block).__name__}")
            resolve_variant(name, block)
        return self

    def variant_blocks(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def resolved(self):
        """``{variant: (generator, params)}`` in weight order."""
        from ..initial_conditions.registry import resolve_variant

        blocks = self.variant_blocks()
        return {n: resolve_variant(n, blocks.get(n)) for n in self.ic_type_weights}


class SimulationConfig(BaseModel):
    model_config = _STRICT
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: float32 (TF32 off on CUDA), or tf32 / bfloat16 / float16 on CUDA only
    precision: Literal["float32", "tf32", "bfloat16", "float16"] = "float32"
    input_generation: InputGeneration
    num_realizations: int = Field(ge=1)
    num_timesteps: int = Field(ge=1)
    num_channels: int = Field(default=3, ge=1)
    #: used when ``grid_size`` is not a sampled parameter
    grid_size: int | None = Field(default=None, ge=4)
    #: |u| above this (or a non-finite value) stops the operator's rollout and marks it diverged
    divergence_threshold: float = Field(default=1.0e4, gt=0)
    #: period (in steps) of the ``periodic`` noise schedule
    noise_period: int = Field(default=32, ge=2)
    #: defaults for evolution constants that are not sampled
    dt: float = Field(default=0.01, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _precision(self):
        if self.precision != "float32" and self.device == "cpu":
            raise ValueError(
                f"precision: {self.precision} is only supported on CUDA; device is 'cpu'"
            )
        return self


class StorageConfig(BaseModel):
    model_config = _STRICT
    compression: Literal["gzip", "lzf", "none"] = "gzip"
    compression_level: int = Field(default=4, ge=0, le=9)
    #: operators per HDF5 chunk along the N axis
    chunk_size: int = Field(default=32, ge=1)
    #: operators per partition (one HDF5 shard each)
    shard_size: int = Field(default=1024, ge=1)
    store_trajectories: bool = False


class DatasetConfig(BaseModel):
    model_config = _STRICT
    output_path: str = Field(min_length=1)
    storage: StorageConfig = Field(default_factory=StorageConfig)


class _Family(BaseModel):
    model_config = _STRICT
    enabled: bool = True


class SummaryFeatures(_Family):
    extract_operator_features: bool = False


class InitialFeatures(_Family):
    enabled: bool = False


class FeaturesConfig(BaseModel):
    model_config = _STRICT
    temporal: _Family = Field(default_factory=_Family)
    summary: SummaryFeatures = Field(default_factory=SummaryFeatures)
    architecture: _Family = Field(default_factory=_Family)
    initial: InitialFeatures = Field(default_factory=InitialFeatures)


class ExperimentConfig(BaseModel):
    """A whole experiment. Load with :func:`spinlock_core.config.load_experiment`."""

    model_config = _STRICT
    version: str = "1.0"
    metadata: Metadata
    parameter_space: ParameterSpace
    sampling: SamplingConfig
    simulation: SimulationConfig
    dataset: DatasetConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)

    @model_validator(mode="after")
    def _cross(self):
        specs = dict(self.parameter_space.ordered())
        grid = specs.get("grid_size")
        if grid is not None:
            if not isinstance(grid, ChoiceParam) or len(grid.choices) != 1:
                raise ValueError(
                    "parameter_space.grid_size: one dataset holds one grid size; use a choice with "
                    "a single value (run one experiment per grid size)"
                )
            if not isinstance(grid.choices[0], int) or grid.choices[0] < 4:
                raise ValueError(f"parameter_space.grid_size: must be an integer >= 4, got {grid.choices[0]}")
        elif self.simulation.grid_size is None:
            raise ValueError("simulation.grid_size: required when grid_size is not in parameter_space")
        for name, allowed in _CHOICE_VALUES.items():
            spec = specs.get(name)
            if spec is None:
                continue
            if not isinstance(spec, ChoiceParam):
                raise ValueError(f"parameter_space.{name}: must be a choice")
            bad = [c for c in spec.choices if c not in allowed]
            if bad:
                raise ValueError(
                    f"parameter_space.{name}: unknown value(s) {bad}; known: {sorted(allowed)}"
                )
        checks = {
            "num_layers": (1, 16),
            "base_channels": (1, 1024),
            "kernel_size": (1, 31),
        }
        for name, (lo, hi) in checks.items():
            spec = specs.get(name)
            if spec is None:
                continue
            if name == "kernel_size" and not isinstance(spec, ChoiceParam) and spec.bounds[0] != spec.bounds[1]:
                raise ValueError("parameter_space.kernel_size: use a choice of odd sizes (an integer range would give even kernels)")
            values = spec.choices if isinstance(spec, ChoiceParam) else list(getattr(spec, "bounds", []))
            for v in values:
                if not isinstance(v, int) or not lo <= v <= hi:
                    raise ValueError(f"parameter_space.{name}: values must be integers in [{lo}, {hi}], got {v}")
                if name == "kernel_size" and v % 2 == 0:
                    raise ValueError(f"parameter_space.kernel_size: kernel sizes must be odd, got {v}")
        for name, (lo, hi) in {"dropout_rate": (0.0, 0.95), "alpha": (0.0, 1.0), "spatial_correlation": (0.0, 1.0)}.items():
            spec = specs.get(name)
            if spec is not None and hasattr(spec, "bounds") and not (lo <= spec.bounds[0] and spec.bounds[1] <= hi):
                raise ValueError(f"parameter_space.{name}: bounds must lie in [{lo}, {hi}], got {list(spec.bounds)}")
        for name in ("noise_scale", "dt"):
            spec = specs.get(name)
            if spec is not None and hasattr(spec, "bounds") and spec.bounds[0] < 0:
                raise ValueError(f"parameter_space.{name}: bounds must be >= 0, got {list(spec.bounds)}")
        return self

    @property
    def grid_size(self) -> int:
        spec = dict(self.parameter_space.ordered()).get("grid_size")
        return int(spec.choices[0]) if spec is not None else int(self.simulation.grid_size)

    @property
    def root_seed(self) -> int:
        return int(self.sampling.sobol.seed)

    @property
    def num_shards(self) -> int:
        n, s = self.sampling.total_samples, self.dataset.storage.shard_size
        return (n + s - 1) // s

    def shard_range(self, shard: int) -> tuple[int, int]:
        """Global operator indices ``[start, stop)`` of shard ``shard``."""
        if not 0 <= shard < self.num_shards:
            raise ValueError(f"shard {shard} out of range [0, {self.num_shards})")
        s = self.dataset.storage.shard_size
        return shard * s, min((shard + 1) * s, self.sampling.total_samples)


_CHOICE_VALUES: dict[str, set] = {
    "activation": {"gelu", "relu", "tanh", "silu", "elu", "leaky_relu", "sigmoid", "softplus"},
    "normalization": {"instance", "layer", "none"},
    "noise_type": {"gaussian", "laplace", "uniform"},
    "noise_schedule": {"constant", "annealing", "periodic"},
    "update_policy": {"residual", "convex", "autoregressive"},
    "padding_mode": {"circular", "reflect", "replicate", "zeros"},
}
