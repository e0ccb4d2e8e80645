"""Spectral TEMPORAL columns 19-45: analytic fields and a full-plane numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spinlock_core.features._common import radial_spectrum
from spinlock_core.features.spectral import NAMES, spectral_features

N = 64
KN = N // 2


def col(f: torch.Tensor, name: str) -> torch.Tensor:
    return f[:, NAMES.index(name)]


def wave(kx: int, ky: int, n: int = N, phase: float = 0.3) -> torch.Tensor:
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return torch.from_numpy(np.cos(2 * np.pi * (kx * x + ky * y) / n + phase))


def band_table(n: int) -> dict[int, int]:
    """Band of every integer k^2 on an n x n grid, assigned greedily in ascending k^2: a value
    moves on to the next band when it reaches the current band's nominal upper edge e_{i+1}^2 =
    kN^((i+1)/4) and the current band already holds a value (so no band stays empty)."""
    kn = n // 2
    upper = [kn ** ((i + 1) / 4) for i in range(8)]
    k1 = np.fft.fftfreq(n, 1.0 / n).astype(int)
    values = sorted({int(a * a + b * b) for a in k1 for b in k1} - {0})
    out, band, filled = {}, 0, False
    for v in values:
        while band < 7 and filled and v >= upper[band] - 1e-9:
            band, filled = band + 1, False
        out[v], filled = band, True
    return out


def expected_band(k2: int, n: int = N) -> int:
    return band_table(n)[k2]


def test_names():
    assert len(NAMES) == 27 and len(set(NAMES)) == 27
    assert NAMES[:8] == tuple(f"band_frac_{i}" for i in range(8))
    assert NAMES[-1] == "k_kurtosis"


def test_constant_field_has_no_spectrum():
    f = spectral_features(torch.full((3, N, N), -2.5))
    assert (f == 0).all()
    assert (spectral_features(torch.zeros(1, N, N)) == 0).all()


@pytest.mark.parametrize("kx, ky", [(3, 0), (0, 3), (3, 4), (1, 1), (7, 2), (0, 20), (31, 5), (32, 0), (12, 32)])
def test_single_sinusoid(kx, ky):
    f = spectral_features(wave(kx, ky)[None])
    k = math.hypot(kx, ky)
    assert col(f, "peak_k").item() == pytest.approx(k / KN, rel=1e-9)
    assert col(f, "peak_kx").item() == pytest.approx(kx / KN)
    assert col(f, "peak_ky").item() == pytest.approx(ky / KN)
    assert col(f, "peak_frac").item() == pytest.approx(1.0, abs=1e-9)
    assert col(f, "centroid").item() == pytest.approx(k / KN, rel=1e-9)
    assert col(f, "rolloff_85").item() == pytest.approx(k / KN, rel=1e-9)
    assert col(f, "bandwidth").item() == pytest.approx(0.0, abs=1e-6)
    # one mode is perfectly oriented, unless it sits on a Nyquist line (its sign is ambiguous)
    sin2 = 0.0 if KN in (kx, ky) else 2 * kx * ky / k**2
    coherence = math.hypot((kx**2 - ky**2) / k**2, sin2)
    assert col(f, "orientation_coherence").item() == pytest.approx(coherence, abs=1e-9)
    assert col(f, "anisotropy").item() == pytest.approx((kx**2 - ky**2) / k**2, abs=1e-9)
    bands = f[0, :8]
    assert bands[expected_band(kx * kx + ky * ky)].item() == pytest.approx(1.0, abs=1e-9)
    assert bands.sum().item() == pytest.approx(1.0, abs=1e-9)
    assert col(f, "low_frac").item() == pytest.approx(float(k <= max(1, KN / 8)))
    assert col(f, "high_frac").item() == pytest.approx(float(k >= KN / 2))
    # a +-k pair holds 2 of the n^2 - 1 bins; a self-conjugate Nyquist mode holds 1
    nbins = 1 if (kx in (0, KN) and ky in (0, KN)) else 2
    assert col(f, "entropy").item() == pytest.approx(math.log(nbins) / math.log(N * N - 1), abs=1e-9)
    ring = math.floor(k + 0.5)
    assert col(f, "ring_peaks").item() == (1.0 if 2 <= ring <= KN - 1 else 0.0)
    # one mode fills one ring (or, beyond kN, none): no spread over rings to measure
    for name in ("dynamic_range", "slope", "slope_high"):
        assert col(f, name).item() == 0.0, name


def test_anisotropy_sign():
    f = spectral_features(torch.stack([wave(6, 0), wave(0, 6), wave(4, 4)]))
    a = col(f, "anisotropy")
    assert a[0] == pytest.approx(1.0) and a[1] == pytest.approx(-1.0) and abs(a[2]) < 1e-9


def test_ring_peaks_counts_separate_rings():
    u = wave(4, 0) + wave(0, 10) + 0.8 * wave(15, 8)  # rings 4, 10, 17
    assert col(spectral_features(u[None]), "ring_peaks").item() == 3
    # a second mode too weak (below 10% of the maximum ring power) does not count
    u = wave(4, 0) + 0.05 * wave(0, 10)
    assert col(spectral_features(u[None]), "ring_peaks").item() == 1


def test_white_noise():
    rng = np.random.default_rng(0)
    f = spectral_features(torch.from_numpy(rng.standard_normal((16, N, N))))
    # periodogram of white noise: exponential bins, so geometric / arithmetic mean = exp(-gamma)
    assert col(f, "flatness").mean().item() == pytest.approx(math.exp(-0.5772156649), abs=0.01)
    # and spectral entropy 1 - (1 - gamma) / log(n^2 - 1)
    assert col(f, "entropy").mean().item() == pytest.approx(1 - (1 - 0.5772156649) / math.log(N * N - 1), abs=0.005)
    # low rings hold few bins, so single-field slopes scatter by ~0.05 around 0
    assert abs(col(f, "slope").mean().item()) < 0.05
    assert col(f, "slope").abs().max().item() < 0.2
    assert col(f, "slope_high").abs().max().item() < 0.3
    assert col(f, "peak_frac").max().item() < 0.01
    assert col(f, "orientation_coherence").max().item() < 0.1


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_power_law_slope(alpha):
    rng = np.random.default_rng(1)
    k = np.fft.fftfreq(N, 1.0 / N)
    kk = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    amp = np.where(kk > 0, kk, 1.0) ** (-alpha / 2)
    u = np.fft.ifft2(np.exp(2j * np.pi * rng.random((N, N))) * amp).real
    f = spectral_features(torch.from_numpy(u)[None])
    assert col(f, "slope").item() == pytest.approx(-alpha, abs=0.15)


def _reference(u: np.ndarray) -> dict[str, float]:
    """Straight full-plane fft2 implementation of FEATURES.md, one field."""
    n = u.shape[0]
    kn = n // 2
    p = np.abs(np.fft.fft2(u - u.mean())) ** 2
    k1 = np.fft.fftfreq(n, 1.0 / n)
    ky, kx = np.meshgrid(k1, k1, indexing="ij")
    kk = np.hypot(kx, ky)
    nz = kk > 0
    P, K, KX, KY = p[nz], kk[nz], kx[nz], ky[nz]
    tot = P.sum()
    q = P / tot
    c = (q * K).sum()
    var = (q * (K - c) ** 2).sum()
    table = band_table(n)
    band = np.array([table[int(round(v))] for v in K**2])
    out = {}
    for i in range(8):
        out[f"band_frac_{i}"] = q[band == i].sum()
    ring = np.floor(K + 0.5)
    S = np.array([P[ring == r].mean() for r in range(1, kn + 1)])
    # rings that carry energy: S >= 1e-6 max S (and above rounding noise, 1e-12 of the power)
    E = (S >= 1e-6 * S.max()) & (S >= 1e-12 * tot)
    logS = np.log(np.where(E, S, 1.0))
    lk = np.log(np.arange(1, kn + 1))
    out["dynamic_range"] = np.log10(S.max() / np.median(S[E])) if E.sum() >= 2 else 0.0
    out["centroid"] = c / kn
    out["bandwidth"] = np.sqrt(var) / kn
    out["entropy"] = -(q[q > 0] * np.log(q[q > 0])).sum() / np.log(n * n - 1)
    pp = P + 1e-10 * P.mean()
    out["flatness"] = np.exp(np.log(pp).mean()) / pp.mean()
    order = np.argsort(K, kind="stable")
    out["rolloff_85"] = K[order][np.searchsorted(np.cumsum(q[order]), 0.85)] / kn
    out["slope"] = np.polyfit(lk[E], logS[E], 1)[0] if E.sum() >= 2 else 0.0
    j = np.argmax(P)
    out["peak_k"] = K[j] / kn
    same = (KX % n == KX[j] % n) & (KY % n == KY[j] % n)
    mirror = (KX % n == -KX[j] % n) & (KY % n == -KY[j] % n)
    out["peak_frac"] = q[same | mirror].sum()
    out["peak_kx"], out["peak_ky"] = abs(KX[j]) / kn, abs(KY[j]) / kn
    out["anisotropy"] = (P * (KX**2 - KY**2)).sum() / (P * K**2).sum()
    # a Nyquist wavenumber has no sign: such bins add no sin(2 theta)
    nyq = (np.abs(KX) == kn) | (np.abs(KY) == kn)
    sin2 = np.where(nyq, 0.0, 2 * KX * KY / K**2)
    out["orientation_coherence"] = np.hypot((q * (KX**2 - KY**2) / K**2).sum(), (q * sin2).sum())
    out["low_frac"] = q[K <= max(1, kn / 8)].sum()
    hk = (np.arange(1, kn + 1) >= kn / 4) & E
    out["slope_high"] = np.polyfit(lk[hk], logS[hk], 1)[0] if hk.sum() >= 2 else 0.0
    out["high_frac"] = q[K >= kn / 2].sum()
    mid = S[1:-1]
    out["ring_peaks"] = float(((mid > S[:-2]) & (mid > S[2:]) & (mid > 0.1 * S.max())).sum())
    out["k_skewness"] = (q * (K - c) ** 3).sum() / (var + 1 / 12) ** 1.5
    out["k_kurtosis"] = (q * (K - c) ** 4).sum() / (var + 1 / 12) ** 2
    out["_S"] = S
    return out


@pytest.mark.parametrize("n", [8, 10, 12, 16, 32, 64])
def test_matches_full_plane_reference(n):
    rng = np.random.default_rng(n)
    k = np.fft.fftfreq(n, 1.0 / n)
    kk = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    fields = [rng.standard_normal((n, n))]
    for ell, aniso in [(0.03, 1.0), (0.08, 3.0), (0.01, 0.5)]:
        filt = np.exp(-((2 * np.pi * np.hypot(k[None, :] * aniso, k[:, None]) * ell) ** 2) / 4)
        fields.append(np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * filt).real * 3 + 1)
    u = np.stack(fields)
    f = spectral_features(torch.from_numpy(u))
    S = radial_spectrum(torch.from_numpy(u))
    for b in range(len(fields)):
        ref = _reference(u[b])
        s_ref = ref.pop("_S")
        np.testing.assert_allclose(S[b].numpy(), s_ref, rtol=1e-9, atol=1e-12 * s_ref.max())
        for name, value in ref.items():
            assert col(f, name)[b].item() == pytest.approx(value, rel=1e-7, abs=1e-9), (n, b, name)
    assert kk.shape == (n, n)
