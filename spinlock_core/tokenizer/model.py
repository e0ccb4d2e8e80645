"""The categorical hierarchical VQ-VAE (SPEC 9).

Per category ``c``: its ``n_c`` columns ``[B, n_c]`` -> MLP encoder -> embedding ``z_c [B, D]`` ->
a 3-level ``ResidualVQ`` (vector-quantize-pytorch): level 0 quantizes ``z_c``, level ``l``
quantizes the residual ``z_c - sum_{j<l} q_j``, with EMA codebooks of the category's own sizes.
A shared decoder maps the concatenated quantized embeddings ``[B, C * D]`` to the whole cleaned
vector ``[B, F]`` in its original column order. Tokens are ``[B, C * 3]`` int64, category-major,
level-minor.

The constructor takes plain keyword arguments only, kept in ``init_kwargs`` so that a checkpoint
rebuilds the model; :meth:`CategoricalVQVAE.from_config` is the one place where the pydantic
``VQModelConfig`` becomes those arguments.

``use_ema: false`` uses the library's learnable codebook (``learnable_codebook=True,
ema_update=False``): the codebook is then a parameter trained by the optimizer through the
library's commitment term ``commitment_cost * mean (q - z)^2``, whose gradient reaches both the
codes and the encoder (codebook and commitment losses share one weight); ``decay`` then only sets
the moving average of code use behind dead-code expiry.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn
from vector_quantize_pytorch import ResidualVQ

from spinlock_core.config.tokenizer import NUM_LEVELS
from spinlock_core.operators.blocks import ACTIVATIONS  # one activation table for the project
from spinlock_core.tokenizer.categories import codebook_sizes as rule_codebook_sizes

__all__ = ["ACTIVATIONS", "NUM_LEVELS", "CategoricalVQVAE"]


def _mlp(sizes: list[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _int(v, what: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _validate_assignment(assignment) -> np.ndarray:
    a = np.asarray(assignment)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"assignment must be a non-empty 1-D list of category labels [F], got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"assignment must hold integer category labels, got dtype {a.dtype}")
    labels = np.unique(a)
    if labels[0] != 0 or labels[-1] != labels.size - 1:
        raise ValueError(f"assignment labels must be 0..C-1 with every category present, got {labels.tolist()}")
    return a.astype(np.int64)


class _Category(nn.Module):
    """One category: column gather (buffer), MLP encoder, residual quantizer (None: identity)."""

    def __init__(self, columns, sizes, embedding_dim, hidden_dim, activation, vq_kwargs):
        super().__init__()
        self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.long))
        self.encoder = _mlp([len(columns), hidden_dim, embedding_dim], activation)
        self.rvq = None if vq_kwargs is None else ResidualVQ(
            dim=embedding_dim, codebook_size=tuple(sizes), num_quantizers=len(sizes), **vq_kwargs
        )


class CategoricalVQVAE(nn.Module):
    """See the module docstring. Keyword arguments:

    assignment: ``[F]`` category label (``0..C-1``) of every input column.
    codebook_sizes: ``C`` lists ``[K0, K1, K2]``, each ``>= 2``.
    embedding_dim, hidden_dim: encoder ``n_c -> hidden_dim -> embedding_dim``.
    decoder_hidden_dims: hidden layers of the shared decoder (``[]``: one linear layer).
    activation: one of :data:`ACTIVATIONS`.
    commitment_cost: the library's ``commitment_weight``.
    use_ema, decay, kmeans_init, kmeans_iters, threshold_ema_dead_code, rotation_trick: passed
        to every ``VectorQuantize`` explicitly (the library's defaults differ from SPEC 9).
    quantize: False replaces the quantizers by the identity (tokens None), a benchmark of what
        quantization costs.

    Raises:
        ValueError: any argument out of range or inconsistent (named in the message).
    """

    def __init__(
        self, *, assignment, codebook_sizes, embedding_dim: int = 256, hidden_dim: int = 512,
        decoder_hidden_dims=(512, 512), activation: str = "relu", commitment_cost: float = 0.25,
        use_ema: bool = True, decay: float = 0.99, kmeans_init: bool = True, kmeans_iters: int = 10,
        threshold_ema_dead_code: float = 1.0, rotation_trick: bool = False, quantize: bool = True,
    ):
        super().__init__()
        a = _validate_assignment(assignment)
        n_cat = int(a.max()) + 1
        sizes = [list(s) if isinstance(s, (list, tuple)) else s for s in codebook_sizes]
        if len(sizes) != n_cat or any(not isinstance(s, list) or len(s) != NUM_LEVELS for s in sizes):
            raise ValueError(f"codebook_sizes must list {NUM_LEVELS} sizes for each of the {n_cat} categories, got {codebook_sizes!r}")
        sizes = [[_int(k, f"codebook size of category {c} level {l}", 2) for l, k in enumerate(s)] for c, s in enumerate(sizes)]
        embedding_dim = _int(embedding_dim, "embedding_dim", 1)
        hidden_dim = _int(hidden_dim, "hidden_dim", 1)
        decoder_hidden_dims = [_int(h, "decoder_hidden_dims entry", 1) for h in decoder_hidden_dims]
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
        if not commitment_cost >= 0:
            raise ValueError(f"commitment_cost must be >= 0, got {commitment_cost!r}")
        if not 0 < decay <= 1:
            raise ValueError(f"decay must lie in (0, 1], got {decay!r}")
        if not threshold_ema_dead_code >= 0:
            raise ValueError(f"threshold_ema_dead_code must be >= 0, got {threshold_ema_dead_code!r}")
        kmeans_iters = _int(kmeans_iters, "kmeans_iters", 1)
        self.init_kwargs = {
            "assignment": a.tolist(), "codebook_sizes": sizes, "embedding_dim": embedding_dim, "hidden_dim": hidden_dim,
            "decoder_hidden_dims": decoder_hidden_dims, "activation": activation, "commitment_cost": float(commitment_cost),
            "use_ema": bool(use_ema), "decay": float(decay), "kmeans_init": bool(kmeans_init), "kmeans_iters": kmeans_iters,
            "threshold_ema_dead_code": float(threshold_ema_dead_code), "rotation_trick": bool(rotation_trick),
            "quantize": bool(quantize),
        }
        vq_kwargs = None if not quantize else {
            "decay": float(decay), "commitment_weight": float(commitment_cost), "kmeans_init": bool(kmeans_init),
            "kmeans_iters": kmeans_iters, "threshold_ema_dead_code": float(threshold_ema_dead_code),
            "rotation_trick": bool(rotation_trick), "ema_update": bool(use_ema), "learnable_codebook": not use_ema,
            # the library's defaults, pinned so that an upgrade cannot change them silently
            "use_cosine_sim": False, "straight_through": False, "stochastic_sample_codes": False,
            "orthogonal_reg_weight": 0.0, "codebook_diversity_loss_weight": 0.0, "quantize_dropout": False,
            "quant_grad_frac": 0.0, "shared_codebook": False,
            "sync_codebook": False,  # single-process training; the default syncs whenever torch.distributed is up
        }
        self.num_features, self.num_categories, self.num_levels = int(a.size), n_cat, NUM_LEVELS
        self.embedding_dim = embedding_dim
        self.quantize = bool(quantize)
        self.codebook_sizes = sizes
        self.categories = nn.ModuleList(
            _Category(np.flatnonzero(a == c), sizes[c], embedding_dim, hidden_dim, activation, vq_kwargs)
            for c in range(n_cat)
        )
        self.decoder = _mlp([n_cat * embedding_dim, *decoder_hidden_dims, self.num_features], activation)

    @classmethod
    def from_config(cls, assignment, model_cfg, **overrides) -> CategoricalVQVAE:
        """Build from a ``VQModelConfig``: sizes from ``codebook_sizes(n_c, codebook_scale,
        levels or None)`` per category; ``overrides`` (e.g. ``quantize=False``) pass through."""
        a = _validate_assignment(assignment)
        sizes = [list(rule_codebook_sizes(int(n), model_cfg.codebook_scale, model_cfg.levels or None))
                 for n in np.bincount(a)]
        kwargs = {
            "assignment": a.tolist(), "codebook_sizes": sizes, "embedding_dim": model_cfg.group_embedding_dim,
            "hidden_dim": model_cfg.group_hidden_dim, "decoder_hidden_dims": list(model_cfg.decoder_hidden_dims),
            "activation": model_cfg.activation, "commitment_cost": model_cfg.commitment_cost, "use_ema": model_cfg.use_ema,
            "decay": model_cfg.decay, "kmeans_init": model_cfg.kmeans_init,
            "threshold_ema_dead_code": model_cfg.threshold_ema_dead_code, "rotation_trick": model_cfg.rotation_trick,
        }
        return cls(**{**kwargs, **overrides})

    @property
    def token_sizes(self) -> list[int]:
        """``[C * 3]`` codebook size of every token column (category-major, level-minor)."""
        return [k for s in self.codebook_sizes for k in s]

    @property
    def reset_cluster_size(self) -> float:
        """EMA use given to a re-seeded code: at least the expiry threshold, so that the library
        does not expire it again at once, and above 0, or the next EMA update (``embed_avg /
        cluster_size``) would move it to the origin."""
        return max(self.init_kwargs["threshold_ema_dead_code"], 1.0)

    def _device(self) -> torch.device:
        return self.decoder[0].weight.device

    def _as_input(self, x) -> Tensor:
        if not torch.is_tensor(x):
            x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"x must be [B, F = {self.num_features}] (one column per assignment entry), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"x must be floating point, got dtype {x.dtype}")
        return x.to(self._device(), torch.float32)

    @contextmanager
    def _evaluating(self):
        was = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was)

    def _require_quantizers(self, what: str) -> None:
        if not self.quantize:
            raise ValueError(f"{what} needs quantizers; this model was built with quantize=False")

    def forward(self, x) -> dict:
        """``x [B, F]`` -> dict with ``reconstruction [B, F]``, ``tokens [B, C * 3]`` int64 (None
        without quantizers), ``commit_loss`` (scalar, the sum of ``commit_losses [C, 3]``),
        ``embeddings`` (``C`` pre-quantization ``[B, D]``), ``quantized`` (``C`` ``[B, D]``).

        In training mode the commitment losses are the library's (and its EMA codebooks update);
        in eval mode, where the library returns zeros, the same formula
        ``commitment_cost * mean (q_l - r_l)^2`` is evaluated from the chosen codes.
        """
        x = self._as_input(x)
        embeddings, quantized, tokens, commits = [], [], [], []
        for cat in self.categories:
            z = cat.encoder(x.index_select(1, cat.columns))
            embeddings.append(z)
            if cat.rvq is None:
                quantized.append(z)
                continue
            q, idx, loss = cat.rvq(z)
            if not self.training:
                loss = self._commit_from_codes(cat.rvq, z, idx)
            quantized.append(q)
            tokens.append(idx)
            commits.append(loss)
        reconstruction = self.decoder(torch.cat(quantized, dim=1))
        commit_losses = torch.stack(commits) if commits else x.new_zeros(self.num_categories, 0)
        return {
            "reconstruction": reconstruction,
            "tokens": torch.cat(tokens, dim=1) if tokens else None,
            "commit_loss": commit_losses.sum(),
            "commit_losses": commit_losses,
            "embeddings": embeddings,
            "quantized": quantized,
        }

    def _commit_from_codes(self, rvq, z: Tensor, idx: Tensor) -> Tensor:
        codes = rvq.get_codes_from_indices(idx)  # [L, B, D]
        w = self.init_kwargs["commitment_cost"]
        residual, out = z, []
        for code in codes:
            out.append(w * torch.mean((code - residual) ** 2))
            residual = residual - code
        return torch.stack(out)

    def tokenize(self, x) -> Tensor:
        """``x [B, F]`` -> tokens ``[B, C * 3]`` int64, in eval mode (no codebook update).

        Raises:
            ValueError: wrong shape or dtype of ``x``; a model without quantizers.
        """
        with torch.no_grad():  # a block, not a decorator: mutmut mutates only undecorated functions
            self._require_quantizers("tokenize")
            with self._evaluating():
                return self.forward(x)["tokens"]

    def _check_tokens(self, tokens) -> Tensor:
        t = torch.as_tensor(tokens)
        n = self.num_categories * self.num_levels
        if t.ndim != 2 or t.shape[1] != n:
            raise ValueError(f"tokens must be [B, C * {self.num_levels} = {n}], got shape {tuple(t.shape)}")
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"tokens must be integers, got dtype {t.dtype}")
        t = t.to(self._device(), torch.long)
        sizes = torch.as_tensor(self.token_sizes, device=t.device)
        bad = (t < 0) | (t >= sizes)
        if t.numel() and bool(bad.any()):
            j = int(bad.any(dim=0).nonzero()[0])
            col = t[:, j]
            raise ValueError(
                f"token column {j} (category {j // self.num_levels}, level {j % self.num_levels}) has values in "
                f"[{int(col.min())}, {int(col.max())}] outside [0, {self.token_sizes[j]})"
            )
        return t

    def decode_tokens(self, tokens, levels: int = NUM_LEVELS) -> Tensor:
        """Tokens ``[B, C * 3]`` -> reconstruction ``[B, F]`` from the codes of the first
        ``levels`` levels of every category (``sum_{l < levels} q_l``, summed in level order as
        the forward pass does).

        Raises:
            ValueError: wrong shape, non-integer or out-of-range tokens (the column is named);
                ``levels`` outside ``[1, 3]``; a model without quantizers.
        """
        with torch.no_grad():  # a block, not a decorator: mutmut mutates only undecorated functions
            self._require_quantizers("decode_tokens")
            if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or not 1 <= levels <= self.num_levels:
                raise ValueError(f"levels must be an integer in [1, {self.num_levels}], got {levels!r}")
            t = self._check_tokens(tokens)
            parts = []
            for c, cat in enumerate(self.categories):
                codes = cat.rvq.get_codes_from_indices(t[:, c * self.num_levels:(c + 1) * self.num_levels])
                q = codes[0]
                for l in range(1, int(levels)):
                    q = q + codes[l]
                parts.append(q)
            with self._evaluating():
                return self.decoder(torch.cat(parts, dim=1))

    def reconstruct_levels(self, x) -> list[Tensor]:
        """``x [B, F]`` -> the reconstructions ``[B, F]`` decoded from levels {0}, {0, 1},
        {0, 1, 2} (the last equals the eval-mode forward reconstruction)."""
        with torch.no_grad():  # a block, not a decorator: mutmut mutates only undecorated functions
            tokens = self.tokenize(x)
            return [self.decode_tokens(tokens, levels=l) for l in range(1, self.num_levels + 1)]

    def reseed_codes(self, x, dead: Tensor, generator: torch.Generator | None = None) -> int:
        """Re-seed the codes marked in ``dead`` from random rows of this batch.

        Args:
            x: a batch ``[B, F]``.
            dead: ``[sum(token_sizes)]`` bool, the codebooks' masks concatenated in token-column
                order. Level 0 codes are drawn from the embeddings, level ``l`` codes from the
                residuals left by levels ``< l`` (after their own re-seeding).
            generator: the draws (rows without replacement; when more codes than rows are dead,
                a random ``B`` of them now and the rest at a later call, as the library does).

        A re-seeded code gets ``cluster_size = reset_cluster_size`` and ``embed_avg = code *
        reset_cluster_size``, the buffers the library's EMA update divides. Returns the number
        of codes re-seeded.
        """
        with torch.no_grad():  # a block, not a decorator: mutmut mutates only undecorated functions
            self._require_quantizers("reseed_codes")
            x = self._as_input(x)
            dead = torch.as_tensor(dead, dtype=torch.bool, device=x.device)
            if dead.shape != (sum(self.token_sizes),):
                raise ValueError(f"dead must be a [{sum(self.token_sizes)}] bool mask (all codebooks), got shape {tuple(dead.shape)}")
            offsets = np.cumsum([0, *self.token_sizes])
            size, n = self.reset_cluster_size, 0
            with self._evaluating():
                for c, cat in enumerate(self.categories):
                    residual = cat.encoder(x.index_select(1, cat.columns))
                    for l, vq in enumerate(cat.rvq.layers):
                        j = c * self.num_levels + l
                        idx = dead[offsets[j]:offsets[j + 1]].nonzero().squeeze(1)
                        if idx.numel():
                            # the library's Codebook.replace writes the same buffers, but with its
                            # reset size tied to the expiry threshold (0 would send the code to the
                            # origin at the next EMA update) and draws from the global RNG
                            if idx.numel() > residual.shape[0]:
                                idx = idx[torch.randperm(idx.numel(), generator=generator, device=x.device)[:residual.shape[0]]]
                            rows = torch.randperm(residual.shape[0], generator=generator, device=x.device)[:idx.numel()]
                            book, new = vq._codebook, residual[rows].to(vq._codebook.embed.dtype)
                            book.embed.data[0, idx] = new
                            book.embed_avg.data[0, idx] = new * size
                            book.cluster_size.data[0, idx] = size
                            n += idx.numel()
                        q, _, _ = vq(residual)
                        residual = residual - q
            return n
