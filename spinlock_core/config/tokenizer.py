"""The tokenizer YAML (``configs/vqvae/``) as pydantic models, strict like the experiment YAML.

Top-level sections (the seed's shape, ``seeds/002``, plus ``cleaning``):

- ``families``: feature family -> encoder. Each cleaned family passes through its encoder
  (identity, or one pre-trained as an autoencoder of that family and then frozen); the outputs are
  concatenated in YAML order (SPEC 8).
- ``cleaning``: the SPEC 8 cleaning rules and the train/validation split.
- ``model``: categories and the categorical hierarchical VQ-VAE (SPEC 9).
- ``training``: optimizer steps (not epochs), loss weights, validation and the blocking check.

Where this differs from the seed: training length and validation are in optimizer steps
(``num_epochs`` / ``val_every_n_epochs`` are refused with a message saying so);
``category_assignment`` lives in ``model``; SUMMARY reads the ``_mean`` block by default.

Every problem of a file is reported in one run (see :mod:`.problems`); load with
:func:`spinlock_core.config.load_tokenizer_config`.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .problems import problem, raise_problems, relocated

__all__ = [
    "FAMILY_NAMES",
    "ENCODERS",
    "TokenizerConfig",
    "CleaningConfig",
    "VQModelConfig",
    "TrainingConfig",
    "auto_codebook_sizes",
]

_STRICT = ConfigDict(extra="forbid")
PosInt = Annotated[int, Field(gt=0)]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
Activation = Literal["relu", "gelu", "silu", "tanh", "elu"]

#: the number of quantizer levels of every category (SPEC 9)
NUM_LEVELS = 3
#: a code is expected ``batch_size / K`` times per batch; ``threshold_ema_dead_code`` must stay at or
#: below this fraction of that, so that codes in use are not expired
DEAD_CODE_FRACTION = 0.25


def _closest(name: str, candidates) -> str:
    """``"; did you mean 'X'?"`` for a close or abbreviated name (``MLP`` -> ``MLPEncoder``), else ``""``."""
    hits = [c for c in candidates if name and c.lower().startswith(name.lower())]
    hits = hits or difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {hits[0]!r}?" if hits else ""


def _unique_nonempty(v: list, what: str) -> list:
    if not v:
        raise ValueError(f"name at least one {what}")
    if len(set(v)) != len(v):
        raise ValueError(f"duplicate values in {v}")
    return v


# --- encoders -----------------------------------------------------------------------------------

class _EncoderParams(BaseModel):
    model_config = _STRICT
    #: "vector" reads one row per operator [N, D]; "sequence" reads [N, T, 63]
    reads: ClassVar[str] = "vector"
    #: whether the encoder has weights (pre-trained as an autoencoder of its family, then frozen)
    trained: ClassVar[bool] = False


class IdentityParams(_EncoderParams):
    """The cleaned columns themselves (categories stay readable)."""


class MLPParams(_EncoderParams):
    trained: ClassVar[bool] = True
    hidden_dims: list[PosInt] = Field(default_factory=lambda: [512, 256])
    output_dim: PosInt = 128
    dropout: float = Field(default=0.0, ge=0, lt=1)
    activation: Activation = "relu"
    batch_norm: bool = False


class TemporalCNNParams(_EncoderParams):
    reads: ClassVar[str] = "sequence"
    trained: ClassVar[bool] = True
    embedding_dim: PosInt = 128
    #: ``resnet1d_<blocks>``: a 1-D ResNet over the states with that many residual blocks
    architecture: str = "resnet1d_3"
    hidden_channels: PosInt = 64
    kernel_size: PosInt = 5

    @field_validator("architecture")
    @classmethod
    def _arch(cls, v: str) -> str:
        m = re.fullmatch(r"resnet1d_(\d+)", v)
        if not m or not 1 <= int(m.group(1)) <= 8:
            raise ValueError(f"use 'resnet1d_<blocks>' with 1 to 8 residual blocks, e.g. 'resnet1d_3'; got {v!r}")
        return v

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd (same-length convolutions over the states), got {v}")
        return v


class PooledIdentityParams(_EncoderParams):
    """Statistics of every TEMPORAL column over the selected states: ``[N, 63 * len(statistics)]``,
    column ``<feature>_<statistic>``; ``slope`` is the least-squares slope per state."""

    reads: ClassVar[str] = "sequence"
    statistics: list[Literal["mean", "std", "min", "max", "final", "slope"]] = Field(
        default_factory=lambda: ["mean", "std"]
    )

    @field_validator("statistics")
    @classmethod
    def _stats(cls, v: list) -> list:
        return _unique_nonempty(v, "statistic")


#: encoder name (the seed's class names) -> its ``encoder_params`` model
ENCODERS: dict[str, type[_EncoderParams]] = {
    "IdentityEncoder": IdentityParams,
    "MLPEncoder": MLPParams,
    "TemporalCNNEncoder": TemporalCNNParams,
    "PooledIdentityEncoder": PooledIdentityParams,
}


# --- families -----------------------------------------------------------------------------------

class PretrainConfig(BaseModel):
    """Autoencoder pre-training of a family's encoder (then frozen)."""

    model_config = _STRICT
    steps: PosInt = 1000
    learning_rate: PosFloat = 1.0e-3
    #: None = ``training.batch_size``
    batch_size: PosInt | None = None


