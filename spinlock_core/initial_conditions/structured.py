"""Structured: sums of plane sinusoids with random direction, wavelength, amplitude and phase."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .base import ICGenerator, check_range

__all__ = ["StructuredParams", "Structured", "structured", "snap_wavevectors", "plane_waves"]


class StructuredParams(BaseModel):
    """Parameters of ``structured``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: sinusoids summed per channel
    num_modes: int = Field(default=3, ge=1, strict=True)
    #: ``[lo, hi]`` wavelength in pixels; ``lo >= 2`` (the Nyquist wavelength)
    wavelength_range: list[float] = Field(default=[8.0, 32.0], min_length=2, max_length=2)
    #: ``[lo, hi]`` amplitude of each sinusoid, ``0 <= lo``
    amplitude_range: list[float] = Field(default=[0.5, 2.0], min_length=2, max_length=2)

    @field_validator("wavelength_range")
    @classmethod
    def _wavelengths(cls, v: list[float]) -> list[float]:
        return check_range(v, minimum=2.0)

    @field_validator("amplitude_range")
    @classmethod
    def _amplitudes(cls, v: list[float]) -> list[float]:
        return check_range(v, minimum=0.0)


def snap_wavevectors(k_magnitude: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest integer lattice point to ``k_magnitude * (cos theta, sin theta)``.

    Where that point is ``(0, 0)`` (a wavelength longer than about twice the domain), the
    axis-aligned unit vector closest to the direction is used instead, so ``|k| = 1``.

    Args:
        k_magnitude, theta: same-shape arrays; cycles per domain and radians.

    Returns:
        ``(kx, ky)`` int64 arrays of that shape, never both 0.
    """
    c, s = np.cos(theta), np.sin(theta)
    kx = np.rint(k_magnitude * c).astype(np.int64)
    ky = np.rint(k_magnitude * s).astype(np.int64)
    zero = (kx == 0) & (ky == 0)
    along_x = np.abs(c) >= np.abs(s)
    kx = np.where(zero & along_x, np.where(c >= 0, 1, -1), kx)
    ky = np.where(zero & ~along_x, np.where(s >= 0, 1, -1), ky)
    return kx, ky


def plane_waves(
    kx: np.ndarray, ky: np.ndarray, amplitude: np.ndarray, phase: np.ndarray, grid_size: int
) -> np.ndarray:
    """``u[c, y, x] = sum_m A[c, m] * sin(2*pi*(kx[c, m]*x + ky[c, m]*y) / H + phase[c, m])``.

    Args:
        kx, ky, amplitude, phase: ``[C, M]``; wavenumbers in cycles per domain.
        grid_size: ``H = W``.

    Returns:
        float64 ``[C, H, W]``.
    """
    coords = 2.0 * math.pi * np.arange(grid_size) / grid_size
    a = kx[..., None] * coords + phase[..., None]  # [C, M, W]
    b = ky[..., None] * coords  # [C, M, H]
    # sin(a + b) = sin a cos b + cos a sin b: two separable contractions instead of [C, M, H, W]
    amp = amplitude[..., None]
    return np.einsum("cmh,cmw->chw", amp * np.cos(b), np.sin(a)) + np.einsum(
        "cmh,cmw->chw", amp * np.sin(b), np.cos(a)
    )


class Structured(ICGenerator):
    """Per channel, ``num_modes`` plane sinusoids ``A * sin(2*pi*(kx*x + ky*y)/H + phase)``.

    Per mode: direction uniform on the circle, wavelength uniform in ``wavelength_range``,
    amplitude uniform in ``amplitude_range``, phase uniform in ``[0, 2*pi)``.

    Snapping: the wave vector of length ``H / wavelength`` (cycles per domain) in the drawn
    direction is rounded to the nearest integer lattice point (:func:`snap_wavevectors`), so every
    mode is exactly periodic on the grid and its power sits in the two FFT bins ``+-(kx, ky)``.
    ``|k|`` then differs from ``H / wavelength`` by at most ``sqrt(2)/2``; a vector that would
    round to ``(0, 0)`` becomes the nearest axis-aligned ``|k| = 1``. The drawn direction is
    correspondingly quantised (coarsely for long wavelengths).
    """

    name = "structured"
    params_model = StructuredParams

    def _generate(self, params: StructuredParams, grid_size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
        shape = (channels, params.num_modes)
        theta = rng.uniform(0.0, 2.0 * math.pi, shape)
        wavelength = rng.uniform(*params.wavelength_range, shape)
        amplitude = rng.uniform(*params.amplitude_range, shape)
        phase = rng.uniform(0.0, 2.0 * math.pi, shape)
        kx, ky = snap_wavevectors(grid_size / wavelength, theta)
        return plane_waves(kx, ky, amplitude, phase, grid_size)


structured = Structured()
