"""Input checks shared by the encoders: a wrong shape raises a ``ValueError`` naming what was expected."""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["check_vector", "check_sequence", "check_names"]


def check_vector(x: torch.Tensor, num_features: int, who: str) -> None:
    """Raise unless ``x`` is ``[B, num_features]``."""
    if x.ndim != 2:
        raise ValueError(
            f"{who} expects rows [B, F] with F = {num_features}; got a {x.ndim}-d input of shape {tuple(x.shape)}"
        )
    if x.shape[1] != num_features:
        raise ValueError(f"{who} expects {num_features} features per row [B, {num_features}]; got {x.shape[1]}")


def check_sequence(x: torch.Tensor, num_states: int, num_features: int, who: str) -> None:
    """Raise unless ``x`` is ``[B, num_states, num_features]`` (states x features)."""
    if x.ndim != 3:
        raise ValueError(
            f"{who} expects sequences [B, T', F] with T' = {num_states} states and F = {num_features} features; "
            f"got a {x.ndim}-d input of shape {tuple(x.shape)}"
        )
    if x.shape[1] != num_states:
        raise ValueError(f"{who} expects {num_states} states [B, {num_states}, {num_features}]; got {x.shape[1]}")
    if x.shape[2] != num_features:
        raise ValueError(f"{who} expects {num_features} features [B, {num_states}, {num_features}]; got {x.shape[2]}")


def check_names(names: Sequence[str], expected: int, who: str) -> list[str]:
    """``names`` as a list, raising unless it has ``expected`` entries."""
    names = [str(n) for n in names]
    if len(names) != expected:
        raise ValueError(f"{who} reads {expected} input columns, but {len(names)} names were given")
    return names