class StateRange(BaseModel):
    """TEMPORAL states read, as the Python slice ``[start:stop:stride]`` of the T stored states.
    The default skips state 0, the initial condition (described by the INITIAL family)."""

    model_config = _STRICT
    start: int = Field(default=1, ge=0)
    #: exclusive; None = T
    stop: PosInt | None = None
    stride: PosInt = 1

    @model_validator(mode="after")
    def _order(self):
        if self.stop is not None and self.stop <= self.start:
            raise_problems("StateRange", [problem("stop", f"must exceed start ({self.start}), got {self.stop}", self.stop)])
        return self

    def count(self, num_timesteps: int) -> int:
        """How many of ``num_timesteps`` states the range selects."""
        return len(range(num_timesteps)[self.start:self.stop:self.stride])


class _Family(BaseModel):
    model_config = _STRICT
    NAME: ClassVar[str]
    #: what the raw family is, for messages
    SHAPE: ClassVar[str]
    READS: ClassVar[str] = "vector"

    encoder: str
    #: validated against ``ENCODERS[encoder]``; a model of that type after validation
    encoder_params: Any = Field(default_factory=dict, validate_default=True)
    #: only for trained encoders (default settings when omitted); None for the others
    pretrain: PretrainConfig | None = None

    # field validators (not one model validator), so that a problem elsewhere in the family hides
    # none of the encoder's; ``encoder`` is declared first, so its value is in ``info.data``
    @field_validator("encoder")
    @classmethod
    def _encoder(cls, v: str) -> str:
        params_model = ENCODERS.get(v)
        if params_model is None:
            raise ValueError(f"unknown encoder {v!r}; known: {', '.join(ENCODERS)}{_closest(v, ENCODERS)}")
        if params_model.reads != cls.READS:
            fit = " or ".join(n for n, m in ENCODERS.items() if m.reads == cls.READS)
            what = "one row per operator" if params_model.reads == "vector" else "a sequence of states"
            raise ValueError(f"{v} reads {what}, but {cls.NAME} features are {cls.SHAPE}; use {fit}")
        return v

    @field_validator("encoder_params")
    @classmethod
    def _params(cls, v: Any, info: ValidationInfo):
        params_model = ENCODERS.get(info.data.get("encoder", ""))
        if params_model is None:  # the encoder is reported; its params cannot be judged
            return v
        try:
            return params_model.model_validate({} if v is None else v)
        except ValidationError as e:
            allowed = ", ".join(params_model.model_fields) or "none"
            problems = []
            for d in relocated(e):
                if d["type"].type == "extra_forbidden":
                    d = problem(d["loc"], f"unknown key for {info.data['encoder']} (allowed: {allowed})", d["input"])
                problems.append(d)
            raise_problems("encoder_params", problems)

    @field_validator("pretrain")
    @classmethod
    def _pretrain(cls, v: PretrainConfig | None, info: ValidationInfo):
        enc = info.data.get("encoder")
        if v is not None and enc in ENCODERS and not ENCODERS[enc].trained:
            raise ValueError(f"{enc} has no weights to pre-train; pretrain would change nothing")
        return v

    @model_validator(mode="after")
    def _default_pretrain(self):
        if self.trained and self.pretrain is None:
            self.pretrain = PretrainConfig()
        return self

    @property
    def trained(self) -> bool:
        """Whether the encoder is pre-trained as an autoencoder of this family (then frozen)."""
        return ENCODERS[self.encoder].trained


