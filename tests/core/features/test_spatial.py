"""Spatial TEMPORAL columns 0-18 against analytic fields and numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spinlock_core.features import spatial
from spinlock_core.features._common import dx, dy, laplacian
from spinlock_core.features.spatial import NAMES, spatial_features

N = 64


def col(f: torch.Tensor, name: str) -> torch.Tensor:
    return f[:, NAMES.index(name)]


def grid(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    y, x = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    return x, y


def test_names():
    assert len(NAMES) == 19 and len(set(NAMES)) == 19
    assert NAMES[0] == "mean" and NAMES[18] == "corr_length"


def test_constant_field_is_flat_and_finite():
    f = spatial_features(torch.full((2, N, N), 3.7))
    assert torch.isfinite(f).all()
    for name in ("mean", "min", "max", "p05", "p25", "median", "p75", "p95"):
        assert torch.allclose(col(f, name), torch.tensor(3.7))
    for name in ("std", "skewness", "kurtosis", "mad", "grad_energy", "grad_mean", "grad_max",
                 "grad_anisotropy", "laplacian_energy", "laplacian_kurtosis"):
        assert (col(f, name) == 0).all(), name
    # a constant field never decorrelates
    assert (col(f, "corr_length") == 0.5).all()


def test_central_differences_of_a_sinusoid():
    x, y = grid()
    k = 5
    u = torch.sin(2 * math.pi * k * x / N)
    # central difference of sin(a x) is sin(a) cos(a x); the 5-point Laplacian multiplies by -4 sin^2(a/2)
    a = 2 * math.pi * k / N
    assert torch.allclose(dx(u), math.sin(a) * torch.cos(a * x), atol=1e-12)
    assert torch.allclose(dy(u), torch.zeros_like(u))
    assert torch.allclose(laplacian(u), -4 * math.sin(a / 2) ** 2 * u, atol=1e-12)


@pytest.mark.parametrize("k", [1, 4, 11])
def test_sinusoid_gradient_and_laplacian_values(k):
    x, _ = grid()
    a = 2 * math.pi * k / N
    u = torch.sin(a * x)[None]
    f = spatial_features(u)
    assert col(f, "grad_energy").item() == pytest.approx(math.sin(a) ** 2 / 2, rel=1e-9)
    cos = np.abs(np.cos(a * np.arange(N)))
    assert col(f, "grad_max").item() == pytest.approx(math.sin(a) * cos.max(), rel=1e-9)
    assert col(f, "grad_mean").item() == pytest.approx(math.sin(a) * cos.mean(), rel=1e-9)
    assert col(f, "grad_anisotropy").item() == pytest.approx(1.0, abs=1e-6)
    assert col(f, "laplacian_energy").item() == pytest.approx(16 * math.sin(a / 2) ** 4 / 2, rel=1e-9)
    # a sampled sinusoid has excess kurtosis -1.5 and no skewness
    assert col(f, "kurtosis").item() == pytest.approx(-1.5, abs=1e-9)
    assert col(f, "laplacian_kurtosis").item() == pytest.approx(-1.5, abs=1e-9)
    assert col(f, "skewness").item() == pytest.approx(0.0, abs=1e-9)
    assert col(f, "std").item() == pytest.approx(math.sqrt(0.5), rel=1e-9)


def test_grad_anisotropy_sign():
    x, y = grid()
    ux = torch.sin(2 * math.pi * 3 * x / N)
    uy = torch.sin(2 * math.pi * 3 * y / N)
    f = spatial_features(torch.stack([ux, uy]))
    assert col(f, "grad_anisotropy")[0] > 0.99 and col(f, "grad_anisotropy")[1] < -0.99


def test_moments_and_quantiles_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.standard_gamma(2.0, size=(3, 32, 32))
    f = spatial_features(torch.from_numpy(a))
    flat = a.reshape(3, -1)
    mean = flat.mean(1)
    std = flat.std(1)
    z = (flat - mean[:, None]) / std[:, None]
    np.testing.assert_allclose(col(f, "mean"), mean, rtol=1e-12)
    np.testing.assert_allclose(col(f, "std"), std, rtol=1e-12)
    np.testing.assert_allclose(col(f, "skewness"), (z**3).mean(1), rtol=1e-10)
    np.testing.assert_allclose(col(f, "kurtosis"), (z**4).mean(1) - 3, rtol=1e-10)
    qs = np.quantile(flat, [0.05, 0.25, 0.5, 0.75, 0.95], axis=1).T
    np.testing.assert_allclose(f[:, 6:11], qs, rtol=1e-12)
    med = np.median(flat, axis=1)
    np.testing.assert_allclose(col(f, "mad"), np.median(np.abs(flat - med[:, None]), axis=1), rtol=1e-12)
    np.testing.assert_allclose(col(f, "min"), flat.min(1))
    np.testing.assert_allclose(col(f, "max"), flat.max(1))


def _corr_length_reference(u: np.ndarray) -> float:
    n = u.shape[0]
    p = np.abs(np.fft.fft2(u - u.mean())) ** 2
    acf = np.fft.ifft2(p).real
    acf /= acf[0, 0]
    lag = np.fft.fftfreq(n, 1.0 / n)
    r = np.floor(np.hypot(*np.meshgrid(lag, lag, indexing="ij")) + 0.5).astype(int)
    prof = np.array([acf[r == k].mean() for k in range(n // 2 + 1)])
    thr = math.exp(-1)
    for k in range(1, n // 2 + 1):
        if prof[k] < thr:
            return ((k - 1) + (prof[k - 1] - thr) / (prof[k - 1] - prof[k])) / n
    return 0.5


@pytest.mark.parametrize("ell", [0.0, 0.02, 0.06, 0.15])
def test_corr_length_matches_reference_and_grows_with_length_scale(ell):
    rng = np.random.default_rng(1)
    n = 32
    k = np.fft.fftfreq(n, 1.0 / n)
    kk = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    u = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * np.exp(-((2 * np.pi * kk * ell) ** 2) / 4)).real
    got = col(spatial_features(torch.from_numpy(u)[None]), "corr_length").item()
    assert got == pytest.approx(_corr_length_reference(u), rel=1e-9, abs=1e-12)


def test_corr_length_white_noise_and_ordering():
    rng = np.random.default_rng(2)
    u = torch.from_numpy(rng.standard_normal((8, N, N)))
    cl = col(spatial_features(u), "corr_length")
    # white noise: autocorrelation ~0 at lag 1, so the crossing is near (1 - 1/e) / 1 lags
    assert torch.allclose(cl, torch.full_like(cl, (1 - math.exp(-1)) / N), rtol=0.05)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(2, 3, 8, 8), r"\[B, H, W\]"),
        (torch.zeros(2, 8, 16), "square"),
        (torch.zeros(2, 9, 9), "even"),
        (torch.zeros(2, 8, 8, dtype=torch.int64), "floating"),
        (np.zeros((2, 8, 8)), "torch.Tensor"),
    ],
)
def test_invalid_input_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        spatial.spatial_features(bad)
