"""SUMMARY field helpers pinned against numpy references: the radial power spectrum (ring averages
over the full Fourier plane, from the rfft half plane) and the Gaussian blur transfer function."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spinlock_core.features.summary._fields import _gaussian_transfer, radial_distribution


def _radial_reference(u: np.ndarray) -> np.ndarray:
    """S(k) = mean of |FFT|^2 over the full-plane bins with round(|k|) = k (DC out), k = 1..H/2,
    normalised to sum 1."""
    h, w = u.shape
    p = np.abs(np.fft.fft2(u - u.mean())) ** 2
    ky = np.fft.fftfreq(h) * h
    kx = np.fft.fftfreq(w) * w
    q = np.rint(ky[:, None] ** 2 + kx[None, :] ** 2)
    ring = np.floor(np.sqrt(q) + 0.5)
    s = np.array([p[(ring == k) & (q > 0)].mean() if ((ring == k) & (q > 0)).any() else 0.0
                  for k in range(1, h // 2 + 1)])
    return s / s.sum()


@pytest.mark.parametrize("shape", [(8, 8), (8, 7), (6, 10), (16, 16)])
def test_radial_distribution_is_the_full_plane_ring_average(shape):
    u = np.random.default_rng(3).standard_normal(shape)
    u += 0.5 * np.cos(2 * np.pi * 2 * np.arange(shape[1]) / shape[1])[None, :]  # a peak at |k| = 2
    got = radial_distribution(torch.from_numpy(u)).numpy()
    np.testing.assert_allclose(got, _radial_reference(u), rtol=1e-12, atol=1e-15)


def test_radial_distribution_of_a_flat_field_is_zero():
    assert torch.equal(radial_distribution(torch.full((8, 8), 3.0, dtype=torch.float64)), torch.zeros(4, dtype=torch.float64))


@pytest.mark.parametrize("n", [24, 32])
def test_gaussian_transfer_is_the_periodic_blur_of_sigma_h_over_32(n):
    got = _gaussian_transfer(n, n, "cpu")
    assert got.dtype == torch.float64 and got.shape == (n, n // 2 + 1)
    sigma = n / 32.0
    fy = np.fft.fftfreq(n)
    fx = np.fft.rfftfreq(n)
    want = np.exp(-2.0 * math.pi**2 * sigma**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14, atol=0)
