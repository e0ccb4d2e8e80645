"""Loss terms of the categorical hierarchical VQ-VAE (SPEC 9), as small pure functions.

Each returns a scalar tensor that carries a gradient to its inputs (the earlier implementation's
orthogonality term was computed on detached values and trained nothing). The trainer weighs them:
``reconstruction_weight * reconstruction + vq_weight * vq + orthogonality_weight * orthogonality
+ informativeness_weight * informativeness + topo_weight * topographic``.

Shapes: ``x [B, F]`` inputs, ``embeddings`` a sequence of ``C`` pre-quantization ``[B, D_c]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "STD_EPS",
    "informativeness_loss",
    "orthogonality_loss",
    "reconstruction_loss",
    "topographic_loss",
    "vq_loss",
]

#: added to variances before a square root (a constant column has a finite gradient)
STD_EPS = 1.0e-4


def _rows(t: Tensor, what: str, minimum: int = 2) -> Tensor:
    if t.ndim != 2:
        raise ValueError(f"{what} must be 2-D [B, D], got shape {tuple(t.shape)}")
    if t.shape[0] < minimum:
        raise ValueError(f"{what} needs at least {minimum} rows (a batch statistic), got {t.shape[0]}")
    return t


def reconstruction_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """``mean_{b,f} (x_bf - x_hat_bf)^2`` over ``[B, F]`` (normalised space, SPEC 9's error).

    Raises:
        ValueError: shapes differ.
    """
    if x.shape != x_hat.shape:
        raise ValueError(f"x has shape {tuple(x.shape)} but x_hat has shape {tuple(x_hat.shape)}")
    return torch.mean((x - x_hat) ** 2)


def vq_loss(commit_losses: Tensor) -> Tensor:
    """``sum_{c,l} L_cl``: the library's commitment losses ``[C, L]`` (each already
    ``commitment_cost * mean (sg[q_cl] - r_cl)^2``, ``r_cl`` the input of level ``l``), summed
    over categories and levels. The EMA codebooks learn from their moving averages, not from this.
    """
    return commit_losses.sum()


def _standardize(z: Tensor) -> Tensor:
    """Batch z-score of every column of ``z [B, D]`` (biased variance, ``+ STD_EPS``)."""
    z = z - z.mean(dim=0, keepdim=True)
    return z / torch.sqrt(z.pow(2).mean(dim=0, keepdim=True) + STD_EPS)


def orthogonality_loss(embeddings: Sequence[Tensor], target: float = 0.0) -> Tensor:
    """Penalty on correlation between categories, above ``target``.

    With ``Z_c [B, D_c]`` the batch-standardized embedding of category ``c`` and
    ``R_cc' = Z_c^T Z_c' / B`` the ``[D_c, D_c']`` Pearson cross-correlations,
    ``rho_cc' = sqrt(mean_ij R_cc'_ij^2)`` (RMS cross-correlation, computed as
    ``sqrt(sum(G_c * G_c')) / (B sqrt(D_c D_c'))`` with Grams ``G_c = Z_c Z_c^T [B, B]``, which costs
    ``B^2 D`` per category instead of ``B D^2`` per pair) and the loss is
    ``mean_{c < c'} max(0, rho_cc' - target)``.

    RMS rather than mean ``|r|``: it has the Gram form and a smooth gradient. Independent
    embeddings give ``rho ~ 1 / sqrt(B)`` from sampling alone, so ``target`` should exceed that
    (0.15 against 0.044 at B = 512). 0 with fewer than two categories (still in the graph).

    Raises:
        ValueError: an embedding not ``[B >= 2, D]``, or differing ``B``.
    """
    if len(embeddings) == 0:
        raise ValueError("embeddings is empty")
    zs = [_rows(z, f"embeddings[{i}]") for i, z in enumerate(embeddings)]
    if len({z.shape[0] for z in zs}) != 1:
        raise ValueError(f"embeddings have different batch sizes {[z.shape[0] for z in zs]}")
    if len(zs) < 2:
        return zs[0].sum() * 0.0
    b = zs[0].shape[0]
    # every pair at once: sum(G_i * G_j) is entry (i, j) of the [C, C] product of the flattened
    # Grams (one matmul instead of C (C - 1) / 2 elementwise products)
    grams = torch.stack([(s @ s.T).reshape(-1) for s in (_standardize(z) for z in zs)])
    dims = torch.tensor([float(z.shape[1]) for z in zs], device=grams.device, dtype=grams.dtype)
    i, j = torch.triu_indices(len(zs), len(zs), 1, device=grams.device)
    sq = (grams @ grams.T)[i, j].clamp_min(1e-12)
    rho = torch.sqrt(sq) / (b * torch.sqrt(dims[i] * dims[j]))
    return torch.relu(rho - target).mean()


def informativeness_loss(embeddings: Sequence[Tensor], floor: float = 1.0) -> Tensor:
    """Hinge on collapsed embedding dimensions (VICReg's variance term).

    ``mean_{c, d} max(0, floor - sqrt(Var_b(z_cbd) + STD_EPS))`` with the biased batch variance:
    zero once every dimension of every category spreads the batch with a standard deviation of
    at least ``floor``; a dimension that carries nothing (constant over the batch) costs ``floor``.
    Bounded, unlike a negative variance, so it cannot be won by inflating the embeddings.

    Raises:
        ValueError: an embedding not ``[B >= 2, D]``.
    """
    if len(embeddings) == 0:
        raise ValueError("embeddings is empty")
    terms = []
    for i, z in enumerate(embeddings):
        z = _rows(z, f"embeddings[{i}]")
        std = torch.sqrt(z.var(dim=0, unbiased=False) + STD_EPS)
        terms.append(torch.relu(floor - std))
    return torch.cat(terms).mean()


def _pdist(a: Tensor) -> Tensor:
    """Condensed Euclidean distances ``[M (M - 1) / 2]`` (scipy's ``pdist`` order) of the rows
    of ``a [M, D]``, from one matmul: ``torch.pdist``'s backward pass is ~20x slower on CPU.
    A zero distance (duplicate rows) gets a zero gradient instead of an infinite one."""
    sq = a.pow(2).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (a @ a.T)
    i, j = torch.triu_indices(a.shape[0], a.shape[0], 1, device=a.device)
    return torch.sqrt(d2[i, j].clamp_min(1e-12))


def topographic_loss(x: Tensor, z: Tensor, samples: int | None = None) -> Tensor:
    """``1 - Pearson(pdist(x_S), pdist(z_S))`` over the ``M (M - 1) / 2`` row pairs of the first
    ``M = min(samples, B)`` rows (all when None): 0 when the embedding keeps the inputs'
    Euclidean distances up to an affine map, 1 when unrelated. The batch is a random draw, so the
    first rows are a random subset.

    Args:
        x: ``[B, F]`` inputs.
        z: ``[B, D]`` embeddings (the trainer passes the concatenated pre-quantization ones).
        samples: rows used, ``>= 3`` (two rows give one distance, whose correlation is undefined).

    Raises:
        ValueError: fewer than 3 rows, differing ``B``, ``samples < 3``.
    """
    _rows(x, "x", 3)
    _rows(z, "z", 3)
    if x.shape[0] != z.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but z has {z.shape[0]}")
    if samples is not None:
        if samples < 3:
            raise ValueError(f"samples must be >= 3, got {samples}")
        x, z = x[:samples], z[:samples]
    dx, dz = _pdist(x), _pdist(z)
    dx = dx - dx.mean()
    dz = dz - dz.mean()
    denom = torch.sqrt(dx.pow(2).sum() * dz.pow(2).sum()).clamp_min(1e-12)
    return 1.0 - (dx * dz).sum() / denom
