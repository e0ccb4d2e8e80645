"""Evolution policies: how one operator application updates the state."""

from __future__ import annotations

import torch

__all__ = ["POLICIES", "apply_policy"]

POLICIES = ("residual", "convex", "autoregressive")


def apply_policy(policy: str, u: torch.Tensor, ou: torch.Tensor, *, dt: float, alpha: float) -> torch.Tensor:
    """``residual``: ``u + dt O(u)``; ``convex``: ``alpha u + (1 - alpha) O(u)``;
    ``autoregressive``: ``O(u)``. Shapes ``[M, C, H, W]``."""
    if policy == "residual":
        return u + dt * ou
    if policy == "convex":
        return alpha * u + (1.0 - alpha) * ou
    if policy == "autoregressive":
        return ou
    raise ValueError(f"update_policy: unknown {policy!r}; known: {POLICIES}")
