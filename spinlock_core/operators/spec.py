"""Resolved settings of one operator: sampled values merged with the experiment's defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["OperatorSpec", "operator_spec", "noise_regime"]


@dataclass(frozen=True)
class OperatorSpec:
    num_layers: int = 2
    base_channels: int = 16
    kernel_size: int = 3
    activation: str = "gelu"
    dropout_rate: float = 0.0
    padding_mode: str = "circular"
    normalization: str = "instance"
    grid_size: int = 64
    noise_type: str = "gaussian"
    noise_scale: float = 0.0
    noise_schedule: str = "constant"
    spatial_correlation: float = 0.0
    update_policy: str = "residual"
    dt: float = 0.01
    alpha: float = 0.5
    channels: int = 3

    def widths(self) -> list[int]:
        """Output widths of the ``num_layers`` blocks after the input block: b, 2b, 4b, 4b, ..."""
        return [self.base_channels * min(2**i, 4) for i in range(self.num_layers)]

    def conv_flops(self, realizations: int) -> float:
        """FLOPs (2 per multiply-add) of the convolutions of one step on ``realizations`` fields."""
        hw = self.grid_size**2
        k2 = self.kernel_size**2
        widths = [self.base_channels, *self.widths()]
        macs = self.channels * widths[0] * k2
        for a, b in zip(widths[:-1], widths[1:]):
            macs += a * b * k2
        macs += widths[-1] * self.channels
        return 2.0 * macs * hw * realizations

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def operator_spec(decoded: dict[str, Any], *, grid_size: int, channels: int, dt: float, alpha: float) -> OperatorSpec:
    """Merge one operator's decoded parameters with defaults (``dt``/``alpha`` from the simulation
    config when not sampled)."""
    values = {"grid_size": grid_size, "channels": channels, "dt": dt, "alpha": alpha}
    for k, v in decoded.items():
        values[k] = v
    typed = {
        "num_layers": int,
        "base_channels": int,
        "kernel_size": int,
        "grid_size": int,
        "channels": int,
        "dropout_rate": float,
        "noise_scale": float,
        "spatial_correlation": float,
        "dt": float,
        "alpha": float,
    }
    for k, t in typed.items():
        if k in values:
            values[k] = t(values[k])
    for k in ("activation", "padding_mode", "normalization", "noise_type", "noise_schedule", "update_policy"):
        if k in values:
            values[k] = str(values[k])
    return OperatorSpec(**values)


def noise_regime(noise_scale: float) -> str:
    """"low" below 0.01, "medium" below 0.1, else "high"."""
    return "low" if noise_scale < 0.01 else ("medium" if noise_scale < 0.1 else "high")
