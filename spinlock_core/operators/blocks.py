"""Building blocks of a random CNN operator: activations, normalisation, seeded dropout, conv blocks."""

from __future__ import annotations

import math

import torch
from torch import nn

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


def seeded_dropout(h: torch.Tensor, p: float, generators: list[torch.Generator]) -> torch.Tensor:
    """Element-wise dropout of ``h [M, C, H, W]`` with realisation ``m``'s mask drawn from
    ``generators[m]`` (dropout is part of the operator's stochasticity, active in rollouts)."""
    if p <= 0.0:
        return h
    if len(generators) != h.shape[0]:
        raise ValueError(f"need one generator per realisation: {len(generators)} for batch {h.shape[0]}")
    keep = torch.stack(
        [torch.rand(h.shape[1:], generator=g, device=h.device, dtype=h.dtype) for g in generators]
    ) >= p
    return h * keep / (1.0 - p)


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

    def forward(self, x: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        h = seeded_dropout(self.act(self.norm(self.conv(x))), self.dropout, generators)
        return x + h if self.residual else h
