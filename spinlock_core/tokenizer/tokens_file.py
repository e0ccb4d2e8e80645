"""The tokens file (``spinlock tokenize`` and the ``tokens`` asset): one layout for writer and reader.

::

    tokens                 [N, 3 C]  int64   category-major, level-minor
    operator_index         [N]       int64   global operator index
    diverged               [N]       bool    flagged operators (tokenized, not used in training)
    ic_types               [N]       |S      IC type of each operator
    evolution_policies     [N]       |S      update policy of each operator

Attributes: ``format``, ``version``, ``checkpoint_id``, ``checkpoint`` (its folder),
``codebook_sizes`` ``[3 C]``, ``token_names``, ``num_categories``, ``num_levels``, ``source``.
Written to a temporary file and renamed (:func:`spinlock_core.storage.shards.atomic_h5`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import __version__
from ..storage.layout import encode_strings
from ..storage.shards import atomic_h5, open_h5

__all__ = ["TOKENS_FORMAT", "TOKENS_VERSION", "write_tokens", "read_tokens", "tokens_out_of_range"]

TOKENS_FORMAT = "spinlock.tokens"
TOKENS_VERSION = 1


def tokens_out_of_range(tokens: np.ndarray, codebook_sizes) -> dict[int, int]:
    """Token column -> number of entries outside ``[0, codebook_sizes[column])`` (only bad columns)."""
    t = np.asarray(tokens)
    k = np.asarray(codebook_sizes)
    if t.ndim != 2 or t.shape[1] != k.size:
        raise ValueError(f"tokens must be [N, {k.size}], got shape {t.shape}")
    bad = ((t < 0) | (t >= k[None, :])).sum(0)
    return {int(j): int(b) for j, b in enumerate(bad) if b}


def write_tokens(path: Path | str, tokens: np.ndarray, tokenizer, metadata: dict, source: str) -> Path:
    """Write ``tokens [N, 3 C]`` with ``metadata`` (``operator_index``, ``diverged``, ``ic_types``,
    ``policies``, each ``[N]``) and the tokenizer's identity.

    Raises:
        ValueError: shapes disagree, or a token lies outside its codebook.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    n = tokens.shape[0]
    bad = tokens_out_of_range(tokens, tokenizer.codebook_sizes)
    if bad:
        raise ValueError(f"tokens outside their codebook in columns {bad}")
    for k in ("operator_index", "diverged", "ic_types", "policies"):
        if np.shape(metadata[k]) != (n,):
            raise ValueError(f"metadata {k} must have shape ({n},), got {np.shape(metadata[k])}")
    path = Path(path)
    with atomic_h5(path) as f:
        f.create_dataset("tokens", data=tokens)
        f.create_dataset("operator_index", data=np.asarray(metadata["operator_index"], np.int64))
        f.create_dataset("diverged", data=np.asarray(metadata["diverged"], bool))
        f.create_dataset("ic_types", data=encode_strings(metadata["ic_types"]))
        f.create_dataset("evolution_policies", data=encode_strings(metadata["policies"]))
        f.attrs.update({
            "format": TOKENS_FORMAT, "version": TOKENS_VERSION, "checkpoint_id": tokenizer.checkpoint_id,
            "checkpoint": str(tokenizer.folder or ""), "codebook_sizes": np.asarray(tokenizer.codebook_sizes, np.int64),
            "token_names": encode_strings(tokenizer.token_names), "num_categories": tokenizer.num_categories,
            "num_levels": 3, "source": str(source), "code_version": __version__,
        })
    return path


def read_tokens(path: Path | str) -> dict:
    """``{"tokens", "operator_index", "diverged", "ic_types", "policies", "attrs"}`` of a tokens file.

    Raises:
        ValueError: not a tokens file, or a newer version.
    """
    with open_h5(path) as f:
        if f.attrs.get("format") != TOKENS_FORMAT:
            raise ValueError(f"{path}: not a Spinlock tokens file (format {f.attrs.get('format')!r})")
        if int(f.attrs["version"]) > TOKENS_VERSION:
            raise ValueError(f"{path}: tokens file version {f.attrs['version']} is newer than this code reads "
                             f"({TOKENS_VERSION}); upgrade spinlock")
        return {
            "tokens": f["tokens"][()], "operator_index": f["operator_index"][()], "diverged": f["diverged"][()],
            "ic_types": f["ic_types"][()].astype(str), "policies": f["evolution_policies"][()].astype(str),
            "attrs": dict(f.attrs),
        }
