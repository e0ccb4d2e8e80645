"""From a dataset to the tokenizer's input matrix (SPEC 8): clean each family, pass it through its
encoder, concatenate, z-score.

:func:`fit_feature_pipeline` fits every step on the training rows (the training split minus
diverged operators) and returns the fitted :class:`FeaturePipeline` with the matrix of every row;
:meth:`FeaturePipeline.transform` applies the same steps to any other dataset or shard.

Families in the config's order. Per family:

* flat families (``summary``, ``architecture``, ``initial``): :func:`.cleaning.fit_cleaning` on the
  ``[N, F]`` matrix (SUMMARY with its per-realization values for the reliability filter);
* ``temporal`` ``[N, T, 63]``: the selected states ``[N, T', 63]`` are cleaned column-wise on
  pooled (operator, state) rows. The statistics are fitted on at most :data:`TEMPORAL_FIT_ROWS`
  such rows (every training operator, a seeded choice of its states), and the family is read
  :data:`TEMPORAL_CHUNK` operators at a time, so memory never grows with ``N x T``;
* the encoder: identity, a fixed pooling, or one pre-trained as an autoencoder of the cleaned
  family and then frozen (:mod:`.encoders`).

The outputs are concatenated and z-scored with the training rows' statistics; an encoder output
that is constant on the training rows is dropped (recorded in ``dropped``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..config.tokenizer import TemporalFamily, TokenizerConfig
from ..features.families import documented_nan
from ..seeding import numpy_generator, seed_int
from .cleaning import apply_cleaning, fit_cleaning
from .cleaning_spec import CleaningSpec
from .column_transforms import training_rows
from .data import FAMILY_PATHS, FeatureFile, TokenizerDataError
from .split import validation_mask

__all__ = ["TEMPORAL_FIT_ROWS", "TEMPORAL_CHUNK", "FamilyStage", "FeaturePipeline", "PreparedFeatures",
           "fit_feature_pipeline"]

log = logging.getLogger(__name__)

#: pooled (operator, state) rows on which the TEMPORAL cleaning statistics are fitted, at most
TEMPORAL_FIT_ROWS = 131_072
#: operators of TEMPORAL read at a time
TEMPORAL_CHUNK = 1024
#: sub-streams of the "tokenizer" seeding stage
SEED_PRETRAIN, SEED_TEMPORAL_FIT = 1, 4


@dataclass
class FamilyStage:
    """One fitted family: its cleaning, its (frozen) encoder and the names of its output columns."""

    name: str
    encoder_name: str
    cleaning: CleaningSpec
    encoder: object  # torch.nn.Module
    output_names: list[str]
    #: SUMMARY blocks read (``mean``, ...); empty for other families
    blocks: tuple[str, ...] = ()
    #: TEMPORAL states as (start, stop, stride); None for flat families
    states: tuple[int, int | None, int] | None = None
    #: the autoencoder pre-training record (trained encoders only)
    pretrain: dict | None = None

    @property
    def is_sequence(self) -> bool:
        return self.states is not None

    def state_slice(self) -> slice:
        return slice(*self.states)


@dataclass
class FeaturePipeline:
    """The fitted steps from raw families to the z-scored ``[N, F]`` tokenizer input."""

    families: list[FamilyStage]
    names: list[str]
    column_family: list[str]
    mean: np.ndarray
    std: np.ndarray
    #: encoder outputs dropped as constant on the training rows: (family, name, reason)
    dropped: list[tuple[str, str, str]] = field(default_factory=list)
    #: per kept column: index into the concatenated encoder outputs
    keep: np.ndarray | None = None
    #: reliability of each kept column (1 where no realization noise is stored to measure)
    reliabilities: np.ndarray | None = None

    @property
    def num_features(self) -> int:
        return len(self.names)

    def encode_family(self, source: FeatureFile, stage: FamilyStage, *, device="cpu") -> np.ndarray:
        """``[N, D]`` float32 outputs of one family's encoder on every row of ``source``."""
        from .encoders import encode_chunks

        if stage.is_sequence:
            chunks = lambda: (_clean_sequence(stage.cleaning, x)  # noqa: E731
                              for _, x in source.temporal_chunks(stage.state_slice(), TEMPORAL_CHUNK))
        else:
            raw, _ = source.matrix(stage.name, blocks=stage.blocks or ("mean",), expected=list(stage.cleaning.names))
            clean = apply_cleaning(stage.cleaning, raw).astype(np.float32)
            chunks = lambda: iter([clean])  # noqa: E731
        return encode_chunks(stage.encoder, chunks, device=device)

    def raw_outputs(self, source: FeatureFile, *, device="cpu") -> np.ndarray:
        """``[N, D_total]`` concatenated encoder outputs before the final z-score."""
        missing = [s.name for s in self.families if s.name not in source.families]
        if missing:
            raise TokenizerDataError(
                f"{source.path}: the tokenizer needs the {', '.join(missing)} famil{'y' if len(missing) == 1 else 'ies'}, "
                f"which this dataset does not hold (it holds: {', '.join(source.families) or 'no feature family'})"
            )
        return np.concatenate([self.encode_family(source, s, device=device) for s in self.families], axis=1)

    def transform(self, source: FeatureFile, *, device="cpu") -> np.ndarray:
        """``[N, F]`` float32 tokenizer input of every row of ``source``."""
        out = self.raw_outputs(source, device=device)
        return ((out[:, self.keep] - self.mean) / self.std).astype(np.float32)