class SummaryFamily(_Family):
    NAME: ClassVar[str] = "summary"
    SHAPE: ClassVar[str] = "one row per operator [N, 360] (aggregated)"
    #: blocks of ``features/summary/aggregated/features``; ``_std`` and ``_cv`` are unreliable with
    #: few realizations (SPEC 8: median reliability 0.48 at M = 3), hence mean only by default
    blocks: list[Literal["mean", "std", "cv"]] = Field(default_factory=lambda: ["mean"])

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, v: list) -> list:
        return _unique_nonempty(v, "block (mean, std, cv)")


class TemporalFamily(_Family):
    NAME: ClassVar[str] = "temporal"
    SHAPE: ClassVar[str] = "a sequence of states [N, T, 63]"
    READS: ClassVar[str] = "sequence"
    states: StateRange = Field(default_factory=StateRange)


class ArchitectureFamily(_Family):
    NAME: ClassVar[str] = "architecture"
    SHAPE: ClassVar[str] = "one row per operator [N, P]"


class InitialFamily(_Family):
    NAME: ClassVar[str] = "initial"
    SHAPE: ClassVar[str] = "one row per operator [N, 42]"


#: the project's feature families (``spinlock_core.features.families.FAMILIES``) -> their model
FAMILY_MODELS: dict[str, type[_Family]] = {
    m.NAME: m for m in (SummaryFamily, TemporalFamily, ArchitectureFamily, InitialFamily)
}
FAMILY_NAMES = tuple(FAMILY_MODELS)


# --- cleaning -----------------------------------------------------------------------------------

class SignedLogConfig(BaseModel):
    """Which columns get ``sign(x) * log1p(|x| / s)`` (s: the median |x| of the training rows; judged on the training rows).

    ``kurtosis``: excess kurtosis above ``threshold`` (normal 0, Laplace 3);
    ``quantile_ratio``: ``(q99 - q1) / (q75 - q25)`` above ``threshold`` (normal 3.45, Laplace 5.6);
    ``none``: no transform.
    """

    model_config = _STRICT
    rule: Literal["kurtosis", "quantile_ratio", "none"] = "kurtosis"
    threshold: PosFloat = 10.0


class CleaningConfig(BaseModel):
    """SPEC 8's cleaning, in its order; the split is drawn once and used by every later stage."""

    model_config = _STRICT
    signed_log: SignedLogConfig = Field(default_factory=SignedLogConfig)
    #: outliers capped at median +/- k * 1.4826 * MAD per column
    mad_cap_k: PosFloat = 5.0
    variance_floor: PosFloat = 1.0e-8
    #: 1 - mean jackknife variance / variance across operators; 0 keeps every column
    min_reliability: float = Field(default=0.8, ge=0, lt=1)
    #: one of every pair with |r| above this is dropped, judged per update-policy stratum
    duplicate_threshold: float = Field(default=0.99, gt=0, le=1)
    min_stratum_size: int = Field(default=30, ge=3)  # a correlation over two rows is always +-1
    #: |R_kk| < tol * |R_00| in the rank-revealing QR marks an exact linear combination
    linear_combination_tol: Fraction = 1.0e-6
    validation_fraction: Fraction = 0.1
    split_seed: int = Field(default=0, ge=0)


# --- model --------------------------------------------------------------------------------------

def auto_codebook_sizes(n: int, scale: int = 2) -> tuple[int, int, int]:
    """SPEC 9's codebook sizes for a category of ``n`` columns (one rule, in
    :func:`spinlock_core.tokenizer.categories.codebook_sizes`)."""
    from ..tokenizer.categories import codebook_sizes

    return codebook_sizes(n, scale)


DEFAULT_CODEBOOK_SCALE = 2
DEFAULT_DECAY = 0.99


