"""A 1-D ResNet over the states of a sequence family (``[B, T', F] -> [B, D]``) and its pre-training decoder.

Features are the channels and the convolutions run along the state axis. Normalisation is
GroupNorm (per row, over a group of channels and all states), never BatchNorm: a row's embedding
must not depend on the rows batched with it, or the frozen encoder would give an operator other
features depending on who it is encoded with.

Head: the last block's activations ``h [B, C, T']`` are summarised by three per-channel
statistics over the states, concatenated ``[B, 3C]`` and mapped by one Linear to ``[B, D]``:

* the mean over states (the level),
* the last state (where the trajectory ends up; a mean alone would forget the order of states),
* the least-squares slope over the state index (the trend; 0 with a single state).

It keeps the head's size independent of T' and uses no attention; the order of states enters
through the convolutions, the last state and the slope.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import torch
from einops import rearrange
from torch import nn

from .shapes import check_names, check_sequence

__all__ = ["parse_architecture", "ResidualBlock1d", "TemporalCNNEncoder", "TemporalDecoder"]

#: the statistics the head concatenates, in order (each ``[B, C]``)
HEAD_STATISTICS = ("mean", "last", "slope")


def parse_architecture(architecture: str) -> int:
    """The number of residual blocks of ``'resnet1d_<blocks>'``.

    Raises:
        ValueError: another pattern, or fewer than 1 block.
    """
    m = re.fullmatch(r"resnet1d_(\d+)", str(architecture))
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"architecture must be 'resnet1d_<blocks>' with blocks >= 1, e.g. 'resnet1d_3'; got {architecture!r}")
    return int(m.group(1))


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


def _conv(c_in: int, c_out: int, kernel_size: int) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2)


def _slope_weights(num_states: int) -> torch.Tensor:
    """``w [T']`` with ``h @ w`` the least-squares slope of ``h`` over the state index 0..T'-1."""
    t = torch.arange(num_states, dtype=torch.float64)
    t = t - t.mean()
    denom = (t * t).sum()
    return (t / denom if denom > 0 else t).to(torch.float32)


class ResidualBlock1d(nn.Module):
    """``[B, C, T'] -> [B, C, T']``: act(x + norm(conv(act(norm(conv(x))))))."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels, kernel_size), _norm(channels), nn.GELU(),
            _conv(channels, channels, kernel_size), _norm(channels),
        )
        self.act = nn.GELU()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(h + self.body(h))


def _check(num_features: int, num_states: int, embedding_dim: int, blocks: int, hidden_channels: int,
           kernel_size: int) -> None:
    sizes = dict(num_features=num_features, num_states=num_states, embedding_dim=embedding_dim, blocks=blocks,
                 hidden_channels=hidden_channels, kernel_size=kernel_size)
    if bad := {k: v for k, v in sizes.items() if int(v) < 1}:
        raise ValueError(f"sizes must be >= 1, got {bad}")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same-length convolutions over the states), got {kernel_size}")


class TemporalCNNEncoder(nn.Module):
    """``[B, T', F] -> [B, embedding_dim]``: stem conv, ``blocks`` residual blocks, mean/last/slope head.

    Args:
        num_features: F (channels). num_states: T'. embedding_dim: D.
        blocks: residual blocks (``resnet1d_<blocks>``). hidden_channels: C. kernel_size: odd.
        name_prefix: output columns are ``f"{name_prefix}emb_{i:03d}"``.

    Raises:
        ValueError: a size < 1 or an even kernel; in ``forward``, an input that is not
            ``[B, num_states, num_features]``.
    """

    reads = "sequence"
    trained = True

    def __init__(self, num_features: int, num_states: int, embedding_dim: int = 128, blocks: int = 3,
                 hidden_channels: int = 64, kernel_size: int = 5, name_prefix: str = ""):
        super().__init__()
        _check(num_features, num_states, embedding_dim, blocks, hidden_channels, kernel_size)
        self.num_features, self.num_states = int(num_features), int(num_states)
        self.input_dim, self.output_dim = self.num_features, int(embedding_dim)
        self.name_prefix = str(name_prefix)
        self.init_kwargs = {
            "num_features": self.num_features, "num_states": self.num_states, "embedding_dim": self.output_dim,
            "blocks": int(blocks), "hidden_channels": int(hidden_channels), "kernel_size": int(kernel_size),
            "name_prefix": self.name_prefix,
        }
        c = int(hidden_channels)
        self.stem = nn.Sequential(_conv(self.num_features, c, kernel_size), _norm(c), nn.GELU())
        self.blocks = nn.Sequential(*(ResidualBlock1d(c, kernel_size) for _ in range(int(blocks))))
        self.head = nn.Linear(len(HEAD_STATISTICS) * c, self.output_dim)
        # derived from num_states, so not part of the state dict
        self.register_buffer("slope_weights", _slope_weights(self.num_states), persistent=False)

    @staticmethod
    def kwargs_from_params(params: dict[str, Any], *, input_dim: int, num_states, feature_names, name_prefix) -> dict:
        """Constructor kwargs from ``TemporalCNNParams`` (a dict; ``architecture`` -> ``blocks``)."""
        params = dict(params)
        blocks = parse_architecture(params.pop("architecture"))
        return {**params, "blocks": blocks, "num_features": input_dim, "num_states": num_states,
                "name_prefix": name_prefix}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_sequence(x, self.num_states, self.num_features, type(self).__name__)
        h = self.blocks(self.stem(rearrange(x, "b t f -> b f t")))  # [B, C, T']
        summary = torch.cat([h.mean(dim=-1), h[..., -1], h @ self.slope_weights], dim=-1)  # [B, 3C]
        return self.head(summary)

    def output_names(self, input_names: Sequence[str] | None = None) -> list[str]:
        """``{name_prefix}emb_000``... (``output_dim`` of them); ``input_names`` (the F features) only has its length checked."""
        if input_names is not None:
            check_names(input_names, self.num_features, type(self).__name__)
        return [f"{self.name_prefix}emb_{i:03d}" for i in range(self.output_dim)]

    def make_decoder(self) -> "TemporalDecoder":
        """The decoder for pre-training (see :class:`TemporalDecoder`)."""
        kw = self.init_kwargs
        return TemporalDecoder(kw["embedding_dim"], kw["num_states"], kw["num_features"], kw["hidden_channels"],
                               kernel_size=kw["kernel_size"])


class TemporalDecoder(nn.Module):
    """``[B, D] -> [B, T', F]``: Linear to ``[B, C, T']``, one residual block, a conv to F channels."""

    def __init__(self, embedding_dim: int, num_states: int, num_features: int, hidden_channels: int,
                 kernel_size: int = 5):
        super().__init__()
        _check(num_features, num_states, embedding_dim, 1, hidden_channels, kernel_size)
        self.num_states, self.hidden_channels = int(num_states), int(hidden_channels)
        self.expand = nn.Linear(int(embedding_dim), self.hidden_channels * self.num_states)
        self.body = nn.Sequential(
            _norm(self.hidden_channels), nn.GELU(), ResidualBlock1d(self.hidden_channels, kernel_size),
            _conv(self.hidden_channels, int(num_features), kernel_size),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = rearrange(self.expand(z), "b (c t) -> b c t", c=self.hidden_channels, t=self.num_states)
        return rearrange(self.body(h), "b f t -> b t f")
