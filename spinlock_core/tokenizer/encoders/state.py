"""An encoder as a plain dict (class, constructor kwargs, weights, format version) and back,
so that a checkpoint rebuilds its encoders from the file alone."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .registry import ENCODER_CLASSES

__all__ = ["STATE_FORMAT", "STATE_VERSION", "encoder_state", "encoder_from_state"]

STATE_FORMAT = "spinlock.family_encoder"
STATE_VERSION = 1


def encoder_state(encoder: nn.Module) -> dict[str, Any]:
    """``{"format", "version", "class", "kwargs", "state_dict"}`` of ``encoder`` (weights on the CPU).

    Raises:
        ValueError: an encoder that is not in :data:`.registry.ENCODER_CLASSES`.
    """
    name = type(encoder).__name__
    if ENCODER_CLASSES.get(name) is not type(encoder):
        raise ValueError(f"{name} is not a registered encoder; known: {', '.join(ENCODER_CLASSES)}")
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "class": name,
        "kwargs": dict(encoder.init_kwargs),
        "state_dict": {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()},
    }


def encoder_from_state(state: dict[str, Any]) -> nn.Module:
    """The encoder ``state`` describes, on the CPU, in eval mode and frozen.

    Raises:
        ValueError: not a dict of this format and version, an unknown class, or kwargs / weights
            that do not fit the class.
    """
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not an encoder state: expected format {STATE_FORMAT!r}, got {got!r}")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"encoder state version {state.get('version')!r} is not supported (this code reads {STATE_VERSION})")
    missing = [k for k in ("class", "kwargs", "state_dict") if k not in state]
    if missing:
        raise ValueError(f"encoder state lacks {missing}")
    cls = ENCODER_CLASSES.get(state["class"])
    if cls is None:
        raise ValueError(f"encoder state names an unknown class {state['class']!r}; known: {', '.join(ENCODER_CLASSES)}")
    try:
        encoder = cls(**state["kwargs"])
        encoder.load_state_dict({k: torch.as_tensor(v) for k, v in state["state_dict"].items()})
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"encoder state does not fit {state['class']}: {e}") from e
    return encoder.eval().requires_grad_(False)
