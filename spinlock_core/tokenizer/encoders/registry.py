"""Encoder name (the config's ``ENCODERS`` keys) -> class, and building encoders from config params.

A new encoder is a new file plus one line in :data:`ENCODER_CLASSES`. Each class maps its pydantic
params to constructor kwargs in its ``kwargs_from_params``; :func:`build_encoder` is the only caller.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
from pydantic import BaseModel
from torch import nn

from ...config.tokenizer import ENCODERS
from .identity import IdentityEncoder
from .mlp import MLPEncoder
from .pooled import PooledIdentityEncoder
from .temporal_cnn import TemporalCNNEncoder

__all__ = ["ENCODER_CLASSES", "build_encoder", "build_decoder", "seeded"]

ENCODER_CLASSES: dict[str, type[nn.Module]] = {
    "IdentityEncoder": IdentityEncoder,
    "MLPEncoder": MLPEncoder,
    "TemporalCNNEncoder": TemporalCNNEncoder,
    "PooledIdentityEncoder": PooledIdentityEncoder,
}


@contextlib.contextmanager
def seeded(seed: int | None):
    """Run the block with the CPU RNG seeded by ``seed`` and restore the caller's state after;
    nothing happens with ``None``. Modules are built on the CPU, so only its RNG is forked."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _params_dict(name: str, params: BaseModel | dict | None) -> dict[str, Any]:
    model = ENCODERS[name]
    if params is None or isinstance(params, dict):
        params = model.model_validate(params or {})
    if not isinstance(params, model):
        raise ValueError(f"{name} takes {model.__name__} params, got {type(params).__name__}")
    return params.model_dump()


def build_encoder(name: str, params: BaseModel | dict | None = None, *, input_dim: int, num_states: int | None = None,
                  feature_names: Sequence[str] | None = None, name_prefix: str = "", seed: int | None = None) -> nn.Module:
    """The encoder ``name`` configured by ``params`` (its ``ENCODERS`` params model, a dict of it, or
    None for the defaults), for a family of ``input_dim`` columns (F; for sequence families the
    features per state) and ``num_states`` states (sequence families only).

    ``seed``: weights are drawn under a forked CPU RNG seeded with it, so construction is
    deterministic and the caller's RNG state is untouched; None draws from the global RNG.

    Raises:
        ValueError: an unknown name, params of another encoder or invalid (pydantic's
            ``ValidationError`` is a ``ValueError``), a sequence encoder without ``num_states``.
    """
    if name not in ENCODER_CLASSES:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODER_CLASSES)}")
    cls = ENCODER_CLASSES[name]
    if cls.reads == "sequence" and num_states is None:
        raise ValueError(f"{name} reads sequences [B, T', F]: give num_states (T')")
    kwargs = cls.kwargs_from_params(
        _params_dict(name, params), input_dim=int(input_dim), num_states=num_states,
        feature_names=None if feature_names is None else list(feature_names), name_prefix=name_prefix,
    )
    with seeded(seed):
        return cls(**kwargs)


def build_decoder(encoder: nn.Module, *, seed: int | None = None) -> nn.Module:
    """The decoder a trained ``encoder`` is pre-trained with (``[B, D]`` -> the encoder's input shape).

    Raises:
        ValueError: an encoder without weights (nothing to pre-train).
    """
    if not getattr(encoder, "trained", False):
        raise ValueError(f"{type(encoder).__name__} has no weights to pre-train, hence no decoder")
    with seeded(seed):
        return encoder.make_decoder()
