"""Batched eval-mode passes of a trained :class:`.model.CategoricalVQVAE` over numpy rows: the one
loop used by training's metrics, :meth:`.api.Tokenizer.tokenize` and the dashboards."""

from __future__ import annotations

import numpy as np

from ..config.tokenizer import NUM_LEVELS

__all__ = ["tokenize_array", "level_reconstructions"]


def tokenize_array(model, x: np.ndarray, *, device="cpu", batch: int = 8192) -> np.ndarray:
    """``[N, 3 C]`` int64 tokens of ``x [N, F]`` float32, ``batch`` rows at a time on ``device``."""
    import torch

    model = model.to(device)
    out = []
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch])).to(device)
            out.append(model.tokenize(xb).cpu().numpy())
    if not out:
        return np.zeros((0, NUM_LEVELS * model.num_categories), np.int64)
    return np.concatenate(out).astype(np.int64)


def level_reconstructions(model, x: np.ndarray, *, batch: int = 8192) -> list[np.ndarray]:
    """Reconstructions ``[N, F]`` of ``x [N, F]`` from levels {0}, {0, 1}, {0, 1, 2} (eval mode, CPU)."""
    import torch

    model.eval()
    out: list[list[np.ndarray]] = [[] for _ in range(NUM_LEVELS)]
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch):
            for lv, r in enumerate(model.reconstruct_levels(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])))):
                out[lv].append(r.numpy())
    return [np.concatenate(r) if r else np.zeros((0, x.shape[1]), np.float32) for r in out]
