"""The experiment YAML as pydantic models (strict: unknown keys are rejected with their path).

Top-level sections: ``version``, ``metadata``, ``parameter_space``, ``sampling``, ``simulation``,
``dataset``, ``features`` (see ``configs/experiments/100k_full_features.yaml``), and optionally
``tokenizer: {config: PATH}``, the tokenizer config trained on this experiment's data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from .batching import BatchingConfig
from .orchestration import OrchestrationConfig
from .ic_variants import variant_problems
from .parameter_rules import grid_size_problem
from .parameters import PARAMETER_GROUPS, ParameterSpace
from .problems import problem, raise_problems

__all__ = [
    "ExperimentConfig",
    "Metadata",
    "SamplingConfig",
    "SimulationConfig",
    "InputGeneration",
    "DatasetConfig",
    "StorageConfig",
    "FeaturesConfig",
    "TokenizerRef",
]

_STRICT = ConfigDict(extra="forbid")


#: the features are defined for exactly this many channels (cross-channel pairs (0,1), (0,2), (1,2))
NUM_CHANNELS = 3
#: The experiment name names its data folder and generated files (at most 255 bytes each on common
#: file systems, with a prefix added) and prefixes its Dagster asset keys (op names: [A-Za-z0-9_]).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_]+$")
NAME_MAX = 200


def _only(field: str, implemented: str, why: str):
    """A ``before`` validator accepting only ``implemented`` for ``field``, saying why otherwise."""

    def check(cls, v):
        if v != implemented:
            raise ValueError(f"only {implemented!r} is implemented ({why}); got {v!r}")
        return v

    return field_validator(field, mode="before")(classmethod(check))


class Metadata(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1)
    description: str = ""
    author: str | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_PATTERN.match(v):
            raise ValueError(
                f"use only letters, digits and '_' (the name is a folder name and the prefix of the "
                f"experiment's Dagster asset keys, whose op names allow only [A-Za-z0-9_]); got {v!r}"
            )
        if len(v) > NAME_MAX:
            raise ValueError(f"at most {NAME_MAX} characters (it becomes a folder and file name), got {len(v)}")
        return v


class SobolConfig(BaseModel):
    model_config = _STRICT
    scramble: bool = True
    seed: int = Field(default=0, ge=0)
    #: ``lms`` = scipy's default (linear matrix scramble + digital shift); ``owen`` adds
    #: nested-uniform (hash-based Owen) scrambling on top, so it needs ``scramble: true``.
    scramble_method: Literal["lms", "owen"] = "lms"

    @model_validator(mode="after")
    def _owen_needs_scramble(self):
        if self.scramble_method == "owen" and not self.scramble:
            raise_problems("SobolConfig", [problem("scramble_method", (
                "'owen' adds nested-uniform scrambling on top of scipy's scrambled points, and scramble: false "
                "asks for the unscrambled sequence; set scramble: true, or scramble_method: lms"
            ), self.scramble_method)])
        return self


class StratificationConfig(BaseModel):
    model_config = _STRICT
    method: Literal["adaptive"] = "adaptive"
    num_strata_per_dim: int = Field(default=5, ge=1)
    min_samples_per_stratum: int = Field(default=1, ge=0)

    _method = _only(
        "method",
        "adaptive",
        "the Sobol points are used as drawn, and a sampling check requires each of the num_strata_per_dim "
        "equal strata of every dimension to hold min_samples_per_stratum points; another method would change nothing",
    )


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
    #: discrepancy is O(N^2 P): above this many points it is computed on the first 2^k <= this
    #: (a Sobol prefix keeps its structure; a random subsample would not); ~3 s at 16,384 in 12-D
    discrepancy_points: int = Field(default=16_384, ge=16)
    #: CD^2 / (its i.i.d. expectation) allowed on the prefix and on every shard block
    max_discrepancy_ratio: float = Field(default=0.5, gt=0)
    #: point sets (prefix, shard blocks) smaller than this are reported but not judged by the ratio
    discrepancy_min_points: int = Field(default=128, ge=2)


class SamplingConfig(BaseModel):
    model_config = _STRICT
    strategy: Literal["sobol_stratified"] = "sobol_stratified"
    sobol: SobolConfig = Field(default_factory=SobolConfig)
    stratification: StratificationConfig = Field(default_factory=StratificationConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    total_samples: int = Field(gt=0)
    #: operators per rollout batch
    batch_size: int = Field(default=8, ge=1)

    _strategy = _only(
        "strategy",
        "sobol_stratified",
        "scrambled Sobol points with the stratum-coverage check of sampling.stratification; "
        "to skip that check set sampling.validation.check_stratification: false",
    )


class InputGeneration(BaseModel):
    """``method``, ``ic_type_weights`` and one block per IC variant (any other key).

    Every variant named in the weights is resolved to a registered generator (from the block's
    ``type``, its name, or its fields), and every block present must be named in the weights:
    nothing is silently ignored. Every problem is reported, each at its own key.
    """

    model_config = ConfigDict(extra="allow")
    #: only "sampled" is implemented (checked with the variants, so that a wrong method hides none
    #: of their problems)
    method: str = "sampled"
    ic_type_weights: dict[str, float] = Field(min_length=1)

    @model_validator(mode="after")
    def _variants(self):
        problems = []
        if self.method != "sampled":
            problems.append(problem("method", (
                "only 'sampled' is implemented (each operator's IC variant is drawn from ic_type_weights "
                f"and its field generated from the variant's block); got {self.method!r}"
            ), self.method))
        problems += variant_problems(self.ic_type_weights, self.variant_blocks())
        raise_problems("InputGeneration", problems)
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
    #: float32 (TF32 off on CUDA); tf32 / float16 on CUDA only; bfloat16 autocast on CUDA or on a
    #: CPU with bf16 instructions (a logged opt-in: benchmarks/rollout.py reports its field drift)
    precision: Literal["float32", "tf32", "bfloat16", "float16"] = "float32"
    #: operators per rollout call (see spinlock_core/config/batching.py)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    input_generation: InputGeneration
    num_realizations: int = Field(ge=1)
    #: stored states T, the initial condition included: T - 1 operator applications
    num_timesteps: int = Field(ge=1)
    num_channels: int = 3
    #: used when ``grid_size`` is not a sampled parameter
    grid_size: int | None = None
    #: |u| above this (or a non-finite value) stops the operator's rollout and marks it diverged
    divergence_threshold: float = Field(default=1.0e4, gt=0)
    #: period (in steps) of the ``periodic`` noise schedule
    noise_period: int = Field(default=32, ge=2)
    #: defaults for evolution constants that are not sampled
    dt: float = Field(default=0.01, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1)

    @field_validator("num_channels")
    @classmethod
    def _channels(cls, v: int) -> int:
        if v != NUM_CHANNELS:
            raise ValueError(
                f"must be {NUM_CHANNELS}: the features are defined for 3 channels (the cross-channel "
                f"features use the pairs (0,1), (0,2), (1,2)); got {v}"
            )
        return v

    @field_validator("grid_size")
    @classmethod
    def _grid(cls, v: int | None) -> int | None:
        if v is not None and (reason := grid_size_problem(v)):
            raise ValueError(reason)
        return v

    @model_validator(mode="after")
    def _precision(self):
        if self.precision in ("tf32", "float16") and self.device == "cpu":
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


class TokenizerRef(BaseModel):
    """``tokenizer: {config: PATH}``: the tokenizer YAML (``configs/vqvae/``) for this experiment.

    ``PATH`` is resolved relative to the experiment YAML's folder, then to the repository root
    (``configs/vqvae/demo.yaml`` works from any experiment file); the file is loaded and validated
    with the experiment, and its problems are reported at ``tokenizer.config`` as
    ``TOKENIZER_FILE: field.path: reason``. After validation :attr:`path` is the resolved file and
    :attr:`loaded` its :class:`~spinlock_core.config.tokenizer.TokenizerConfig`.
    """

    model_config = _STRICT
    config: str = Field(min_length=1)
    _path: Path | None = PrivateAttr(default=None)
    _loaded: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _load(self, info: ValidationInfo):
        from .loading import ConfigError, load_tokenizer_config, resolve_config_path

        source = (info.context or {}).get("source")
        path, tried = resolve_config_path(self.config, Path(source) if source is not None else None)
        if path is None:
            raise_problems("TokenizerRef", [problem("config", (
                f"tokenizer config {self.config!r} not found (looked for {', '.join(map(str, tried))})"
            ), self.config)])
        try:
            self._loaded = load_tokenizer_config(path)
        except ConfigError as e:
            raise_problems("TokenizerRef", [
                problem("config", f"{path}: {loc}: {msg}" if loc else f"{path}: {msg}", self.config)
                for loc, msg in e.problems
            ])
        self._path = path
        return self

    @property
    def path(self) -> Path:
        """The resolved tokenizer YAML."""
        return self._path

    @property
    def loaded(self):
        """The validated tokenizer config (:class:`~spinlock_core.config.tokenizer.TokenizerConfig`)."""
        return self._loaded


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
    tokenizer: TokenizerRef | None = None
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)

    @field_validator("tokenizer", mode="before")
    @classmethod
    def _tokenizer_form(cls, v):
        if isinstance(v, (str, Path)):
            raise ValueError(f"write it as a mapping, tokenizer: {{config: {str(v)!r}}}")
        return v

    @model_validator(mode="after")
    def _cross(self):
        # per-parameter and per-section rules live in their sections (so they are reported even
        # when another section fails); here only what needs two sections
        problems = []
        space = self.parameter_space
        group = next((g for g in PARAMETER_GROUPS if "grid_size" in getattr(space, g)), None)
        sim_grid = self.simulation.grid_size
        if group is None and sim_grid is None:
            problems.append(problem(("simulation", "grid_size"), "required when grid_size is not in parameter_space"))
        elif group is not None and sim_grid is not None and sim_grid != (grid := getattr(space, group)["grid_size"].choices[0]):
            problems.append(problem(("simulation", "grid_size"), (
                f"{sim_grid} would be ignored: parameter_space.{group}.grid_size ({grid}) sets the grid; remove one"
            ), sim_grid))
        if self.tokenizer is not None:
            enabled = {name: fam.enabled for name, fam in self.features}
            for loc, msg in self.tokenizer.loaded.dataset_problems(enabled, self.simulation.num_timesteps):
                problems.append(problem(("tokenizer", "config"), f"{self.tokenizer.path}: {loc}: {msg}", self.tokenizer.config))
        raise_problems("ExperimentConfig", problems)
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
