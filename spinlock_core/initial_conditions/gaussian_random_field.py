"""Gaussian random field: a smooth periodic field with a Gaussian spectral density.

The density is ``S(k) = exp(-(2*pi*|k|*l)^2 / 2)`` with ``k`` the integer wavenumber in cycles per
domain and ``l`` the length scale as a fraction of the domain, so the same ``l`` gives the same
field statistics at every grid size (only the resolution changes).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .base import ICGenerator

__all__ = ["GRFParams", "GaussianRandomField", "gaussian_random_field", "grf_filter", "wavenumber_magnitude"]


class GRFParams(BaseModel):
    """Parameters of ``gaussian_random_field``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: correlation length as a fraction of the domain side
    length_scale: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    #: expected pixel variance of each channel
    variance: float = Field(default=1.0, gt=0, allow_inf_nan=False)


def wavenumber_magnitude(grid_size: int, half: bool = False) -> np.ndarray:
    """``|k|`` in cycles per domain on the FFT grid.

    Returns:
        float64 ``[H, W]`` in ``np.fft.fft2`` order, or ``[H, W // 2 + 1]`` (``np.fft.rfft2``
        order) when ``half``.
    """
    ky = np.fft.fftfreq(grid_size, d=1.0 / grid_size)
    kx = np.fft.rfftfreq(grid_size, d=1.0 / grid_size) if half else ky
    return np.hypot(ky[:, None], kx[None, :])


def _grf_filter_uncached(grid_size: int, length_scale: float) -> np.ndarray:
    """Fourier multiplier that turns unit real white noise into a unit-variance GRF.

    ``a_k = sqrt(N * S_k / sum_full(S))`` with the DC bin set to 0, where the sum runs over the
    full ``H x W`` grid without DC. Filtering white noise ``w`` gives
    ``Var u = sum_full(a_k^2) / N = 1`` exactly in expectation (the theoretical normalisation).
    The density is computed in the log domain relative to its largest non-DC value, so very large
    length scales do not underflow to an all-zero filter.

    Returns:
        read-only float64 ``[H, W // 2 + 1]`` (``np.fft.rfft2`` layout).
    """
    k = wavenumber_magnitude(grid_size)
    log_s = -0.5 * (2.0 * math.pi * length_scale * k) ** 2
    log_s[0, 0] = -np.inf  # DC excluded: every draw has spatial mean exactly 0
    s = np.exp(log_s - log_s.max())
    a = np.sqrt(grid_size * grid_size * s / s.sum())[:, : grid_size // 2 + 1]
    a.setflags(write=False)
    return a


#: cached (functools.lru_cache(maxsize=64)): mutmut mutates only undecorated functions, so the body is
#: _grf_filter_uncached and the cache is applied here
grf_filter = functools.lru_cache(maxsize=64)(_grf_filter_uncached)


class GaussianRandomField(ICGenerator):
    """Independent GRF per channel, expected pixel variance ``variance`` (theoretical normalisation).

    Real white noise ``[C, H, W]`` is filtered in Fourier space by :func:`grf_filter` and scaled by
    ``sqrt(variance)``; the realised pixel variance scatters around ``variance`` by sampling error
    (larger ``length_scale`` -> fewer modes -> more scatter).
    """

    name = "gaussian_random_field"
    params_model = GRFParams

    def _generate(self, params: GRFParams, grid_size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal((channels, grid_size, grid_size))
        spec = np.fft.rfft2(noise) * grf_filter(grid_size, params.length_scale)
        return np.fft.irfft2(spec, s=(grid_size, grid_size)) * math.sqrt(params.variance)


gaussian_random_field = GaussianRandomField()
