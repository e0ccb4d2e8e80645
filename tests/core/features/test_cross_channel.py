"""Cross-channel TEMPORAL columns 46-62 against analytic states and numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spinlock_core.features.cross_channel import NAMES, cross_channel_features

N = 64


def col(f: torch.Tensor, name: str) -> torch.Tensor:
    return f[:, NAMES.index(name)]


def smooth(rng: np.random.Generator, n: int = N, ell: float = 0.05) -> np.ndarray:
    k = np.fft.fftfreq(n, 1.0 / n)
    kk = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    return np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * np.exp(-((2 * np.pi * kk * ell) ** 2) / 4)).real


def test_names():
    assert len(NAMES) == 17 and len(set(NAMES)) == 17
    assert NAMES[0] == "corr_01" and NAMES[-1] == "grad_alignment"


def test_perfectly_correlated_channels():
    rng = np.random.default_rng(0)
    a = smooth(rng)
    x = torch.from_numpy(np.stack([a, 2 * a + 1, 0.5 * a - 3]))[None]
    f = cross_channel_features(x)
    for name in ("corr_01", "corr_02", "corr_12", "corr_abs_mean", "corr_mean", "spectral_shape_corr",
                 "coherence_01", "coherence_02", "coherence_12", "participation_ratio"):
        assert col(f, name).item() == pytest.approx(1.0, abs=1e-9), name
    assert col(f, "eig_2").item() == pytest.approx(0.0, abs=1e-6)
    assert col(f, "quadrature_index").item() == pytest.approx(0.0, abs=1e-9)
    # eps = 1e-8 in the denominator costs ~3e-5 where these smooth gradients are small
    assert col(f, "grad_alignment").item() == pytest.approx(1.0, abs=1e-4)
    # identical (up to an affine map) channels share their histogram: mi = its entropy
    hist = np.histogram(a, bins=16)[0] / a.size
    entropy = -(hist[hist > 0] * np.log(hist[hist > 0])).sum()
    for name in ("mi_01", "mi_02", "mi_12"):
        assert col(f, name).item() == pytest.approx(entropy, abs=1e-9)
        assert col(f, name).item() > 1.5


def test_anticorrelated_channel():
    rng = np.random.default_rng(1)
    a = smooth(rng)
    f = cross_channel_features(torch.from_numpy(np.stack([a, -a, a]))[None])
    assert col(f, "corr_01").item() == pytest.approx(-1.0)
    assert col(f, "corr_02").item() == pytest.approx(1.0)
    assert col(f, "corr_12").item() == pytest.approx(-1.0)
    assert col(f, "corr_abs_mean").item() == pytest.approx(1.0)
    assert col(f, "corr_mean").item() == pytest.approx(-1 / 3)
    assert col(f, "participation_ratio").item() == pytest.approx(1.0)
    # the coherence ignores the sign of the cross spectrum
    assert col(f, "coherence_01").item() == pytest.approx(1.0)


def test_independent_channels():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.standard_normal((8, 3, N, N)))
    f = cross_channel_features(x)
    assert f[:, :3].abs().max().item() < 0.06
    assert col(f, "participation_ratio").min().item() > 2.97
    assert (col(f, "eig_2") - 1).abs().max().item() < 0.06
    # plug-in bias of a 16 x 16 histogram on 4096 pixels is about 225 / 8192 = 0.027 nats
    mi = f[:, NAMES.index("mi_01") : NAMES.index("mi_12") + 1]
    assert mi.mean().item() == pytest.approx(225 / (2 * N * N), abs=0.006)
    assert f[:, NAMES.index("coherence_01") : NAMES.index("coherence_12") + 1].max().item() < 0.4
    assert col(f, "spectral_shape_corr").abs().max().item() < 0.6
    # directions of independent gradients: E|cos| between random 2-D directions is 2 / pi
    assert col(f, "grad_alignment").mean().item() == pytest.approx(2 / math.pi, abs=0.02)


def test_quadrature_pair():
    y, xg = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    ph = 2 * np.pi * (3 * xg + 2 * y) / N
    x = torch.from_numpy(np.stack([np.cos(ph), np.sin(ph), np.cos(ph)]))[None]
    f = cross_channel_features(x)
    assert col(f, "corr_01").item() == pytest.approx(0.0, abs=1e-9)
    assert col(f, "corr_02").item() == pytest.approx(1.0, abs=1e-9)
    # pairs (0, 1) and (1, 2) are in quadrature, (0, 2) in phase
    assert col(f, "quadrature_index").item() == pytest.approx(2 / 3, abs=1e-9)
    assert col(f, "coherence_01").item() == pytest.approx(0.0, abs=1e-9)
    assert col(f, "coherence_02").item() == pytest.approx(1.0, abs=1e-9)


def test_energy_share_max():
    y, xg = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    s = np.sin(2 * np.pi * 4 * xg / N)
    f = cross_channel_features(torch.from_numpy(np.stack([s, 2 * s, 3 * s]))[None])
    assert col(f, "energy_share_max").item() == pytest.approx(9 / 14)


def test_eigenvalues_and_mi_match_numpy():
    rng = np.random.default_rng(3)
    states = []
    for _ in range(6):
        base = np.stack([smooth(rng, ell=0.03) for _ in range(3)])
        mix = rng.normal(size=(3, 3))
        states.append(np.einsum("ij,jhw->ihw", mix, base))
    x = np.stack(states)
    f = cross_channel_features(torch.from_numpy(x))
    for b in range(len(states)):
        flat = x[b].reshape(3, -1)
        r = np.corrcoef(flat)
        eig = np.linalg.eigvalsh(r)
        assert col(f, "eig_2")[b].item() == pytest.approx(eig[1], abs=1e-9)
        assert col(f, "participation_ratio")[b].item() == pytest.approx(eig.sum() ** 2 / (eig**2).sum(), rel=1e-9)
        for name, (i, j) in zip(("mi_01", "mi_02", "mi_12"), ((0, 1), (0, 2), (1, 2))):
            h, _, _ = np.histogram2d(flat[i], flat[j], bins=16)
            p = h / h.sum()
            pi, pj = p.sum(1), p.sum(0)
            nz = p > 0
            mi = (p[nz] * np.log(p[nz] / np.outer(pi, pj)[nz])).sum()
            assert col(f, name)[b].item() == pytest.approx(mi, abs=1e-3)


def test_constant_channel_gives_zeros_not_nan():
    rng = np.random.default_rng(4)
    x = np.stack([smooth(rng), np.full((N, N), 2.0), smooth(rng)])
    f = cross_channel_features(torch.from_numpy(x)[None])
    assert torch.isfinite(f).all()
    assert col(f, "corr_01").item() == 0 and col(f, "corr_12").item() == 0
    assert col(f, "mi_01").item() == pytest.approx(0.0, abs=1e-12)
    assert col(f, "coherence_01").item() == 0
    f0 = cross_channel_features(torch.zeros(2, 3, N, N))
    # no correlation at all: the correlation matrix is the identity
    assert (col(f0, "eig_2") == 1.0).all() and (col(f0, "participation_ratio") == 3.0).all()
    other = [i for i, n in enumerate(NAMES) if n not in ("eig_2", "participation_ratio")]
    assert (f0[:, other] == 0).all()


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(2, 2, 8, 8), "C = 3"),
        (torch.zeros(3, 8, 8), r"\[B, C, H, W\]"),
        (torch.zeros(1, 3, 8, 10), "square"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.int32), "floating"),
    ],
)
def test_invalid_input_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        cross_channel_features(bad)