@dataclass
class PreparedFeatures:
    """The fitted pipeline and the matrix of the dataset it was fitted on."""

    pipeline: FeaturePipeline
    #: ``[N, F]`` float32 z-scored input of every row
    x: np.ndarray
    #: ``[N]`` bool masks: the validation split; rows the statistics and training use
    val_mask: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    metadata: dict[str, np.ndarray]


def _clean_sequence(spec: CleaningSpec, x: np.ndarray) -> np.ndarray:
    """``[n, T', F] -> [n, T', F_kept]`` float32 with a spec fitted on pooled (operator, state) rows."""
    n, t, f = x.shape
    return apply_cleaning(spec, x.reshape(n * t, f)).reshape(n, t, -1).astype(np.float32)


def _cleaning_kwargs(cfg: TokenizerConfig) -> dict:
    """The config's cleaning section as :func:`fit_cleaning` keywords (the one mapping)."""
    c = cfg.cleaning
    return dict(
        heavy_tail_rule=c.signed_log.rule, heavy_tail_threshold=c.signed_log.threshold, mad_k=c.mad_cap_k,
        variance_floor=c.variance_floor, min_reliability=c.min_reliability,
        duplicate_threshold=c.duplicate_threshold, min_stratum=c.min_stratum_size,
        linear_tol=c.linear_combination_tol,
    )


