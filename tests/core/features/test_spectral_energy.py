"""Spectral columns decided by the field, not by a log floor or an empty band (TEMPORAL 1.1).

``dynamic_range``, ``slope`` and ``slope_high`` use only the rings that carry energy
(``S >= 1e-6 max S``); ``low_frac`` is ``0 < |k| <= max(1, kN/8)``; no radial band is empty on any
even grid >= 8. Each redefined column is checked against a hand computation or an independent
numpy reference, and on families of fields where the old (1.0) definition saturated it is shown to
vary with the field (the old definitions are re-implemented here, ``_old``, to show the saturation).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spinlock_core.features._common import band_edges_sq, spectral_grid
from spinlock_core.features.spectral import NAMES, spectral_features
from spinlock_core.initial_conditions.gaussian_random_field import GRFParams, gaussian_random_field

GRIDS = [*range(8, 66, 2), 128]


def col(f: torch.Tensor, name: str) -> np.ndarray:
    return f[:, NAMES.index(name)].numpy()


def kmag(n: int) -> np.ndarray:
    k = np.fft.fftfreq(n, 1.0 / n)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    return np.hypot(kx, ky)


def wave(kx: int, ky: int, n: int, amp: float = 1.0, phase: float = 0.3) -> np.ndarray:
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return amp * np.cos(2 * np.pi * (kx * x + ky * y) / n + phase)


def ring_count(r: int, n: int) -> int:
    """Full-plane bins in ring r (r - 0.5 <= |k| < r + 0.5)."""
    return int((np.floor(kmag(n) + 0.5) == r).sum())


def from_spectrum(amp: np.ndarray, seed: int) -> np.ndarray:
    """Real field with ``|fft2(u)| = amp`` exactly (amp symmetric under k -> -k) and random phases
    (the phases of real white noise, which are antisymmetric)."""
    noise = np.random.default_rng(seed).standard_normal(amp.shape)
    return np.fft.ifft2(amp * np.exp(1j * np.angle(np.fft.fft2(noise)))).real


def features(fields) -> torch.Tensor:
    return spectral_features(torch.from_numpy(np.stack(fields)))


def _old(u: np.ndarray, floor_rel: float = 1e-10) -> dict[str, float]:
    """The 1.0 definitions: log(S + floor_rel sum S) over all rings, median over all rings,
    low_frac over |k| < kN/8."""
    n = u.shape[0]
    kn = n // 2
    P = np.abs(np.fft.fft2(u - u.mean())) ** 2
    K = kmag(n)
    ring = np.floor(K + 0.5)
    S = np.array([P[ring == r].mean() for r in range(1, kn + 1)])
    fl = floor_rel * S.sum()
    lk, logS = np.log(np.arange(1, kn + 1)), np.log(S + fl)
    return {
        "dynamic_range": math.log10((S.max() + fl) / (np.median(S) + fl)),
        "slope": np.polyfit(lk, logS, 1)[0],
        "low_frac": P[(K > 0) & (K < kn / 8)].sum() / P[K > 0].sum(),
    }


def old_dynamic_range_is_floor_decided(u: np.ndarray) -> bool:
    """The 1.0 dynamic_range moves one-for-one with the log floor (1e-10 -> 1e-12: +2 decades)."""
    return abs(_old(u, 1e-12)["dynamic_range"] - _old(u)["dynamic_range"] - 2.0) < 0.05


# ----------------------------------------------------------------------------- hand-computed


@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.1, 0.01])
def test_two_sinusoids_known_dynamic_range_and_slope(ratio):
    """Modes on rings 4 and 10 with amplitudes 1 and ``ratio``: each +-k pair holds
    ``2 (A N^2 / 2)^2`` in a ring of ``n_r`` bins, so S(r) is known exactly; the median of two
    values is their mean, and the slope through two points is the secant."""
    n = 64
    u = wave(4, 0, n) + wave(0, 10, n, amp=ratio)
    s4 = 2 * (n * n / 2) ** 2 / ring_count(4, n)
    s10 = 2 * (n * n / 2) ** 2 * ratio**2 / ring_count(10, n)
    f = features([u])
    dyn = math.log10(max(s4, s10) / ((s4 + s10) / 2))
    assert col(f, "dynamic_range")[0] == pytest.approx(dyn, abs=1e-9)
    assert col(f, "slope")[0] == pytest.approx(math.log(s10 / s4) / math.log(10 / 4), abs=1e-9)
    # only ring 10 lies at k >= kN / 4 = 8: one ring, no fit
    assert col(f, "slope_high")[0] == 0.0
    assert old_dynamic_range_is_floor_decided(u)


def test_three_sinusoids_median_is_the_middle_ring():
    n = 64
    amps = {(4, 0): 1.0, (0, 10): 0.3, (15, 8): 0.05}  # rings 4, 10, 17
    u = sum(wave(kx, ky, n, amp=a) for (kx, ky), a in amps.items())
    s = sorted(2 * (n * n / 2) ** 2 * a**2 / ring_count(round(math.hypot(kx, ky)), n) for (kx, ky), a in amps.items())
    f = features([u])
    assert col(f, "dynamic_range")[0] == pytest.approx(math.log10(s[2] / s[1]), abs=1e-9)
    # rings 10 and 17 are at k >= 8: slope_high is their secant
    s10 = 2 * (n * n / 2) ** 2 * 0.3**2 / ring_count(10, n)
    s17 = 2 * (n * n / 2) ** 2 * 0.05**2 / ring_count(17, n)
    assert col(f, "slope_high")[0] == pytest.approx(math.log(s17 / s10) / math.log(17 / 10), abs=1e-9)


def test_a_ring_below_the_energy_threshold_does_not_count():
    """Power ratio 1e-8 < 1e-6: the weak ring carries no energy, one ring is left."""
    n = 64
    f = features([wave(4, 0, n) + wave(0, 10, n, amp=1e-4), wave(4, 0, n) + wave(0, 10, n, amp=3e-3)])
    assert col(f, "dynamic_range")[0] == 0.0 and col(f, "slope")[0] == 0.0
    assert col(f, "dynamic_range")[1] > 0.29 and col(f, "slope")[1] < -5


@pytest.mark.parametrize("alpha", [0.5, 2.0, 4.0, 8.0, 12.0])
def test_power_law_slope_recovered(alpha):
    """``|X(k)|^2 = |k|^-alpha`` exactly: the fit over the energetic rings of the exact ring means
    (computed here from the lattice) is the slope, within 0.6 of -alpha even where S spans 19
    decades (the 1.0 slope, fitted through the floor, gives -5 for alpha = 12)."""
    n = 64
    K = kmag(n)
    amp = np.where(K > 0, K, 1.0) ** (-alpha / 2) * (K > 0)
    u = from_spectrum(amp, seed=0)
    ring = np.floor(K + 0.5)
    S = np.array([(amp**2)[ring == r].mean() for r in range(1, n // 2 + 1)])
    E = S >= 1e-6 * S.max()
    expected = np.polyfit(np.log(np.arange(1, n // 2 + 1))[E], np.log(S[E]), 1)[0]
    got = col(features([u]), "slope")[0]
    assert got == pytest.approx(expected, abs=1e-6)
    assert abs(got + alpha) < 0.6
    if alpha >= 8:
        assert abs(_old(u)["slope"] + alpha) > 1.0


# ----------------------------------------------------------------------------- families that saturated


def test_sinusoid_sums_vary_where_the_old_dynamic_range_was_ten():
    """Structured fields: one mode fills one ring (dynamic_range and slope 0 by definition); two
    modes give values that follow their wavelengths and amplitudes. The 1.0 dynamic_range was
    10.00 for every single mode and 9.8-10, decided by the floor, for every pair."""
    n = 32
    fields = [wave(3, 0, n), wave(0, 7, n), wave(5, 5, n)]
    fields += [wave(2, 0, n) + wave(0, k, n, amp=a) for k, a in [(5, 1.0), (9, 1.0), (5, 0.3), (9, 0.3), (13, 0.3)]]
    f = features(fields)
    np.testing.assert_allclose([_old(u)["dynamic_range"] for u in fields[:3]], 10.0, atol=1e-9)
    assert all(old_dynamic_range_is_floor_decided(u) for u in fields)
    dyn, slope = col(f, "dynamic_range"), col(f, "slope")
    assert (dyn[:3] == 0).all() and (slope[:3] == 0).all()
    assert len(np.unique(np.round(dyn[3:], 9))) == 5 and len(np.unique(np.round(slope[3:], 9))) == 5
    # a weaker second mode: larger dynamic range, steeper (more negative) slope
    assert dyn[5] > dyn[3] and slope[5] < slope[3]
    # the same amplitudes further apart: the ratio of ring means grows with the ring size
    assert slope[4] < 0 and dyn[4] > dyn[3]


@pytest.mark.parametrize("band", [(4, 8), (4, 16)])
def test_band_limited_power_laws(band):
    """Band-limited fields ``|X|^2 = k^-alpha`` for k0 <= |k| <= k1: the 1.0 dynamic_range was
    9-10 for all of them, set by the log floor; the new one follows alpha (steeper spectrum,
    larger peak-to-median ratio) and involves no floor; the slope follows -alpha."""
    n = 64
    K = kmag(n)
    k0, k1 = band
    alphas = [0.0, 1.0, 2.0, 4.0]
    fields = [from_spectrum(((K >= k0) & (K <= k1)) * np.where(K > 0, K, 1.0) ** (-a / 2), seed=1) for a in alphas]
    f = features(fields)
    dyn, slope = col(f, "dynamic_range"), col(f, "slope")
    assert all(old_dynamic_range_is_floor_decided(u) for u in fields)
    assert np.all(np.diff(dyn) > 0.05) and np.all(np.diff(slope) < -0.5)
    np.testing.assert_allclose(slope, -np.array(alphas), atol=0.6)


def test_band_width_moves_dynamic_range():
    """Same power law k^-2, wider band: more rings below the peak, larger peak-to-median ratio."""
    n = 64
    K = kmag(n)
    fields = [from_spectrum(((K >= 4) & (K <= k1)) * np.where(K > 0, K, 1.0) ** -1.0, seed=2) for k1 in (6, 10, 16, 24)]
    dyn = col(features(fields), "dynamic_range")
    assert np.all(np.diff(dyn) > 0.05)


@pytest.mark.parametrize("n", [16, 64])
def test_grf_slope_follows_the_length_scale(n):
    """Expected GRF spectra ``exp(-(2 pi |k| l)^2 / 2)``: a longer correlation length is a
    steeper spectrum, so the slope decreases strictly with l (the 1.0 slope did not: it was
    decided by the floor once S dropped below it)."""
    K = kmag(n)
    ells = [0.02, 0.05, 0.1, 0.2, 0.3, 0.4]
    fields = [from_spectrum(np.exp(-((2 * np.pi * K * ell) ** 2) / 4) * (K > 0), seed=3) for ell in ells]
    f = features(fields)
    assert np.all(np.diff(col(f, "slope")) < -0.3)
    if n == 64:
        old = [_old(u)["slope"] for u in fields]
        assert not np.all(np.diff(old) < 0)  # the 1.0 slope turned back up with l


def test_grf_draws_differ_where_the_old_values_saturated():
    """IC-generator GRF draws on 32x32 (float32, as stored): 4 length scales x 4 draws. The 1.0
    dynamic_range was 10.00 for every draw at l = 0.3; the new values differ between draws and
    the mean slope decreases with l."""
    n = 32
    ells = [0.05, 0.1, 0.2, 0.3]
    draws = {
        ell: gaussian_random_field.generate(GRFParams(length_scale=ell), n, 4, np.random.default_rng(7)).astype(np.float32)
        for ell in ells
    }
    old = [_old(u.astype(np.float64))["dynamic_range"] for u in draws[0.3]]
    np.testing.assert_allclose(old, 10.0, atol=0.01)
    slopes, dyns = [], []
    for ell in ells:
        f = spectral_features(torch.from_numpy(draws[ell]))
        slopes.append(col(f, "slope"))
        dyns.append(col(f, "dynamic_range"))
    slopes, dyns = np.array(slopes), np.array(dyns)
    assert len(np.unique(np.round(slopes, 5))) == slopes.size
    assert len(np.unique(np.round(dyns, 5))) == dyns.size
    assert np.all(np.diff(slopes.mean(1)) < -0.5)
    assert dyns[-1].std() > 0.1


def test_low_frac_on_16x16():
    """On 16x16 the 1.0 band |k| < 1 was empty (0 for every field); now |k| <= 1: a |k| = 1 mode is
    all low, a |k| = sqrt(2) mode none, and the low share of GRF spectra grows with l."""
    n = 16
    K = kmag(n)
    ells = [0.05, 0.1, 0.2, 0.3]
    fields = [wave(1, 0, n), wave(0, 1, n), wave(1, 1, n)]
    fields += [from_spectrum(np.exp(-((2 * np.pi * K * ell) ** 2) / 4) * (K > 0), seed=4) for ell in ells]
    low = col(features(fields), "low_frac")
    assert all(_old(u)["low_frac"] == 0 for u in fields)
    np.testing.assert_allclose(low[:3], [1.0, 1.0, 0.0], atol=1e-12)
    assert np.all(np.diff(low[3:]) > 0.05)
    # hand check: the ring |k| = 1 holds 4 bins of the expected spectrum
    amp2 = np.exp(-((2 * np.pi * K * 0.2) ** 2) / 2) * (K > 0)
    assert low[5] == pytest.approx(amp2[K == 1].sum() / amp2.sum(), rel=1e-9)


# ----------------------------------------------------------------------------- grids


def _plain_band(k2: np.ndarray, n: int) -> np.ndarray:
    e2 = [(n // 2) ** (i / 4) for i in range(1, 8)]
    return sum((k2 >= e - 1e-9).astype(int) for e in e2)


@pytest.mark.parametrize("n", GRIDS)
def test_every_band_and_low_frac_non_empty(n):
    g = spectral_grid(n, torch.device("cpu"), torch.float64)
    assert (g.bands.sum(0) > 0).all(), n
    assert g.low.sum() > 0
    # every non-DC bin in exactly one band; the low band is exactly 0 < |k| <= max(1, kN / 8)
    k2 = np.round(g.kmag.numpy() ** 2).astype(int)
    np.testing.assert_array_equal(g.bands.sum(1).numpy(), (k2 > 0).astype(float))
    np.testing.assert_array_equal(g.low.numpy(), ((k2 > 0) & (np.sqrt(k2) <= max(1, n / 16))).astype(float))


def test_bands_unchanged_where_none_was_empty():
    empty_somewhere = []
    for n in GRIDS:
        g = spectral_grid(n, torch.device("cpu"), torch.float64)
        k2 = np.round(g.kmag.numpy() ** 2).astype(int)
        nz = k2 > 0
        plain = _plain_band(k2[nz], n)
        got = g.bands.numpy()[nz].argmax(1)
        if len(np.unique(plain)) < 8:
            empty_somewhere.append(n)
            assert len(np.unique(got)) == 8
        else:
            np.testing.assert_array_equal(got, plain, err_msg=str(n))
    assert empty_somewhere == [8, 10, 12]


def test_8x8_bands_are_single_shells():
    lower = band_edges_sq(8)
    k2 = np.array([1, 2, 4, 5, 8, 9, 10, 13, 16, 32])
    band = (k2[:, None] >= lower[None, 1:]).sum(1)
    np.testing.assert_array_equal(band, [0, 1, 2, 3, 4, 5, 6, 7, 7, 7])