class VQModelConfig(BaseModel):
    model_config = _STRICT
    #: "auto" = clamp(round(F / 10), 4, 25) for F cleaned columns (SPEC 8)
    num_categories: int | Literal["auto"] = "auto"
    #: "auto" = Ward linkage on sqrt(2 (1 - |r|)) between columns (SPEC 8)
    category_assignment: Literal["auto"] = "auto"
    #: clusters with fewer columns are merged into their most correlated neighbour
    min_category_size: PosInt = 3
    group_embedding_dim: PosInt = 256
    group_hidden_dim: PosInt = 512
    activation: Activation = "relu"
    #: [] = SPEC 9's rule from each category's column count; else codebook sizes of levels 0, 1, 2
    levels: list[int] = Field(default_factory=list)
    codebook_scale: PosInt = DEFAULT_CODEBOOK_SCALE
    commitment_cost: Weight = 0.25
    use_ema: bool = True
    decay: Fraction = DEFAULT_DECAY
    kmeans_init: bool = True
    #: codes whose EMA use per batch falls below this are re-seeded (0 = off)
    threshold_ema_dead_code: Weight = 1.0
    rotation_trick: bool = False
    #: hidden layers of the shared decoder (all quantized codes -> the cleaned vector)
    decoder_hidden_dims: list[PosInt] = Field(default_factory=lambda: [512, 512])

    @field_validator("num_categories", mode="before")
    @classmethod
    def _categories(cls, v):
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f"use 'auto' (clamp(round(F / 10), 4, 25)) or an integer >= 1, got {v!r}")

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[int]) -> list[int]:
        if v and len(v) != NUM_LEVELS:
            raise ValueError(
                f"give {NUM_LEVELS} codebook sizes (levels 0, 1, 2), or [] for SPEC 9's rule; got {len(v)}"
            )
        if bad := [k for k in v if k < 2]:
            raise ValueError(f"codebook sizes must be >= 2, got {bad}")
        return v

    @model_validator(mode="after")
    def _unused(self):
        problems = []
        # compared with the defaults (not "was it written") so that a dumped config loads again
        if self.levels and self.codebook_scale != DEFAULT_CODEBOOK_SCALE:
            problems.append(problem("codebook_scale", (
                "only scales SPEC 9's automatic sizes, and levels gives them explicitly; codebook_scale would "
                "change nothing"
            ), self.codebook_scale))
        if not self.use_ema and self.decay != DEFAULT_DECAY:
            problems.append(problem("decay", (
                "only applies to EMA codebooks (use_ema: true); decay would change nothing"
            ), self.decay))
        raise_problems("VQModelConfig", problems)
        return self

    def codebook_sizes(self, n: int) -> tuple[int, int, int]:
        """Codebook sizes of a category of ``n`` columns: ``levels`` or SPEC 9's rule."""
        return tuple(self.levels) if self.levels else auto_codebook_sizes(n, self.codebook_scale)

    @property
    def largest_codebook_lower_bound(self) -> int:
        """A lower bound on the largest codebook of any category (exact with explicit levels)."""
        return max(self.levels) if self.levels else auto_codebook_sizes(1, self.codebook_scale)[0]


# --- training -----------------------------------------------------------------------------------

def _refused(field: str, reason: str):
    """A field accepted only to be refused with ``reason`` (the seed's names for moved keys)."""

    def check(cls, v):
        raise ValueError(reason)

    return field_validator(field, mode="before")(classmethod(check))


def _refused_unless(field: str, implemented: str, why: str):
    """Accept only ``implemented`` for ``field``, saying why otherwise."""

    def check(cls, v):
        if v != implemented:
            raise ValueError(f"only {implemented!r} is implemented ({why}); got {v!r}")
        return v

    return field_validator(field, mode="before")(classmethod(check))