def _fit_temporal_cleaning(source, fam: TemporalFamily, rows, policies, exp_cfg, cfg, seed) -> CleaningSpec:
    states = slice(fam.states.start, fam.states.stop, fam.states.stride)
    n_states = fam.states.count(source.temporal_shape()[1])
    per_op = int(np.clip(TEMPORAL_FIT_ROWS // max(1, rows.size), 1, n_states))
    rng = numpy_generator(seed, "tokenizer", SEED_TEMPORAL_FIT)
    blocks, strata = [], []
    for idx, x in source.temporal_chunks(states, TEMPORAL_CHUNK, rows=rows):
        pick = np.argsort(rng.random((idx.size, n_states)), axis=1)[:, :per_op]
        blocks.append(np.take_along_axis(x, pick[:, :, None], axis=1).reshape(-1, x.shape[2]))
        strata.append(np.repeat(policies[idx], per_op))
    pooled = np.concatenate(blocks)
    log.info("temporal: cleaning fitted on %d (operator, state) rows (%d states of each of %d operators)",
             pooled.shape[0], per_op, rows.size)
    kw = _cleaning_kwargs(cfg)
    kw["min_reliability"] = 0.0  # no per-realization values are stored for TEMPORAL
    return fit_cleaning(pooled, source.temporal_names(), strata=np.concatenate(strata),
                        documented_nan=documented_nan(FAMILY_PATHS["temporal"], exp_cfg), family="temporal", **kw)


def _fit_family(source, name, fam, cfg, exp_cfg, meta, train_mask, rows, val_rows, device, progress):
    from .encoders import build_decoder, build_encoder, pretrain_autoencoder

    seed = cfg.training.seed
    family_index = list(cfg.families).index(name)
    diverged = meta["diverged"]
    if isinstance(fam, TemporalFamily):
        spec = _fit_temporal_cleaning(source, fam, rows, meta["policies"], exp_cfg, cfg, seed)
        states = (fam.states.start, fam.states.stop, fam.states.stride)
        sl = slice(*states)
        n_states = fam.states.count(source.temporal_shape()[1])
        kept_names = list(spec.kept_names)
        train_chunks = lambda: (_clean_sequence(spec, x) for _, x in source.temporal_chunks(sl, TEMPORAL_CHUNK, rows=rows))  # noqa: E731
        val_chunks = lambda: (_clean_sequence(spec, x) for _, x in source.temporal_chunks(sl, TEMPORAL_CHUNK, rows=val_rows))  # noqa: E731
        blocks = ()
    else:
        blocks = tuple(getattr(fam, "blocks", ()))
        raw, names = source.matrix(name, blocks=blocks or ("mean",))
        extra = {}
        if name == "summary":
            per, per_names = source.per_realization()
            extra = dict(per_realization=per, per_realization_names=per_names)
            doc = np.concatenate([documented_nan(FAMILY_PATHS["summary"], exp_cfg).reshape(3, -1)[
                ("mean", "std", "cv").index(b)] for b in blocks])
        else:
            doc = documented_nan(FAMILY_PATHS[name], exp_cfg)
        spec = fit_cleaning(raw, names, train_mask=train_mask, diverged=diverged, documented_nan=doc,
                            strata=meta["policies"], family=name, **_cleaning_kwargs(cfg), **extra)
        clean = apply_cleaning(spec, raw).astype(np.float32)
        states, n_states, kept_names = None, None, list(spec.kept_names)
        train_chunks = lambda: iter([clean[rows]])  # noqa: E731
        val_chunks = lambda: iter([clean[val_rows]]) if val_rows.size else iter([])  # noqa: E731
    if not kept_names:
        raise TokenizerDataError(f"{source.path}: cleaning dropped every column of the {name} family; "
                                 f"see the dropped list: {[d.name for d in spec.dropped][:10]}")
    log.info("%s: %d of %d columns kept", name, len(kept_names), len(spec.names))
    enc_seed = seed_int(seed, "tokenizer", SEED_PRETRAIN, family_index)
    encoder = build_encoder(fam.encoder, fam.encoder_params, input_dim=len(kept_names), num_states=n_states,
                            feature_names=kept_names, name_prefix=f"{name}_", seed=enc_seed)
    record = None
    if fam.trained:
        p = fam.pretrain
        log.info("%s: pre-training %s as an autoencoder for %d steps", name, fam.encoder, p.steps)
        decoder = build_decoder(encoder, seed=enc_seed + 1)
        res = pretrain_autoencoder(encoder, decoder, train_chunks, steps=p.steps,
                                   batch_size=p.batch_size or cfg.training.batch_size, learning_rate=p.learning_rate,
                                   seed=enc_seed, device=device, val_chunks=val_chunks if val_rows.size else None,
                                   progress=None if progress is None else
                                   (lambda done, total: progress(done, total, {"stage": f"pretrain {name}"})))
        record = {"steps": p.steps, "learning_rate": p.learning_rate, "final_train_loss": res.final_train_loss,
                  "val_loss": res.val_loss, "seconds": res.seconds, "history": res.history}
        log.info("%s: encoder pre-trained (train MSE %.4f, validation MSE %s) and frozen", name,
                 res.final_train_loss, "n/a" if res.val_loss is None else f"{res.val_loss:.4f}")
    return FamilyStage(name=name, encoder_name=fam.encoder, cleaning=spec, encoder=encoder,
                       output_names=list(encoder.output_names(kept_names)), blocks=blocks, states=states,
                       pretrain=record)


def _output_reliabilities(stage: FamilyStage) -> np.ndarray:
    """Reliability of each output column: the cleaning's for an identity encoder, else 1 (an
    encoder mixes columns; only SUMMARY stores the realizations a reliability needs)."""
    n = len(stage.output_names)
    if stage.encoder_name != "IdentityEncoder":
        return np.ones(n)
    rel = [r for r, k in zip(stage.cleaning.reliabilities, stage.cleaning.kept) if k]
    return np.array([1.0 if r is None else r for r in rel])


def fit_feature_pipeline(source: FeatureFile | str, cfg: TokenizerConfig, *, device="cpu",
                         progress: Callable | None = None) -> PreparedFeatures:
    """Fit cleaning, encoders and the final z-score on ``source``'s training rows (module doc).

    Args:
        source: the dataset (a path or :class:`FeatureFile`).
        cfg: the tokenizer config (families, cleaning, training seed and batch size).
        device: where encoders are pre-trained.
        progress: ``progress(done, total, {"stage": ...})`` during the encoders' pre-training.

    Raises:
        TokenizerDataError: a family the config needs is missing, its columns are wrong, the
            experiment stores too few states, or cleaning leaves a family empty.
    """
    source = source if isinstance(source, FeatureFile) else FeatureFile(source)
    exp_cfg = source.experiment_config()
    n_states = source.temporal_shape()[1] if "temporal" in source.families else exp_cfg.simulation.num_timesteps
    problems = cfg.dataset_problems({f: f in source.families for f in cfg.families}, n_states)
    if problems:
        raise TokenizerDataError(f"{source.path} cannot feed this tokenizer config: " +
                                 "; ".join(f"{k}: {v}" for k, v in problems))
    meta = source.metadata()
    val_mask = validation_mask(meta["operator_index"], cfg.cleaning.validation_fraction, cfg.cleaning.split_seed)
    train_mask = ~val_mask
    rows = np.flatnonzero(training_rows(meta["diverged"], train_mask))
    val_rows = np.flatnonzero(val_mask & ~meta["diverged"])
    log.info("split: %d training operators (%d diverged excluded), %d validation", rows.size,
             int((train_mask & meta["diverged"]).sum()), val_rows.size)
    stages = [_fit_family(source, name, fam, cfg, exp_cfg, meta, train_mask, rows, val_rows, device, progress)
              for name, fam in cfg.families.items()]
    pipe = FeaturePipeline(families=stages, names=[], column_family=[], mean=np.zeros(0), std=np.ones(0))
    out = pipe.raw_outputs(source, device=device)
    names = [n for s in stages for n in s.output_names]
    fams = [s.name for s in stages for _ in s.output_names]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise TokenizerDataError(f"column names repeat across families: {dup[:10]}")
    rel = np.concatenate([_output_reliabilities(s) for s in stages])
    std = out[rows].astype(np.float64).std(0)
    keep = std > np.sqrt(cfg.cleaning.variance_floor)
    pipe.dropped = [(fams[j], names[j], f"encoder output constant on the training rows (std {std[j]:.3g})")
                    for j in np.flatnonzero(~keep)]
    pipe.keep = np.flatnonzero(keep)
    pipe.names = [names[j] for j in pipe.keep]
    pipe.column_family = [fams[j] for j in pipe.keep]
    pipe.mean = out[rows][:, keep].astype(np.float64).mean(0).astype(np.float32)
    pipe.std = std[keep].astype(np.float32)
    pipe.reliabilities = rel[keep]
    x = ((out[:, keep] - pipe.mean) / pipe.std).astype(np.float32)
    log.info("tokenizer input: %d columns (%s)", x.shape[1],
             ", ".join(f"{s.name} {sum(f == s.name for f in pipe.column_family)}" for s in stages))
    return PreparedFeatures(pipeline=pipe, x=x, val_mask=val_mask, train_rows=rows, val_rows=val_rows, metadata=meta)
