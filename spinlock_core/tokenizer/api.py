"""The public tokenizer: ``Tokenizer.load(checkpoint_dir).tokenize(dataset) -> [N, 3 C] int64``.

A :class:`Tokenizer` is a fitted :class:`.pipeline.FeaturePipeline` (cleaning, frozen family
encoders, z-score), the Ward :class:`.categories.Categories` and a trained
:class:`.model.CategoricalVQVAE`. Tokens are category-major, level-minor: column ``3 c + l`` is
level ``l`` of category ``c``, inside ``[0, codebook_sizes[3 c + l])``.

Train one with :func:`.train.train_tokenizer`; the checkpoint layout is :mod:`.checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..config.tokenizer import NUM_LEVELS, TokenizerConfig
from . import checkpoint as ck
from .categories import Categories
from .data import ArrayFeatures, FeatureFile
from .inference import tokenize_array
from .pipeline import FeaturePipeline
from .pipeline_io import pipeline_fields, read_pipeline, write_pipeline

__all__ = ["Tokenizer", "as_source"]

log = logging.getLogger(__name__)


def as_source(data) -> FeatureFile | ArrayFeatures:
    """A dataset path, a :class:`FeatureFile` (or shard view) or a mapping family -> array."""
    if isinstance(data, (FeatureFile, ArrayFeatures)):
        return data
    if isinstance(data, Mapping):
        return ArrayFeatures(dict(data))
    if isinstance(data, (str, Path)):
        return FeatureFile(data)
    raise TypeError(f"tokenize takes a dataset path, a FeatureFile or a mapping family -> array, got {type(data).__name__}")


class Tokenizer:
    """A trained behavioural tokenizer (module doc)."""

    def __init__(self, pipeline: FeaturePipeline, categories: Categories, model, manifest: dict,
                 folder: Path | None = None):
        self.pipeline = pipeline
        self.categories = categories
        self.model = model.eval()
        self.manifest = manifest
        self.folder = folder

    # ------------------------------------------------------------------ properties

    @property
    def checkpoint_id(self) -> str:
        return self.manifest.get("checkpoint_id", "")

    @property
    def num_categories(self) -> int:
        return self.categories.num_categories

    @property
    def codebook_sizes(self) -> list[int]:
        """Codebook size of every token column (category-major, level-minor)."""
        return list(self.manifest["codebook_sizes"])

    @property
    def token_names(self) -> list[str]:
        return [f"category_{c:02d}_level_{lv}" for c in range(self.num_categories) for lv in range(NUM_LEVELS)]

    @property
    def config(self) -> TokenizerConfig:
        return TokenizerConfig.model_validate(self.manifest["config"])

    # ------------------------------------------------------------------ use

    def features(self, data, *, device="cpu") -> np.ndarray:
        """``[N, F]`` float32 z-scored model input of ``data`` (see :func:`as_source`)."""
        return self.pipeline.transform(as_source(data), device=device)

    def tokenize(self, data, *, device="cpu", batch_size: int = 8192) -> np.ndarray:
        """``[N, 3 C]`` int64 tokens of every operator of ``data`` (see :func:`as_source`).

        Raises:
            TokenizerDataError: a family the checkpoint needs is missing, or its columns differ.
        """
        return tokenize_array(self.model, self.features(data, device=device), device=device, batch=batch_size)

    # ------------------------------------------------------------------ files

    def save(self, out: Path | str, *, metrics: dict, history: dict) -> Path:
        """Write the checkpoint folder (layout: :mod:`.checkpoint`) atomically; returns its path."""
        import torch

        def write(tmp: Path):
            write_pipeline(tmp, self.pipeline, self.categories)
            torch.save({"init_kwargs": self.model.init_kwargs,
                        "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}},
                       tmp / ck.MODEL)
            (tmp / ck.METRICS).write_text(json.dumps(metrics, indent=1, allow_nan=False))
            (tmp / ck.HISTORY).write_text(json.dumps(history, indent=1, allow_nan=False))
            files = {p.relative_to(tmp).as_posix(): ck.sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            self.manifest.update(pipeline_fields(self.pipeline))
            self.manifest["files"] = files
            # what decides the tokens: weights, cleaning, categories, the pipeline's fields (not
            # metrics, history or timestamps), so two identical trainings share the id
            decisive = {k: v for k, v in files.items() if k not in (ck.METRICS, ck.HISTORY)}
            fields = pipeline_fields(self.pipeline)
            fields["families"] = [{k: v for k, v in f.items() if k != "pretrain"} for f in fields["families"]]
            fields["codebook_sizes"] = self.manifest.get("codebook_sizes")
            decisive["pipeline"] = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
            self.manifest["checkpoint_id"] = ck.checkpoint_id(decisive)
            (tmp / ck.MANIFEST).write_text(json.dumps(self.manifest, indent=1, allow_nan=False))

        self.folder = ck.write_folder(out, write)
        log.info("tokenizer checkpoint %s written to %s", self.checkpoint_id[:12], self.folder)
        return self.folder

    @classmethod
    def load(cls, folder: Path | str, *, verify: bool = True) -> "Tokenizer":
        """Load a checkpoint folder; nothing else is needed to tokenize new data.

        Raises:
            CheckpointError: the folder, a file or a field is missing, a file was changed
                (``verify``), or the format is newer than this code.
        """
        import torch

        from .model import CategoricalVQVAE

        folder = Path(folder)
        m = ck.read_manifest(folder)
        for name in ck.REQUIRED[1:]:
            if not (folder / name).exists():
                raise ck.CheckpointError(f"{folder}: missing checkpoint file {name}")
        if verify:
            ck.verify_files(folder, m)
        pipe, cats = read_pipeline(folder, m)
        try:
            state = torch.load(folder / ck.MODEL, weights_only=True)
            model = CategoricalVQVAE(**state["init_kwargs"])
            model.load_state_dict(state["state_dict"])
        except KeyError as e:
            raise ck.CheckpointError(f"{folder}: {ck.MODEL} lacks {e}") from None
        return cls(pipe, cats, model, m, folder=folder)
