"""The random CNN operator (SPEC section 4), rebuilt bit-identically from (spec, root seed, index)."""

from __future__ import annotations

import torch
from torch import nn

from ..rng import DrawKey
from ..seeding import torch_generator
from .blocks import ConvBlock, init_conv_
from .noise import draw_noise, schedule_factor
from .spec import OperatorSpec

__all__ = ["RandomCNNOperator", "build_operator"]


class RandomCNNOperator(nn.Module):
    """Input conv block ``C -> b``, ``num_layers`` conv blocks of widths b, 2b, 4b, 4b, ...
    (residual where widths match and ``num_layers > 3``), additive noise on the last hidden width,
    then a 1x1 conv back to ``C`` channels.

    ``forward(u [M, C, H, W], step, key)`` applies ``O`` once at application ``step`` (which sets
    the noise schedule); row ``i`` draws its noise and dropout masks as realization
    ``key.realizations[i]`` at counter step ``key.step`` (:class:`~spinlock_core.rng.DrawKey`).
    With ``key=None`` the operator is deterministic (no noise, no dropout): that is ``O`` alone,
    used for sensitivity features.
    """

    def __init__(self, spec: OperatorSpec, generator: torch.Generator, *, num_steps: int = 1, noise_period: int = 32):
        super().__init__()
        self.spec = spec
        self.num_steps = num_steps
        self.noise_period = noise_period
        common = dict(
            kernel_size=spec.kernel_size,
            padding_mode=spec.padding_mode,
            normalization=spec.normalization,
            activation=spec.activation,
            dropout=spec.dropout_rate,
            generator=generator,
        )
        b = spec.base_channels
        self.input_block = ConvBlock(spec.channels, b, residual=False, **common)
        blocks, c_in = [], b
        for w in spec.widths():
            blocks.append(ConvBlock(c_in, w, residual=spec.num_layers > 3, **common))
            c_in = w
        self.blocks = nn.ModuleList(blocks)
        self.hidden = c_in
        self.head = nn.Conv2d(c_in, spec.channels, 1)
        init_conv_(self.head, generator)

    def forward(self, u: torch.Tensor, step: int = 0, key: DrawKey | None = None) -> torch.Tensor:
        """``u [M, C, H, W] -> O(u) [M, C, H, W]``.

        Raises:
            ValueError: ``key`` names a different number of realizations than ``u`` has rows.
        """
        if key is not None and len(key.realizations) != u.shape[0]:
            raise ValueError(f"key has {len(key.realizations)} realizations for a batch of {u.shape[0]}")
        h = self.input_block(u, key, 0)
        for block, blk in enumerate(self.blocks, start=1):
            h = blk(h, key, block)
        s = self.spec
        if key is not None and s.noise_scale > 0:
            amp = s.noise_scale * schedule_factor(s.noise_schedule, step, self.num_steps, self.noise_period)
            if amp != 0.0:
                eps = draw_noise(tuple(h.shape[1:]), s.noise_type, s.spatial_correlation, key, h.device, h.dtype)
                h = h + amp * eps
        return self.head(h)


def build_operator(
    spec: OperatorSpec, *, root_seed: int, index: int, num_steps: int = 1, noise_period: int = 32, device="cpu"
) -> RandomCNNOperator:
    """Build operator ``index`` of the experiment with root seed ``root_seed``.

    Weights are drawn on the CPU from ``(root_seed, "operator", index)`` and then moved to
    ``device``, so they are identical on every device and in every process.
    """
    g = torch_generator(root_seed, "operator", index)
    op = RandomCNNOperator(spec, g, num_steps=num_steps, noise_period=noise_period)
    return op.to(device).eval()
