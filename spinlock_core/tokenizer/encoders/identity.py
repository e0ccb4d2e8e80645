"""The identity encoder: a family's cleaned columns pass through unchanged (categories stay readable)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .shapes import check_names, check_vector

__all__ = ["IdentityEncoder"]


class IdentityEncoder(nn.Module):
    """``[B, F] -> [B, F]``, the input itself; no weights.

    Args:
        input_dim: F, the number of cleaned columns.

    Raises:
        ValueError: ``input_dim < 1``; in ``forward``, an input that is not ``[B, input_dim]``.
    """

    reads = "vector"
    trained = False

    def __init__(self, input_dim: int):
        super().__init__()
        if int(input_dim) < 1:
            raise ValueError(f"input_dim must be >= 1, got {input_dim}")
        self.input_dim = self.output_dim = int(input_dim)
        self.init_kwargs = {"input_dim": self.input_dim}

    @staticmethod
    def kwargs_from_params(params: dict[str, Any], *, input_dim: int, num_states, feature_names, name_prefix) -> dict:
        """Constructor kwargs from ``IdentityParams`` (no fields) and the family's shape."""
        return {"input_dim": input_dim}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_vector(x, self.input_dim, type(self).__name__)
        return x

    def output_names(self, input_names: Sequence[str] | None = None) -> list[str]:
        """The input names themselves (``input_dim`` of them); ``col_000``... when none are given."""
        if input_names is None:
            return [f"col_{i:03d}" for i in range(self.input_dim)]
        return check_names(input_names, self.input_dim, type(self).__name__)
