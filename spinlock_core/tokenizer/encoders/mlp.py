"""An MLP encoder of a vector family (``[B, F] -> [B, D]``) and the decoder it is pre-trained with."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ...operators.blocks import ACTIVATIONS
from .shapes import check_names, check_vector

__all__ = ["ACTIVATIONS", "MLPEncoder", "MLPDecoder"]

def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _mlp(dims: list[int], activation: str, dropout: float, batch_norm: bool) -> nn.Sequential:
    """Linear layers through ``dims``; every hidden layer is Linear [-> BatchNorm] -> act [-> Dropout]."""
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-2], dims[1:-1]):
        layers.append(nn.Linear(d_in, d_out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(d_out))
        layers.append(_activation(activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(dims[-2], dims[-1]))
    return nn.Sequential(*layers)


def _check_dims(input_dim: int, hidden_dims: Sequence[int], output_dim: int, dropout: float) -> list[int]:
    dims = [int(input_dim), *(int(h) for h in hidden_dims), int(output_dim)]
    if min(dims) < 1:
        raise ValueError(f"input_dim, hidden_dims and output_dim must be >= 1, got {dims}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    return dims


class MLPEncoder(nn.Module):
    """``[B, F] -> [B, D]``: Linear layers through ``hidden_dims`` to ``output_dim``.

    With ``batch_norm`` a row's embedding depends on its batch neighbours while training (eval
    mode uses running statistics); the config allows it for the seed's sake.

    Args:
        input_dim: F. hidden_dims: widths of the hidden layers (may be empty). output_dim: D.
        dropout: after every hidden activation. activation: a key of :data:`ACTIVATIONS`.
        name_prefix: output columns are ``f"{name_prefix}emb_{i:03d}"``.

    Raises:
        ValueError: a width < 1, dropout outside [0, 1), an unknown activation; in ``forward``, an
            input that is not ``[B, input_dim]``.
    """

    reads = "vector"
    trained = True

    def __init__(self, input_dim: int, hidden_dims: Sequence[int], output_dim: int, dropout: float = 0.0,
                 activation: str = "relu", batch_norm: bool = False, name_prefix: str = ""):
        super().__init__()
        dims = _check_dims(input_dim, hidden_dims, output_dim, dropout)
        self.input_dim, self.output_dim = dims[0], dims[-1]
        self.name_prefix = str(name_prefix)
        self.init_kwargs = {
            "input_dim": dims[0], "hidden_dims": dims[1:-1], "output_dim": dims[-1], "dropout": float(dropout),
            "activation": activation, "batch_norm": bool(batch_norm), "name_prefix": self.name_prefix,
        }
        self.net = _mlp(dims, activation, float(dropout), bool(batch_norm))

    @staticmethod
    def kwargs_from_params(params: dict[str, Any], *, input_dim: int, num_states, feature_names, name_prefix) -> dict:
        """Constructor kwargs from ``MLPParams`` (a dict) and the family's shape."""
        return {**params, "input_dim": input_dim, "name_prefix": name_prefix}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_vector(x, self.input_dim, type(self).__name__)
        return self.net(x)

    def output_names(self, input_names: Sequence[str] | None = None) -> list[str]:
        """``{name_prefix}emb_000``... (``output_dim`` of them); ``input_names`` only has its length checked."""
        if input_names is not None:
            check_names(input_names, self.input_dim, type(self).__name__)
        return [f"{self.name_prefix}emb_{i:03d}" for i in range(self.output_dim)]

    def make_decoder(self) -> "MLPDecoder":
        """The mirror decoder for pre-training (see :class:`MLPDecoder`)."""
        kw = self.init_kwargs
        return MLPDecoder(kw["output_dim"], kw["hidden_dims"], kw["input_dim"], activation=kw["activation"],
                          batch_norm=kw["batch_norm"])


class MLPDecoder(nn.Module):
    """``[B, D] -> [B, F]``, the mirror of :class:`MLPEncoder`: ``D -> reversed(hidden_dims) -> F``.

    Same activation and batch norm as the encoder, no dropout (only the encoder is kept, and noise
    in the decoder would only slow pre-training).
    """

    def __init__(self, embedding_dim: int, hidden_dims: Sequence[int], output_dim: int, activation: str = "relu",
                 batch_norm: bool = False):
        super().__init__()
        dims = _check_dims(embedding_dim, list(hidden_dims)[::-1], output_dim, 0.0)
        self.net = _mlp(dims, activation, 0.0, bool(batch_norm))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
