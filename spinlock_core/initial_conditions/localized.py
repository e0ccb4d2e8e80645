"""Localized: Gaussian blobs with random centres, widths and signed amplitudes on the torus."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .base import ICGenerator, check_range

__all__ = ["LocalizedParams", "Localized", "localized", "gaussian_blobs"]


class LocalizedParams(BaseModel):
    """Parameters of ``localized``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: blobs per field (shared by all channels)
    num_blobs: int = Field(default=5, ge=1, strict=True)
    #: smallest Gaussian sigma, pixels
    min_width: float = Field(default=3.0, gt=0, allow_inf_nan=False)
    #: largest Gaussian sigma, pixels (>= min_width)
    max_width: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    #: ``[lo, hi]`` blob amplitude magnitude, ``0 <= lo``; the sign is random
    amplitude_range: list[float] = Field(default=[0.5, 2.0], min_length=2, max_length=2)

    @field_validator("max_width")
    @classmethod
    def _ordered(cls, v: float, info: ValidationInfo) -> float:
        lo = info.data.get("min_width")
        if lo is not None and v < lo:
            raise ValueError(f"must be >= min_width ({lo}), got {v}")
        return v

    @field_validator("amplitude_range")
    @classmethod
    def _amplitudes(cls, v: list[float]) -> list[float]:
        return check_range(v, minimum=0.0)


def _wrapped_profile(coords: np.ndarray, centre: np.ndarray, sigma: np.ndarray, period: int) -> np.ndarray:
    """Periodic 1-D Gaussian ``sum_n exp(-(d + n*period)^2 / (2 sigma^2))`` -> ``[K, len(coords)]``.

    ``d`` is the signed periodic (minimum-image) distance. Summing images, rather than using the
    minimum image alone, keeps wide blobs smooth across the antipode; images further than
    ``6 sigma`` are dropped. Normalised to 1 at the centre. A blob much wider than the period is
    nearly flat.
    """
    d = (coords[None, :] - centre[:, None] + period / 2) % period - period / 2  # [K, L] in [-P/2, P/2)
    reach = max(1, math.ceil(6.0 * float(sigma.max()) / period))
    shifts = period * np.arange(-reach, reach + 1)
    dd = d[None] + shifts[:, None, None]  # [I, K, L]
    profile = np.exp(-0.5 * (dd / sigma[None, :, None]) ** 2).sum(axis=0)
    # unit value at the centre, so the blob's peak is its amplitude even when the images overlap
    peak = np.exp(-0.5 * (shifts[:, None] / sigma[None, :]) ** 2).sum(axis=0)  # [K]
    return profile / peak[:, None]


def gaussian_blobs(centres: np.ndarray, widths: np.ndarray, amplitudes: np.ndarray, grid_size: int) -> np.ndarray:
    """Sum of periodic Gaussian blobs on a ``grid_size`` torus.

    Args:
        centres: ``[K, 2]`` blob centres ``(y, x)`` in pixels (any real value; taken modulo H).
        widths: ``[K]`` Gaussian sigma in pixels, > 0.
        amplitudes: ``[K, C]`` signed peak amplitude of each blob in each channel.
        grid_size: ``H = W``.

    Returns:
        float64 ``[C, H, W]``: ``u[c] = sum_k amplitudes[k, c] * g_k`` with ``g_k`` the separable
        periodic Gaussian (sum over periodic images) scaled to 1 at ``centres[k]``; zeros for
        ``K = 0``.

    Raises:
        ValueError: inconsistent shapes or a non-positive width.
    """
    centres, widths, amplitudes = (np.asarray(a, dtype=np.float64) for a in (centres, widths, amplitudes))
    k = widths.shape[0] if widths.ndim == 1 else -1
    if k < 0 or centres.shape != (k, 2) or amplitudes.ndim != 2 or amplitudes.shape[0] != k:
        raise ValueError(
            f"expected centres [K, 2], widths [K], amplitudes [K, C]; got {centres.shape}, "
            f"{widths.shape}, {amplitudes.shape}"
        )
    if k == 0:  # no blobs: the empty sum
        return np.zeros((amplitudes.shape[1], grid_size, grid_size))
    if not np.all(widths > 0):
        raise ValueError(f"widths must be > 0, got min {widths.min()}")
    coords = np.arange(grid_size, dtype=np.float64)
    gy = _wrapped_profile(coords, centres[:, 0], widths, grid_size)  # [K, H]
    gx = _wrapped_profile(coords, centres[:, 1], widths, grid_size)  # [K, W]
    return np.einsum("kc,kh,kw->chw", amplitudes, gy, gx)


class Localized(ICGenerator):
    """``num_blobs`` Gaussian blobs shared by all channels, with a signed amplitude per channel.

    Per blob: centre uniform on the torus, sigma uniform in ``[min_width, max_width]`` pixels;
    per blob and channel: amplitude uniform in ``amplitude_range`` times a random sign. Distances
    are periodic, so a blob near an edge continues across it.
    """

    name = "localized"
    params_model = LocalizedParams

    def _generate(self, params: LocalizedParams, grid_size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
        k = params.num_blobs
        centres = rng.uniform(0.0, grid_size, (k, 2))
        widths = rng.uniform(params.min_width, params.max_width, k)
        magnitude = rng.uniform(*params.amplitude_range, (k, channels))
        sign = np.where(rng.random((k, channels)) < 0.5, -1.0, 1.0)
        return gaussian_blobs(centres, widths, magnitude * sign, grid_size)


localized = Localized()
