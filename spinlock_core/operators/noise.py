"""Additive noise of the operator: distribution, spatial correlation and time schedule."""

from __future__ import annotations

import math

import torch

from ..rng import NOISE, DrawKey, unit_noise

__all__ = ["NOISE_TYPES", "SCHEDULES", "draw_noise", "correlate", "schedule_factor"]

NOISE_TYPES = ("gaussian", "laplace", "uniform")
SCHEDULES = ("constant", "annealing", "periodic")


def correlate(eps: torch.Tensor, rho: float) -> torch.Tensor:
    """Spatially correlate ``eps [M, C, H, W]``: periodic Gaussian filter of width ``rho * H``
    pixels, then renormalised to unit variance per (sample, channel). ``rho = 0`` returns ``eps``."""
    if rho <= 0:
        return eps
    h, w = eps.shape[-2:]
    sigma = rho * h
    ky = torch.fft.fftfreq(h, device=eps.device)
    kx = torch.fft.rfftfreq(w, device=eps.device)
    filt = torch.exp(-2 * math.pi**2 * sigma**2 * (ky[:, None] ** 2 + kx[None, :] ** 2))
    out = torch.fft.irfft2(torch.fft.rfft2(eps.float()) * filt, s=(h, w))
    out = out - out.mean(dim=(-2, -1), keepdim=True)
    out = out / out.std(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return out.to(eps.dtype)


def draw_noise(shape: tuple[int, int, int], kind: str, rho: float, key: DrawKey, device, dtype) -> torch.Tensor:
    """Unit-variance noise ``[M, C, H, W]`` (``shape = (C, H, W)``) of distribution ``kind``,
    spatially correlated with width ``rho``: row ``i`` is realization ``key.realizations[i]`` at
    counter step ``key.step`` on the ``NOISE`` stream (:mod:`spinlock_core.rng`), the same bits
    on every device.

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind not in NOISE_TYPES:
        raise ValueError(f"noise_type: unknown {kind!r}; known: {NOISE_TYPES}")
    eps = unit_noise(key, NOISE, tuple(shape), kind, device=device)
    return correlate(eps.to(dtype), rho)


def schedule_factor(schedule: str, step: int, num_steps: int, period: int) -> float:
    """Multiplier of ``noise_scale`` at operator application ``step`` (0-based) of ``num_steps``.

    constant: 1; annealing: linear decay ``1 - step / num_steps``; periodic:
    ``(1 + cos(2 pi step / period)) / 2``.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "annealing":
        return 1.0 - step / max(num_steps, 1)
    if schedule == "periodic":
        return 0.5 * (1.0 + math.cos(2 * math.pi * step / period))
    raise ValueError(f"noise_schedule: unknown {schedule!r}; known: {SCHEDULES}")
