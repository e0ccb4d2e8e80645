"""Saving and loading a fitted :class:`.pipeline.FeaturePipeline` with its categories, in the
checkpoint layout (:mod:`.checkpoint`): ``cleaning/<family>.json``, ``encoders/<family>.pt``,
``categories.json`` and the manifest fields below. Used by the checkpoint and by the
``feature_matrix`` folder (which adds the matrix itself, :func:`save_prepared`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import checkpoint as ck
from .categories import Categories
from .cleaning_spec import CleaningSpec
from .pipeline import FamilyStage, FeaturePipeline

__all__ = ["write_pipeline", "pipeline_fields", "read_pipeline", "MATRIX"]

#: the feature_matrix folder's arrays (x, split and metadata)
MATRIX = "matrix.npz"


def family_record(stage: FamilyStage) -> dict:
    """The manifest's entry for one family."""
    return {"name": stage.name, "encoder": stage.encoder_name, "blocks": list(stage.blocks),
            "states": None if stage.states is None else list(stage.states), "output_names": stage.output_names,
            "input_columns": list(stage.cleaning.kept_names), "pretrain": stage.pretrain}


def pipeline_fields(pipe: FeaturePipeline) -> dict:
    """Manifest fields of a pipeline (everything but the per-family files)."""
    return {
        "families": [family_record(s) for s in pipe.families],
        "names": pipe.names, "column_family": pipe.column_family, "keep": pipe.keep.tolist(),
        "mean": pipe.mean.astype(float).tolist(), "std": pipe.std.astype(float).tolist(),
        "reliabilities": pipe.reliabilities.astype(float).tolist(), "dropped": [list(d) for d in pipe.dropped],
    }


def write_pipeline(folder: Path, pipe: FeaturePipeline, categories: Categories) -> None:
    """Write the per-family files and ``categories.json`` into ``folder``."""
    import torch

    from .encoders import encoder_state

    (folder / "cleaning").mkdir(exist_ok=True)
    (folder / "encoders").mkdir(exist_ok=True)
    for s in pipe.families:
        (folder / ck.cleaning_file(s.name)).write_text(s.cleaning.to_json())
        torch.save(encoder_state(s.encoder), folder / ck.encoder_file(s.name))
    (folder / ck.CATEGORIES).write_text(categories.to_json(indent=1))


def read_pipeline(folder: Path, manifest: dict) -> tuple[FeaturePipeline, Categories]:
    """Rebuild the pipeline and categories written by :func:`write_pipeline` + :func:`pipeline_fields`.

    Raises:
        CheckpointError: a file or a field is missing.
    """
    import torch

    from .encoders import encoder_from_state

    folder = Path(folder)
    try:
        stages = []
        for f in manifest["families"]:
            spec = CleaningSpec.from_json((folder / ck.cleaning_file(f["name"])).read_text())
            enc = encoder_from_state(torch.load(folder / ck.encoder_file(f["name"]), weights_only=True))
            stages.append(FamilyStage(name=f["name"], encoder_name=f["encoder"], cleaning=spec, encoder=enc,
                                      output_names=list(f["output_names"]), blocks=tuple(f["blocks"]),
                                      states=None if f["states"] is None else tuple(f["states"]),
                                      pretrain=f.get("pretrain")))
        pipe = FeaturePipeline(families=stages, names=list(manifest["names"]),
                               column_family=list(manifest["column_family"]),
                               mean=np.asarray(manifest["mean"], np.float32), std=np.asarray(manifest["std"], np.float32),
                               dropped=[tuple(d) for d in manifest["dropped"]],
                               keep=np.asarray(manifest["keep"], np.int64),
                               reliabilities=np.asarray(manifest["reliabilities"], np.float64))
        cats = Categories.from_json((folder / ck.CATEGORIES).read_text())
    except KeyError as e:
        raise ck.CheckpointError(f"{folder}: the manifest lacks the field {e}") from None
    except FileNotFoundError as e:
        raise ck.CheckpointError(f"{folder}: missing file {Path(e.filename).relative_to(folder)}") from None
    return pipe, cats