class TrainingConfig(BaseModel):
    model_config = _STRICT
    batch_size: PosInt = 512
    learning_rate: PosFloat = 1.0e-3
    optimizer: str = "adam"
    #: optimizer steps; the learning rate warms up linearly, then decays to 0 on a cosine
    max_steps: PosInt = 6000
    warmup_steps: int = Field(default=0, ge=0)
    val_every_steps: PosInt = 100
    #: validation rounds without improvement of the validation loss before stopping (0 = never)
    early_stopping_patience: int = Field(default=0, ge=0)
    reconstruction_weight: PosFloat = 1.0
    vq_weight: Weight = 1.0
    orthogonality_weight: Weight = 0.1
    informativeness_weight: Weight = 0.1
    topo_weight: Weight = 0.3
    #: rows of a batch used by the topographic term (None = the whole batch)
    topo_samples: int | None = Field(default=None, ge=3)  # two rows give one distance: no correlation
    #: rows of a batch used by the orthogonality term (None = min(batch_size, 256)); its cost grows
    #: with the square of the rows, and its sampling floor 1/sqrt(rows) must stay below orthogonality_target
    orthogonality_samples: int | None = Field(default=None, ge=3)
    #: mean |r| between category centroids that the orthogonality term aims under
    orthogonality_target: Fraction = 0.15
    #: optimizer steps between re-seeding of codes unused since the last reset (0 = off)
    dead_code_reset_interval: int = Field(default=500, ge=0)
    use_torch_compile: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = Field(default=0, ge=0)
    #: the blocking check on the validation split (SPEC 9 metrics)
    min_val_quality: float = Field(default=0.85, ge=0, le=1)
    min_val_utilization: float = Field(default=0.25, ge=0, le=1)

    # the seed's keys that do not fit a step-based schedule, refused with where to go instead
    num_epochs: Any = Field(default=None, exclude=True)
    val_every_n_epochs: Any = Field(default=None, exclude=True)
    category_assignment: Any = Field(default=None, exclude=True)
    _epochs = _refused("num_epochs", (
        "training length is given in optimizer steps so that it does not depend on N (SPEC 9); use max_steps "
        "(one epoch is ceil(N_train / batch_size) steps: the seed's 200 epochs with 90,000 training rows "
        "and batch 512 were 35,200 steps)"
    ))
    _optimizer = _refused_unless("optimizer", "adam", "the seed's optimizer; the trainer builds no other")
    _val_epochs = _refused("val_every_n_epochs", "validation is scheduled in optimizer steps; use val_every_steps")
    _assignment = _refused("category_assignment", "set it in model.category_assignment")

    @model_validator(mode="after")
    def _schedule(self):
        problems = []
        if self.warmup_steps >= self.max_steps:
            problems.append(problem("warmup_steps", f"must be below max_steps ({self.max_steps}), got {self.warmup_steps}",
                                    self.warmup_steps))
        for name in ("val_every_steps", "dead_code_reset_interval"):
            v = getattr(self, name)
            if v > self.max_steps:
                problems.append(problem(name, f"{v} exceeds max_steps ({self.max_steps}): it would never run", v))
        for name in ("topo_samples", "orthogonality_samples"):
            v = getattr(self, name)
            if v is not None and v > self.batch_size:
                problems.append(problem(name, (
                    f"rows are drawn from one batch: at most batch_size ({self.batch_size}), got {v}"
                ), v))
        raise_problems("TrainingConfig", problems)
        return self


# --- the file -----------------------------------------------------------------------------------

class TokenizerConfig(BaseModel):
    """A whole tokenizer config. Load with :func:`spinlock_core.config.load_tokenizer_config`."""

    model_config = _STRICT
    #: family name -> its settings (``SummaryFamily``, ``TemporalFamily``, ...), in YAML order
    families: dict[str, Any]
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    model: VQModelConfig = Field(default_factory=VQModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @field_validator("families")
    @classmethod
    def _families(cls, v: dict) -> dict:
        if not v:
            raise ValueError(f"name at least one feature family ({', '.join(FAMILY_NAMES)})")
        out, problems = {}, []
        for name, block in v.items():
            model = FAMILY_MODELS.get(name)
            if model is None:
                problems.append(problem(name, (
                    f"unknown feature family {name!r}; known: {', '.join(FAMILY_NAMES)}{_closest(str(name), FAMILY_NAMES)}"
                )))
                continue
            try:
                out[name] = model.model_validate(block)
            except ValidationError as e:
                problems += relocated(e, (name,))
        raise_problems("families", problems)
        return out

    @model_validator(mode="after")
    def _cross(self):
        problems = []
        t, b, k = self.model.threshold_ema_dead_code, self.training.batch_size, self.model.largest_codebook_lower_bound
        limit = DEAD_CODE_FRACTION * b / k
        if t > limit:
            which = "the largest of levels" if self.model.levels else (
                "the smallest possible level-0 size with levels: [], 15 * codebook_scale"
            )
            problems.append(problem(("model", "threshold_ema_dead_code"), (
                f"must be well below batch_size / K, the expected uses of a code per batch, or codes in use are "
                f"expired: at most {DEAD_CODE_FRACTION} * {b} / {k} = {limit:.3g} (K = {k}, {which}); got {t}"
            ), t))
        raise_problems("TokenizerConfig", problems)
        return self

    def dataset_problems(self, enabled: dict[str, bool], num_timesteps: int) -> list[tuple[str, str]]:
        """``[(field.path, reason)]`` for a dataset whose families are ``enabled`` (family -> computed)
        and which stores ``num_timesteps`` states; empty when this config can train on it."""
        out = []
        for name, fam in self.families.items():
            if not enabled.get(name, False):
                out.append((f"families.{name}", "the experiment does not compute this family "
                                                f"(features.{name}.enabled is false)"))
            if isinstance(fam, TemporalFamily) and fam.states.count(num_timesteps) == 0:
                out.append((f"families.{name}.states", f"selects none of the experiment's {num_timesteps} states "
                                                       "(simulation.num_timesteps)"))
        return out
