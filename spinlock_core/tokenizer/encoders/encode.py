"""Streaming a family through a (frozen) encoder, and the chunk handling shared with pre-training."""

from __future__ import annotations

from typing import Callable, Iterable, Union

import numpy as np
import torch
from torch import nn

from ...devices import resolve_device as _resolve

__all__ = ["Chunks", "iter_chunks", "as_rows", "resolve_device", "encode_chunks"]

#: a zero-argument callable returning an iterable of ``[n, F]`` / ``[n, T', F]`` float32 arrays
#: (called again for every pass), or an iterable of them (one pass)
Chunks = Union[Callable[[], Iterable[np.ndarray]], Iterable[np.ndarray]]


def iter_chunks(chunks: Chunks) -> Iterable[np.ndarray]:
    """One pass over ``chunks``."""
    return chunks() if callable(chunks) else chunks


def as_rows(chunk, who: str) -> torch.Tensor:
    """A chunk as a float32 CPU tensor (no copy when it already is float32 and contiguous).

    Raises:
        ValueError: not 2-d or 3-d, or not finite (the caller cleans and normalises the family).
    """
    a = np.ascontiguousarray(chunk, dtype=np.float32)
    if a.ndim not in (2, 3):
        raise ValueError(f"{who}: chunks must be [n, F] or [n, T', F] arrays, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{who}: a chunk of shape {a.shape} holds {int((~np.isfinite(a)).sum())} non-finite values")
    return torch.from_numpy(a)


def resolve_device(device: str | torch.device) -> torch.device:
    """A ``torch.device`` as given, or a name (``auto``, ``cpu``, ``cuda``) through the project's
    :func:`spinlock_core.devices.resolve_device`."""
    if isinstance(device, torch.device):
        return device
    if device in ("auto", "cpu", "cuda"):
        return _resolve(device)
    return torch.device(device)  # e.g. "cuda:1"


def encode_chunks(encoder: nn.Module, chunks: Chunks, *, device: str | torch.device = "cpu",
                  batch_size: int = 1024) -> np.ndarray:
    """``[N, D]`` float32 outputs of ``encoder`` on every row of one pass over ``chunks``, in order.

    The encoder is moved to ``device`` and put in eval mode; batches of ``batch_size`` rows run
    under ``torch.inference_mode``. No rows give ``[0, D]``.

    Raises:
        ValueError: ``batch_size < 1``, a chunk that is not finite or not 2-d/3-d, or one of the
            wrong shape for the encoder.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    encoder.to(dev).eval()
    who = f"encode_chunks({type(encoder).__name__})"
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for chunk in iter_chunks(chunks):
            x = as_rows(chunk, who)
            for b0 in range(0, x.shape[0], batch_size):
                out.append(encoder(x[b0:b0 + batch_size].to(dev)).float().cpu().numpy())
    if not out:
        return np.zeros((0, encoder.output_dim), dtype=np.float32)
    return np.concatenate(out, axis=0)
