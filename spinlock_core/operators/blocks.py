"""Building blocks of a random CNN operator: activations, normalisation, seeded dropout, conv blocks."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..rng import DrawKey, dropout_stream, keep_mask

__all__ = ["ACTIVATIONS", "make_activation", "make_norm", "ConvBlock", "seeded_dropout", "init_conv_"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: unknown {name!r}; known: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def make_norm(name: str, channels: int) -> nn.Module:
    """``instance`` = InstanceNorm2d(affine=True); ``layer`` = GroupNorm(1, C); ``none`` = identity."""
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if name == "layer":
        return nn.GroupNorm(1, channels, affine=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"normalization: unknown {name!r}; known: instance, layer, none")


def init_conv_(conv: nn.Conv2d, generator: torch.Generator) -> None:
    """PyTorch's default conv initialisation, drawn from ``generator`` (so it is reproducible):
    weights and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] // conv.groups
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        w = torch.rand(conv.weight.shape, generator=generator, dtype=torch.float32) * 2 - 1
        conv.weight.copy_(w * bound)
        if conv.bias is not None:
            b = torch.rand(conv.bias.shape, generator=generator, dtype=torch.float32) * 2 - 1
            conv.bias.copy_(b * bound)


def seeded_dropout(h: torch.Tensor, p: float, key: DrawKey | None, block: int) -> torch.Tensor:
    """Element-wise dropout of ``h [M, C, H, W]`` (part of the operator's stochasticity, active in
    rollouts): row ``i``'s keep mask is drawn for realization ``key.realizations[i]`` at counter
    step ``key.step`` on conv block ``block``'s stream; kept elements are scaled by ``1 / (1 - p)``.
    ``key=None`` or ``p <= 0`` returns ``h``.

    Raises:
        ValueError: ``key`` names a different number of realizations than ``h`` has rows.
    """
    if key is None or p <= 0.0:
        return h
    if len(key.realizations) != h.shape[0]:
        raise ValueError(f"dropout: key has {len(key.realizations)} realizations for a batch of {h.shape[0]}")
    keep = keep_mask(key, dropout_stream(block), tuple(h.shape[1:]), p, device=h.device)
    # a product with the scale, not a quotient: CUDA torch divides by a scalar via its reciprocal
    return h * keep * (1.0 / (1.0 - p))


class ConvBlock(nn.Module):
    """conv (kernel k, padding k//2, padding mode, no bias when normalised) -> norm -> activation
    -> dropout; residual (``x + block(x)``) when ``residual`` and widths match.

    Input and output ``[M, C, H, W]``.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        *,
        padding_mode: str,
        normalization: str,
        activation: str,
        dropout: float,
        residual: bool,
        generator: torch.Generator,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            c_in,
            c_out,
            kernel_size,
            padding=kernel_size // 2,
            padding_mode=padding_mode,
            bias=normalization == "none",
        )
        init_conv_(self.conv, generator)
        self.norm = make_norm(normalization, c_out)
        self.act = make_activation(activation)
        self.dropout = float(dropout)
        self.residual = bool(residual and c_in == c_out)

    def forward(self, x: torch.Tensor, key: DrawKey | None = None, block: int = 0) -> torch.Tensor:
        """``x [M, C_in, H, W] -> [M, C_out, H, W]``; dropout masks drawn with ``key`` as conv block
        number ``block`` of the operator (none when ``key`` is None)."""
        h = seeded_dropout(self.act(self.norm(self.conv(x))), self.dropout, key, block)
        return x + h if self.residual else h
