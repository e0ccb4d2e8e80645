"""Train a tokenizer end to end: dataset -> feature pipeline -> categories -> VQ-VAE -> metrics ->
checkpoint folder (SPEC 8-9).

Steps:

1. :func:`.pipeline.fit_feature_pipeline`: split, clean every family, pre-train and freeze the
   family encoders, concatenate and z-score (statistics from the training rows only);
2. :func:`.categories.discover_categories` on the training rows;
3. :func:`.training.train_vqvae` on the training rows, early stopping on the validation rows;
4. :func:`.metrics.compute_tokenizer_metrics` on the validation split in eval mode (utilization on
   both splits), with the AMI of each category's level-0 tokens with the IC type and the noise
   ceiling (mean reliability of the kept columns);
5. :meth:`.api.Tokenizer.save`: the checkpoint folder, written atomically.

Diverged operators are excluded from every statistic and from training and validation; they are
still tokenized by :meth:`.api.Tokenizer.tokenize`.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..config.tokenizer import NUM_LEVELS, TokenizerConfig
from ..devices import resolve_device
from . import checkpoint as ck
from .api import Tokenizer
from .categories import Categories, discover_categories
from .data import FeatureFile
from .inference import level_reconstructions, tokenize_array
from .metrics import compute_tokenizer_metrics
from .pipeline import PreparedFeatures, fit_feature_pipeline
from .pipeline_io import MATRIX, pipeline_fields, read_pipeline, write_pipeline

__all__ = ["PreparedTokenizerInput", "prepare_tokenizer_input", "save_prepared", "load_prepared",
           "train_on_prepared", "train_tokenizer", "evaluate_tokenizer", "peak_rss_mb", "tokenizer_code_version"]

log = logging.getLogger(__name__)


def tokenizer_code_version(cfg: TokenizerConfig) -> str:
    """A short digest of the tokenizer config and the package version (Dagster ``code_version``)."""
    import hashlib

    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True) + __version__
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def evaluate_tokenizer(model, x_train, x_val, *, codebook_sizes, ic_types_val, assignment, reliabilities,
                       column_family=None):
    """SPEC 9 metrics of ``model`` (``x_* [N, F]`` float32, the model's input space), and
    ``{family: 1 - MSE over that family's columns}`` on the validation split when
    ``column_family [F]`` is given (else ``{}``)."""
    levels = level_reconstructions(model, x_val)
    tokens_val, tokens_train = tokenize_array(model, x_val), tokenize_array(model, x_train)
    metrics = compute_tokenizer_metrics(
        x_val=x_val, reconstruction_val=levels[-1], level_reconstructions_val=levels, tokens_train=tokens_train,
        tokens_val=tokens_val, codebook_sizes=codebook_sizes, num_levels=NUM_LEVELS, ic_types_val=ic_types_val,
        assignment=assignment, reliabilities=reliabilities,
    )
    per_family = {}
    if column_family is not None:
        fam = np.asarray(column_family)
        for f in dict.fromkeys(column_family):
            cols = fam == f
            per_family[f] = 1.0 - float(np.mean((x_val[:, cols].astype(np.float64) - levels[-1][:, cols]) ** 2))
    return metrics, per_family


@dataclass
class PreparedTokenizerInput:
    """Everything the VQ-VAE trains on: the fitted pipeline, its categories and the matrix
    (the ``feature_matrix`` asset)."""

    prepared: PreparedFeatures
    categories: Categories
    dataset: dict
    seconds: float

    @property
    def pipeline(self):
        return self.prepared.pipeline


def prepare_tokenizer_input(dataset, cfg: TokenizerConfig, *, device: str | None = None,
                            progress: Callable | None = None) -> PreparedTokenizerInput:
    """Steps 1-2 of the module doc: fit the feature pipeline and discover the categories.

    Raises:
        TokenizerDataError: the dataset cannot feed this config (the message names what is missing).
    """
    t0 = time.perf_counter()
    source = dataset if isinstance(dataset, FeatureFile) else FeatureFile(dataset)
    dev = resolve_device(device or cfg.training.device)
    log.info("preparing the tokenizer input from %s (%d operators) on %s", source.path, source.n, dev)
    prep = fit_feature_pipeline(source, cfg, device=str(dev), progress=progress)
    cats = discover_categories(prep.x[prep.train_rows], prep.pipeline.names, cfg.model.num_categories,
                               cfg.model.min_category_size)
    log.info("%d categories of %s columns; orthogonality %.3f (target %.2f)", cats.num_categories,
             list(cats.sizes), cats.orthogonality, cfg.training.orthogonality_target)
    return PreparedTokenizerInput(prep, cats, source.identity(), time.perf_counter() - t0)


def save_prepared(out: Path | str, inp: PreparedTokenizerInput, cfg: TokenizerConfig) -> Path:
    """Write the ``feature_matrix`` folder atomically: the pipeline files, ``categories.json``,
    ``matrix.npz`` (``x [N, F]``, split, metadata) and a manifest."""
    p = inp.prepared

    def write(tmp: Path):
        write_pipeline(tmp, p.pipeline, inp.categories)
        np.savez(tmp / MATRIX, x=p.x, val_mask=p.val_mask, train_rows=p.train_rows, val_rows=p.val_rows,
                 **{f"meta_{k}": v for k, v in p.metadata.items()})
        manifest = {"format": "spinlock.feature_matrix", "version": 1, "code_version": __version__,
                    "config": cfg.model_dump(mode="json"), "dataset": inp.dataset, "seconds": inp.seconds,
                    **pipeline_fields(p.pipeline)}
        (tmp / ck.MANIFEST).write_text(json.dumps(manifest, indent=1, allow_nan=False))

    return ck.write_folder(out, write)


def load_prepared(folder: Path | str) -> tuple[PreparedTokenizerInput, TokenizerConfig]:
    """Read a ``feature_matrix`` folder written by :func:`save_prepared`.

    Raises:
        CheckpointError: the folder, a file or a field is missing.
    """
    folder = Path(folder)
    path = folder / ck.MANIFEST
    if not path.exists():
        raise ck.CheckpointError(f"{folder}: not a feature_matrix folder (missing {ck.MANIFEST})")
    m = json.loads(path.read_text())
    if m.get("format") != "spinlock.feature_matrix":
        raise ck.CheckpointError(f"{path}: format {m.get('format')!r}, expected 'spinlock.feature_matrix'")
    pipe, cats = read_pipeline(folder, m)
    if not (folder / MATRIX).exists():
        raise ck.CheckpointError(f"{folder}: missing {MATRIX}")
    with np.load(folder / MATRIX) as z:
        meta = {k[5:]: z[k] for k in z.files if k.startswith("meta_")}
        prep = PreparedFeatures(pipeline=pipe, x=z["x"], val_mask=z["val_mask"], train_rows=z["train_rows"],
                                val_rows=z["val_rows"], metadata=meta)
    return PreparedTokenizerInput(prep, cats, m["dataset"], float(m["seconds"])), TokenizerConfig.model_validate(m["config"])


def train_on_prepared(inp: PreparedTokenizerInput, cfg: TokenizerConfig, out: Path | str, *,
                      device: str | None = None, progress: Callable | None = None,
                      config_path: str | None = None) -> tuple[Tokenizer, dict]:
    """Steps 3-5 of the module doc on a prepared input; returns the tokenizer and its metrics."""
    from .training import train_vqvae

    t0 = time.perf_counter()
    prep, cats, pipe = inp.prepared, inp.categories, inp.pipeline
    x = prep.x
    dev = resolve_device(device or cfg.training.device)
    sizes = [cfg.model.codebook_sizes(n) for n in cats.sizes]
    limit = 0.25 * cfg.training.batch_size / max(max(s) for s in sizes)
    if cfg.model.threshold_ema_dead_code > limit:
        log.warning("threshold_ema_dead_code %.3g exceeds 0.25 * batch / K = %.3g for the largest codebook: codes in "
                    "use may be expired", cfg.model.threshold_ema_dead_code, limit)
    x_train, x_val = x[prep.train_rows], x[prep.val_rows]
    result = train_vqvae(x_train, x_val, cats.assignment, cfg.model, cfg.training, device=dev, progress=progress)
    model = result.model
    flat_sizes = [k for s in sizes for k in s]
    metrics, per_family = evaluate_tokenizer(
        model, x_train, x_val, codebook_sizes=flat_sizes, ic_types_val=prep.metadata["ic_types"][prep.val_rows],
        assignment=cats.assignment, reliabilities=pipe.reliabilities, column_family=pipe.column_family)
    seconds = inp.seconds + time.perf_counter() - t0
    rss = peak_rss_mb()
    log.info("validation quality %.4f (noise ceiling %.4f), utilization val %.3f / train %.3f, per level %s",
             metrics.quality, metrics.noise_ceiling, metrics.utilization, metrics.utilization_train_mean,
             [round(q, 4) for q in metrics.per_level_quality])
    t = cfg.training
    metrics_doc = {
        **metrics.to_dict(),
        "categories": [{"category": c, "size": len(names), "features": list(names),
                        "families": sorted({pipe.column_family[pipe.names.index(n)] for n in names}),
                        "codebook_sizes": list(sizes[c])} for c, names in enumerate(cats.category_names)],
        "category_orthogonality_train": cats.orthogonality,
        "quality_per_family": per_family,
        "feature_columns": len(pipe.names),
        "columns_per_family": {s.name: sum(f == s.name for f in pipe.column_family) for s in pipe.families},
        "training": {"steps_run": result.steps_run, "best_step": result.best_step,
                     "stopped_early": result.stopped_early, "train_seconds": result.seconds,
                     "pipeline_seconds": inp.seconds, "total_seconds": seconds, "device": str(result.device),
                     "peak_rss_mb": rss},
        "thresholds": {"min_val_quality": t.min_val_quality, "min_val_utilization": t.min_val_utilization},
        "dead_codebooks": [j for j, u in enumerate(metrics.utilization_val) if u == 0.0],
    }
    history = {
        "vqvae": result.history,
        "encoders": {s.name: s.pretrain for s in pipe.families if s.pretrain is not None},
        "pipeline_seconds": inp.seconds, "total_seconds": seconds, "peak_rss_mb": rss,
    }
    manifest = {
        "format": ck.FORMAT, "version": ck.VERSION, "code_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_path": config_path, "config": cfg.model_dump(mode="json"), "dataset": inp.dataset,
        "num_categories": cats.num_categories, "num_levels": NUM_LEVELS, "codebook_sizes": flat_sizes,
        "split": {"validation_fraction": cfg.cleaning.validation_fraction, "seed": cfg.cleaning.split_seed,
                  "n_train": int(prep.train_rows.size), "n_val": int(prep.val_rows.size)},
    }
    tok = Tokenizer(pipe, cats, model, manifest)
    tok.save(out, metrics=metrics_doc, history=history)
    return tok, metrics_doc


def train_tokenizer(dataset, cfg: TokenizerConfig, out: Path | str, *, device: str | None = None,
                    progress: Callable | None = None, config_path: str | None = None) -> tuple[Tokenizer, dict]:
    """Train on ``dataset`` (path or :class:`FeatureFile`) and write the checkpoint folder ``out``.

    Args:
        device: overrides ``cfg.training.device`` (``auto`` picks CUDA when present).
        progress: ``progress(step, total, record)`` during VQ-VAE training (and encoder pre-training).
        config_path: recorded in the manifest.

    Returns:
        The :class:`Tokenizer` and the metrics dict written to ``metrics.json``.

    Raises:
        TokenizerDataError: the dataset cannot feed this config (the message names what is missing).
    """
    inp = prepare_tokenizer_input(dataset, cfg, device=device, progress=progress)
    return train_on_prepared(inp, cfg, out, device=device, progress=progress, config_path=config_path)
