"""The tokenizer checkpoint folder: one layout used by the writer, the loader and the checks.

::

    CHECKPOINT_DIR/
      tokenizer.json          manifest: format and version, code version, the tokenizer config, the
                              dataset it was trained on, families (encoder, blocks, states, output
                              names), kept columns with their family, z-score statistics,
                              reliabilities, dropped encoder outputs, codebook sizes in token-column
                              order, the SHA-256 of every other file and the checkpoint id
      model.pt                CategoricalVQVAE: constructor keywords and state_dict
      categories.json         Ward categories (:class:`.categories.Categories`)
      cleaning/<family>.json  fitted cleaning (:class:`.cleaning_spec.CleaningSpec`)
      encoders/<family>.pt    family encoder (constructor keywords and weights, frozen)
      metrics.json            every SPEC 9 metric (:class:`.metrics.TokenizerMetrics`) plus categories
      training_history.json   validation rounds, encoder pre-training, timings

The folder is written under a temporary name next to the target and renamed into place, so a
reader never sees half a checkpoint. ``checkpoint_id`` is a SHA-256 over the content hashes of the
files that decide the tokens (weights, cleaning, categories) and of the manifest's pipeline
fields, not of metrics, history or timestamps: two checkpoints with the same id tokenize
identically, and two identical trainings give the same id.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

__all__ = ["FORMAT", "VERSION", "MANIFEST", "MODEL", "CATEGORIES", "METRICS", "HISTORY", "REQUIRED",
           "CheckpointError", "cleaning_file", "encoder_file", "sha256_file", "write_folder", "read_manifest",
           "verify_files"]

FORMAT = "spinlock.tokenizer"
VERSION = 1
MANIFEST = "tokenizer.json"
MODEL = "model.pt"
CATEGORIES = "categories.json"
METRICS = "metrics.json"
HISTORY = "training_history.json"
#: files every checkpoint has (per-family files are listed in the manifest)
REQUIRED = (MANIFEST, MODEL, CATEGORIES, METRICS, HISTORY)


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded; the message names the folder and the file."""


def cleaning_file(family: str) -> str:
    return f"cleaning/{family}.json"


def encoder_file(family: str) -> str:
    return f"encoders/{family}.pt"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_folder(out: Path | str, write) -> Path:
    """Call ``write(tmp_dir)`` to fill a temporary folder next to ``out``, then rename it to ``out``
    (replacing an existing checkpoint only once the new one is complete)."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return out


def read_manifest(folder: Path | str) -> dict:
    """The manifest of a checkpoint folder, its format and version checked.

    Raises:
        CheckpointError: the folder or its manifest is missing, or another format or a newer version.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    path = folder / MANIFEST
    if not path.exists():
        raise CheckpointError(f"{folder}: not a tokenizer checkpoint (missing {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {manifest.get('version')!r} is newer than this code "
                              f"reads ({VERSION}); upgrade spinlock")
    return manifest


def verify_files(folder: Path | str, manifest: dict) -> None:
    """Every file the manifest lists exists and has its recorded SHA-256.

    Raises:
        CheckpointError: naming the missing or changed file.
    """
    folder = Path(folder)
    for name, digest in manifest["files"].items():
        p = folder / name
        if not p.exists():
            raise CheckpointError(f"{folder}: missing checkpoint file {name}")
        if sha256_file(p) != digest:
            raise CheckpointError(f"{folder}: {name} does not match its recorded SHA-256 (changed or corrupted)")


def checkpoint_id(files: dict[str, str]) -> str:
    """SHA-256 over the sorted ``name:sha256`` lines of the checkpoint's files."""
    return hashlib.sha256("".join(f"{k}:{v}\n" for k, v in sorted(files.items())).encode()).hexdigest()
