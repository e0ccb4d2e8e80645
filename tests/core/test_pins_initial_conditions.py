"""Reference pins for the initial-condition generators (SPEC 3).

Every generator is rebuilt here from its definition with plain numpy (full complex FFTs where the
library uses real ones, direct 2-D sums where it uses separable contractions, an explicit sum over
periodic images), fed the same random draws in the documented order, and compared to float
precision; the GRF spectra are also checked statistically against the stated density and
amplitude. Changing one coefficient (an exponent, a 2*pi, a width, an amplitude, a sign, the
order of the draws) makes a test here fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinlock_core.initial_conditions import (
    IC_GENERATORS,
    MIN_GRID_SIZE,
    GaussianRandomField,
    GRFParams,
    Localized,
    LocalizedParams,
    MultiscaleGRF,
    MultiscaleGRFParams,
    Structured,
    StructuredParams,
    gaussian_blobs,
    gaussian_random_field,
    generate_ic,
    localized,
    multiscale_grf,
    plane_waves,
    resolve_variant,
    snap_wavevectors,
    structured,
    validate_params,
)
from spinlock_core.initial_conditions.base import check_range
from spinlock_core.initial_conditions.gaussian_random_field import grf_filter, wavenumber_magnitude
from spinlock_core.initial_conditions.multiscale_grf import _summed_filter
from spinlock_core.initial_conditions.registry import UnknownICTypeError, resolve_base

TWO_PI = 2.0 * math.pi


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# numpy references written from the SPEC / docstrings


def ref_k(n: int) -> np.ndarray:
    """|k| in cycles per domain on the full fft2 grid, from the integer wavenumbers."""
    idx = np.arange(n)
    k1 = np.where(idx <= n // 2, idx, idx - n).astype(np.float64)  # 0, 1, ..., n/2, ..., -1
    return np.sqrt(k1[:, None] ** 2 + k1[None, :] ** 2)


def ref_density(n: int, l: float) -> np.ndarray:
    """S(k) = exp(-(2 pi |k| l)^2 / 2) on the full grid, DC set to 0."""
    s = np.exp(-((TWO_PI * ref_k(n) * l) ** 2) / 2.0)
    s[0, 0] = 0.0
    return s


def ref_full_filter(n: int, l: float) -> np.ndarray:
    """Full-grid multiplier: unit real white noise -> field of expected pixel variance 1."""
    s = ref_density(n, l)
    return np.sqrt(n * n * s / s.sum())


def ref_grf(noise: np.ndarray, l: float, variance: float) -> np.ndarray:
    n = noise.shape[-1]
    u = np.fft.ifft2(np.fft.fft2(noise) * ref_full_filter(n, l))
    assert np.abs(u.imag).max() < 1e-10  # the multiplier is even in k, so the field is real
    return u.real * math.sqrt(variance)


def ref_snap(kmag: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest lattice point, element by element; (0, 0) -> the closest axis unit vector."""
    kx, ky = np.empty(kmag.shape, np.int64), np.empty(kmag.shape, np.int64)
    for i in np.ndindex(kmag.shape):
        c, s = math.cos(theta[i]), math.sin(theta[i])
        x, y = round(kmag[i] * c), round(kmag[i] * s)  # half-to-even like np.rint
        if x == 0 and y == 0:
            if abs(c) >= abs(s):
                x = 1 if c >= 0 else -1
            else:
                y = 1 if s >= 0 else -1
        kx[i], ky[i] = x, y
    return kx, ky


def ref_plane_waves(kx, ky, amp, phase, n: int) -> np.ndarray:
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    out = np.zeros((kx.shape[0], n, n))
    for c in range(kx.shape[0]):
        for m in range(kx.shape[1]):
            out[c] += amp[c, m] * np.sin(TWO_PI * (kx[c, m] * x + ky[c, m] * y) / n + phase[c, m])
    return out


def ref_blobs(centres, widths, amps, n: int, images: int | None = None) -> np.ndarray:
    """2-D periodic Gaussians summed over images ``|i|, |j| <= images``, peak normalised to 1.

    ``images=None`` keeps exactly the images the docstring names: shifts up to
    ``max(1, ceil(6 sigma / P))`` periods around the minimum-image distance.
    """
    y, x = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
    out = np.zeros((amps.shape[1], n, n))
    for (cy, cx), w, a in zip(centres, widths, amps):
        r = images if images is not None else max(1, math.ceil(6.0 * w / n))
        dy = (y - cy + n / 2) % n - n / 2
        dx = (x - cx + n / 2) % n - n / 2
        g = np.zeros((n, n))
        peak = 0.0
        for i in range(-r, r + 1):
            for j in range(-r, r + 1):
                g += np.exp(-((dy + i * n) ** 2 + (dx + j * n) ** 2) / (2.0 * w * w))
                peak += math.exp(-((i * n) ** 2 + (j * n) ** 2) / (2.0 * w * w))
        out += a[:, None, None] * (g / peak)[None]
    return out


_M64 = (1 << 64) - 1


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def sfc64_state_with_output(value: int, position: int) -> tuple[int, int, int, int]:
    """An SFC64 state whose ``position``-th uint64 output is ``value``.

    SFC64's step (numpy's sfc64_next): ``tmp = a + b + w; w += 1; a = b ^ (b >> 11);
    b = c + (c << 3); c = rotl(c, 24) + tmp; return tmp`` is a bijection, so it is run backwards
    ``position - 1`` times from a state whose next output is ``value``.
    """
    b, c, w = 12345, 678910, position - 1
    s = ((value - b - w) & _M64, b, c, w)
    for _ in range(position - 1):
        a2, b2, c2, w2 = s
        b = a2
        for _ in range(6):  # invert y = x ^ (x >> 11)
            b = a2 ^ (b >> 11)
        c = (b2 * pow(9, -1, 1 << 64)) & _M64
        w = (w2 - 1) & _M64
        s = (((c2 - _rotl(c, 24)) - b - w) & _M64, b, c, w)
    return s


def sfc64(state: tuple[int, int, int, int]) -> np.random.Generator:
    bg = np.random.SFC64()
    st = bg.state
    st["state"]["state"] = np.array(state, dtype=np.uint64)
    st["has_uint32"], st["uinteger"] = 0, 0
    bg.state = st
    return np.random.Generator(bg)


# ---------------------------------------------------------------------------------------------
# Gaussian random field


class TestGRFFilter:
    @pytest.mark.parametrize("n", [4, 7, 16, 33])
    def test_wavenumber_magnitude(self, n):
        np.testing.assert_array_equal(wavenumber_magnitude(n), ref_k(n))
        np.testing.assert_array_equal(wavenumber_magnitude(n, half=True), ref_k(n)[:, : n // 2 + 1])
        np.testing.assert_array_equal(wavenumber_magnitude(n, False), ref_k(n))

    @pytest.mark.parametrize(("n", "l"), [(16, 0.05), (32, 0.1), (33, 0.02), (64, 0.2), (8, 1e-3)])
    def test_filter_is_sqrt_of_normalised_gaussian_density(self, n, l):
        a = grf_filter(n, l)
        full = ref_full_filter(n, l)
        assert a.shape == (n, n // 2 + 1) and a.dtype == np.float64
        np.testing.assert_allclose(a, full[:, : n // 2 + 1], rtol=1e-12, atol=1e-12 * full.max())
        assert a[0, 0] == 0.0  # DC excluded
        # theoretical normalisation: sum over the FULL grid of a_k^2 equals N = n^2
        assert (full**2).sum() == pytest.approx(n * n, rel=1e-12)
        assert not a.flags.writeable

    def test_huge_length_scale_keeps_only_the_four_unit_modes(self):
        # S(1) / S(sqrt 2) = exp((2 pi 50)^2 / 2) overflows: only |k| = 1 survives, each of the
        # four bins (+-1, 0), (0, +-1) with a_k^2 = n^2 / 4
        n = 16
        a = grf_filter(n, 50.0)
        expect = np.zeros((n, n // 2 + 1))
        expect[1, 0] = expect[n - 1, 0] = expect[0, 1] = n / 2
        np.testing.assert_allclose(a, expect, rtol=1e-12, atol=0)


class TestGRFGenerate:
    @pytest.mark.parametrize(("n", "channels", "l", "v"), [(16, 2, 0.05, 1.0), (32, 3, 0.1, 2.5), (15, 1, 0.03, 0.25)])
    def test_equals_filtered_white_noise(self, n, channels, l, v):
        params = GRFParams(length_scale=l, variance=v)
        u = gaussian_random_field.generate(params, n, channels, rng(11))
        noise = rng(11).standard_normal((channels, n, n))  # the only draw, in this shape
        expect = ref_grf(noise, l, v)
        np.testing.assert_allclose(u, expect, rtol=1e-5, atol=1e-6 * math.sqrt(v))
        assert u.dtype == np.float32 and u.flags.c_contiguous

    def test_defaults_are_l_0p1_and_unit_variance(self):
        p = GRFParams()
        assert (p.length_scale, p.variance) == (0.1, 1.0)
        u = generate_ic("gaussian_random_field", None, 16, 1, rng(2))
        np.testing.assert_allclose(u, ref_grf(rng(2).standard_normal((1, 16, 16)), 0.1, 1.0), rtol=1e-5, atol=1e-6)

    def test_radial_spectrum_has_stated_shape_and_absolute_amplitude(self):
        # E |fft2(u)_k|^2 = n^2 * v * a_k^2 = n^4 * v * S(k) / sum S: both the Gaussian shape in k
        # and the overall amplitude v are measured on 600 independent channels.
        n, l, v = 32, 0.06, 2.0
        u = gaussian_random_field.generate(GRFParams(length_scale=l, variance=v), n, 600, rng(5)).astype(np.float64)
        p = (np.abs(np.fft.fft2(u)) ** 2).mean(axis=0)
        s = ref_density(n, l)
        k = ref_k(n)
        for r in (1, 2, 3, 4, 5):
            shell = np.abs(k - r) < 0.5
            measured = p[shell].mean()
            expected = (n**4 * v * s / s.sum())[shell].mean()
            assert measured == pytest.approx(expected, rel=0.06), r
        # expected pixel variance v, spatial mean exactly 0
        assert u.var(axis=(-2, -1)).mean() == pytest.approx(v, rel=0.05)
        np.testing.assert_allclose(u.mean(axis=(-2, -1)), 0.0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Multiscale GRF


class TestMultiscaleGRF:
    @pytest.mark.parametrize("scales", [(0.05, 0.1, 0.2), (0.3,), (0.02, 0.3)])
    def test_summed_filter(self, scales):
        n = 24
        expect = np.sqrt(sum(ref_full_filter(n, s) ** 2 for s in scales))[:, : n // 2 + 1]
        a = _summed_filter(n, tuple(scales))
        np.testing.assert_allclose(a, expect, rtol=1e-12)
        assert not a.flags.writeable

    @pytest.mark.parametrize(("n", "channels", "scales", "v"), [(16, 3, [0.05, 0.1, 0.2], 1.0), (21, 2, [0.3, 0.35], 3.0)])
    def test_equals_summed_spectrum_rescaled_to_exact_variance(self, n, channels, scales, v):
        u = multiscale_grf.generate(MultiscaleGRFParams(scales=scales, variance=v), n, channels, rng(4))
        noise = rng(4).standard_normal((channels, n, n))
        amp = np.sqrt(sum(ref_full_filter(n, s) ** 2 for s in scales))
        raw = np.fft.ifft2(np.fft.fft2(noise) * amp).real
        expect = raw / raw.std(axis=(-2, -1), keepdims=True) * math.sqrt(v)  # population std
        np.testing.assert_allclose(u, expect, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(u.astype(np.float64).var(axis=(-2, -1)), v, rtol=1e-5)

    def test_defaults(self):
        p = MultiscaleGRFParams()
        assert (p.scales, p.variance) == ([0.05, 0.1, 0.2], 1.0)

    def test_radial_spectrum_is_the_sum_of_unit_variance_spectra(self):
        # shape of E|u_k|^2 follows sum_s S_s(k) / sum S_s (each scale carries unit variance)
        n, scales = 32, [0.04, 0.15]
        u = multiscale_grf.generate(MultiscaleGRFParams(scales=scales), n, 400, rng(9)).astype(np.float64)
        p = (np.abs(np.fft.fft2(u)) ** 2).mean(axis=0)
        dens = sum(ref_density(n, s) / ref_density(n, s).sum() for s in scales)
        k = ref_k(n)
        # each draw has pixel variance exactly 1 and mean 0, so its total power sum_k |u_k|^2 is
        # n^2 * n^2 (Parseval), spread over k in proportion to the summed density (the per-draw
        # rescaling biases single shells by a few percent, hence the wider tolerance)
        expect = n**4 * dens / dens.sum()
        for r in (1, 2, 4, 6, 8):
            shell = np.abs(k - r) < 0.5
            assert p[shell].mean() == pytest.approx(expect[shell].mean(), rel=0.12), r


# ---------------------------------------------------------------------------------------------
# Structured


class TestStructured:
    def test_snap_against_elementwise_reference(self):
        r = rng(3)
        kmag = r.uniform(0.0, 12.0, (6, 40))
        theta = r.uniform(-2 * np.pi, 2 * np.pi, (6, 40))
        kx, ky = snap_wavevectors(kmag, theta)
        ekx, eky = ref_snap(kmag, theta)
        np.testing.assert_array_equal(kx, ekx)
        np.testing.assert_array_equal(ky, eky)
        assert kx.dtype == np.int64 and ky.dtype == np.int64

    def test_snap_fallback_directions(self):
        small = np.full(6, 0.2)
        theta = np.array([0.0, np.pi, np.pi / 2, 3 * np.pi / 2, 0.1, np.pi / 2 + 0.1])
        kx, ky = snap_wavevectors(small, theta)
        assert kx.tolist() == [1, -1, 0, 0, 1, 0]
        assert ky.tolist() == [0, 0, 1, -1, 0, 1]
        # an exact tie |cos| == |sin| (float32 pi/4 and 3 pi/4) goes to the x axis
        t = np.array([np.pi / 4, 3 * np.pi / 4], dtype=np.float32)
        assert np.abs(np.cos(t[0])) == np.abs(np.sin(t[0])) and np.abs(np.cos(t[1])) == np.abs(np.sin(t[1]))
        kx, ky = snap_wavevectors(np.float32([0.2, 0.2]), t)
        assert kx.tolist() == [1, -1] and ky.tolist() == [0, 0]
        # rounding, not truncation: 2.6 along x -> 3, along y -> 3; 0.6 along -x -> -1
        kx, ky = snap_wavevectors(np.array([2.6, 2.6, 0.6]), np.array([0.0, np.pi / 2, np.pi]))
        assert kx.tolist() == [3, 0, -1] and ky.tolist() == [0, 3, 0]

    def test_plane_waves_formula(self):
        r = rng(8)
        n, c, m = 12, 2, 3
        kx = r.integers(-5, 6, (c, m))
        ky = r.integers(-5, 6, (c, m))
        amp = r.uniform(0.5, 2.0, (c, m))
        phase = r.uniform(0, TWO_PI, (c, m))
        u = plane_waves(kx, ky, amp, phase, n)
        np.testing.assert_allclose(u, ref_plane_waves(kx, ky, amp, phase, n), atol=1e-12)
        # a single hand case: A = 2, (kx, ky) = (1, 0), phase pi/2 -> 2 cos(2 pi x / n), constant in y
        one = plane_waves(np.array([[1]]), np.array([[0]]), np.array([[2.0]]), np.array([[np.pi / 2]]), 8)[0]
        np.testing.assert_allclose(one, np.tile(2 * np.cos(TWO_PI * np.arange(8) / 8), (8, 1)), atol=1e-12)
        # (kx, ky) = (0, 2): varies along y (axis 0) only
        two = plane_waves(np.array([[0]]), np.array([[2]]), np.array([[1.0]]), np.array([[0.0]]), 8)[0]
        np.testing.assert_allclose(two, np.tile(np.sin(TWO_PI * 2 * np.arange(8) / 8)[:, None], (1, 8)), atol=1e-12)

    @pytest.mark.parametrize(
        ("n", "channels", "block"),
        [
            (32, 3, {}),
            (16, 2, {"num_modes": 4, "wavelength_range": [2.0, 40.0], "amplitude_range": [0.0, 3.0]}),
            (20, 1, {"num_modes": 2, "wavelength_range": [5.0, 5.0], "amplitude_range": [1.5, 1.5]}),
        ],
    )
    def test_generate_from_documented_draws(self, n, channels, block):
        params = StructuredParams(**block)
        u = structured.generate(params, n, channels, rng(21))
        r = rng(21)
        shape = (channels, params.num_modes)
        theta = r.uniform(0.0, TWO_PI, shape)
        wavelength = r.uniform(*params.wavelength_range, shape)
        amplitude = r.uniform(*params.amplitude_range, shape)
        phase = r.uniform(0.0, TWO_PI, shape)
        kx, ky = ref_snap(n / wavelength, theta)
        expect = ref_plane_waves(kx, ky, amplitude, phase, n)
        np.testing.assert_allclose(u, expect, rtol=1e-5, atol=1e-5)

    def test_defaults(self):
        p = StructuredParams()
        assert (p.num_modes, p.wavelength_range, p.amplitude_range) == (3, [8.0, 32.0], [0.5, 2.0])

    def test_single_mode_power_equals_half_amplitude_squared(self):
        # one snapped sinusoid of amplitude A: pixel variance A^2 / 2, mean 0, all power at +-k
        n = 32
        u = structured.generate(
            StructuredParams(num_modes=1, wavelength_range=[8.0, 8.0], amplitude_range=[1.7, 1.7]), n, 3, rng(0)
        ).astype(np.float64)
        np.testing.assert_allclose(u.var(axis=(-2, -1)), 1.7**2 / 2, rtol=1e-5)
        np.testing.assert_allclose(u.mean(axis=(-2, -1)), 0.0, atol=1e-5)
        p = np.abs(np.fft.fft2(u)) ** 2
        k = ref_k(n)
        for c in range(3):
            peak = np.unravel_index(np.argmax(p[c]), (n, n))
            assert abs(k[peak] - n / 8.0) <= math.sqrt(2) / 2 + 1e-12


# ---------------------------------------------------------------------------------------------
# Localized


class TestLocalized:
    def test_gaussian_blobs_against_explicit_image_sum(self):
        n = 24
        centres = np.array([[3.2, 20.5], [12.0, 0.0], [23.9, 11.1], [-5.0, 30.0]])
        widths = np.array([2.0, 4.5, 1.2, 7.0])
        amps = np.array([[1.0, -0.5], [-2.0, 0.3], [0.7, 0.7], [1.5, -1.0]])
        u = gaussian_blobs(centres, widths, amps, n)
        assert u.shape == (2, n, n) and u.dtype == np.float64
        # exactly the documented truncation (ceil(6 sigma / P) images each side)
        np.testing.assert_allclose(u, ref_blobs(centres, widths, amps, n), rtol=1e-12, atol=1e-14)
        # and the untruncated periodic Gaussian to well below float32 precision
        np.testing.assert_allclose(u, ref_blobs(centres, widths, amps, n, images=6), rtol=0, atol=1e-7)

    @pytest.mark.parametrize("w", [4.0, 6.0, 8.0, 12.0, 30.0])
    def test_wide_blob_truncation_matches_documented_reach(self, w):
        # sigma comparable to the period: the images beyond ceil(6 sigma / P) are dropped exactly
        n = 8
        centres, widths, amps = np.array([[1.3, 6.7]]), np.array([w]), np.array([[1.0]])
        u = gaussian_blobs(centres, widths, amps, n)
        np.testing.assert_allclose(u, ref_blobs(centres, widths, amps, n), rtol=1e-13, atol=0)

    def test_hand_values(self):
        # single blob sigma = 2 at (5, 5) on a 32 torus: u(5 + dy, 5 + dx) = exp(-(dy^2 + dx^2) / 8)
        u = gaussian_blobs(np.array([[5.0, 5.0]]), np.array([2.0]), np.array([[3.0]]), 32)[0]
        assert u[5, 5] == pytest.approx(3.0, rel=1e-12)
        assert u[5, 7] == pytest.approx(3.0 * math.exp(-4 / 8), rel=1e-12)
        assert u[8, 9] == pytest.approx(3.0 * math.exp(-25 / 8), rel=1e-12)
        assert u[5, 1] == pytest.approx(3.0 * math.exp(-16 / 8), rel=1e-12)  # centres are (y, x)
        assert u[1, 5] == pytest.approx(3.0 * math.exp(-16 / 8), rel=1e-12)
        # across the edge: distance from x = 5 to x = 31 is 6, not 26
        assert u[5, 31] == pytest.approx(3.0 * math.exp(-36 / 8), rel=1e-9)
        # asymmetric centre: row 0 is 2 from y = 2 and column 9 is 3 from x = 6
        v = gaussian_blobs(np.array([[2.0, 6.0]]), np.array([1.5]), np.array([[1.0]]), 32)[0]
        assert v[0, 9] == pytest.approx(math.exp(-(4 + 9) / (2 * 1.5**2)), rel=1e-12)
        assert v[0, 3] == pytest.approx(math.exp(-(4 + 9) / (2 * 1.5**2)), rel=1e-12)

    @pytest.mark.parametrize(
        ("n", "channels", "block"),
        [
            (32, 3, {}),
            (16, 2, {"num_blobs": 7, "min_width": 0.5, "max_width": 9.0, "amplitude_range": [0.0, 4.0]}),
            (24, 1, {"num_blobs": 1, "min_width": 2.0, "max_width": 2.0, "amplitude_range": [1.0, 1.0]}),
        ],
    )
    def test_generate_from_documented_draws(self, n, channels, block):
        params = LocalizedParams(**block)
        u = localized.generate(params, n, channels, rng(33))
        r = rng(33)
        k = params.num_blobs
        centres = r.uniform(0.0, n, (k, 2))
        widths = r.uniform(params.min_width, params.max_width, k)
        magnitude = r.uniform(*params.amplitude_range, (k, channels))
        sign = np.where(r.random((k, channels)) < 0.5, -1.0, 1.0)
        expect = ref_blobs(centres, widths, magnitude * sign, n)
        np.testing.assert_allclose(u, expect, rtol=1e-5, atol=1e-6)

    def test_signs_are_random_and_balanced(self):
        p = LocalizedParams(num_blobs=1, min_width=1.0, max_width=1.0, amplitude_range=[1.0, 1.0])
        signs = []
        for s in range(200):
            u = localized.generate(p, 8, 1, rng(s)).astype(np.float64)[0]
            peak = u.flat[np.argmax(np.abs(u))]
            assert abs(peak) <= 1.0 + 1e-6
            signs.append(np.sign(peak))
        assert 70 < signs.count(1.0) < 130 and signs.count(1.0) + signs.count(-1.0) == 200

    def test_sign_is_minus_exactly_below_one_half(self):
        # sign = -1 where the uniform draw u < 0.5, +1 otherwise, u = 0.5 included. An SFC64 state
        # is built (by running its documented step backwards) whose fifth double is exactly 0.5:
        # draws 1-4 are the centre (y, x), the width and the magnitude of the single blob.
        state = sfc64_state_with_output(1 << 63, position=5)  # (2^63 >> 11) * 2^-53 = 0.5
        probe = sfc64(state)
        assert probe.random(5)[4] == 0.5
        p = LocalizedParams(num_blobs=1, min_width=2.0, max_width=2.0, amplitude_range=[1.0, 1.0])
        u = localized.generate(p, 16, 1, sfc64(state)).astype(np.float64)[0]
        assert u.max() > 0.5 and u.min() > 0  # sign +1: the blob is positive everywhere

    def test_defaults(self):
        p = LocalizedParams()
        assert (p.num_blobs, p.min_width, p.max_width, p.amplitude_range) == (5, 3.0, 10.0, [0.5, 2.0])

    def test_bad_shapes_message(self):
        with pytest.raises(
            ValueError,
            match=r"^expected centres \[K, 2\], widths \[K\], amplitudes \[K, C\]; got \(2, 2\), \(3,\), \(2, 1\)$",
        ):
            gaussian_blobs(np.zeros((2, 2)), np.ones(3), np.ones((2, 1)), 8)
        with pytest.raises(ValueError, match=r"got \(1, 2\), \(1, 1\), \(1, 1\)$"):
            gaussian_blobs(np.zeros((1, 2)), np.ones((1, 1)), np.ones((1, 1)), 8)
        with pytest.raises(ValueError, match=r"got \(1, 2\), \(1,\), \(1,\)$"):
            gaussian_blobs(np.zeros((1, 2)), np.ones(1), np.ones(1), 8)
        with pytest.raises(ValueError, match=r"got \(1, 2\), \(1,\), \(2, 1\)$"):
            gaussian_blobs(np.zeros((1, 2)), np.ones(1), np.ones((2, 1)), 8)
        # the centres alone inconsistent with K
        with pytest.raises(ValueError, match=r"got \(2, 3\), \(2,\), \(2, 1\)$"):
            gaussian_blobs(np.zeros((2, 3)), np.ones(2), np.ones((2, 1)), 8)
        with pytest.raises(ValueError, match=r"got \(3, 2\), \(2,\), \(2, 1\)$"):
            gaussian_blobs(np.zeros((3, 2)), np.ones(2), np.ones((2, 1)), 8)
        with pytest.raises(ValueError, match=r"^widths must be > 0, got min -1.0$"):
            gaussian_blobs(np.zeros((2, 2)), np.array([1.0, -1.0]), np.ones((2, 1)), 8)
        with pytest.raises(ValueError, match=r"^widths must be > 0, got min 0.0$"):
            gaussian_blobs(np.zeros((2, 2)), np.array([1.0, 0.0]), np.ones((2, 1)), 8)
        # any array-like is converted with np.asarray(..., float64): int lists, numeric strings
        ref = gaussian_blobs(np.array([[1.0, 2.0]]), np.array([2.0]), np.ones((1, 1)), 8)
        np.testing.assert_array_equal(gaussian_blobs([[1, 2]], [2], [[1]], 8), ref)
        np.testing.assert_array_equal(gaussian_blobs([["1", "2"]], ["2"], [["1"]], 8), ref)


# ---------------------------------------------------------------------------------------------
# Registry, shared validation


class TestRegistry:
    def test_every_type_name_maps_to_its_generator(self):
        expected = {
            "gaussian_random_field": (GaussianRandomField, GRFParams),
            "multiscale_grf": (MultiscaleGRF, MultiscaleGRFParams),
            "structured": (Structured, StructuredParams),
            "localized": (Localized, LocalizedParams),
        }
        assert set(IC_GENERATORS) == set(expected)
        for name, (cls, model) in expected.items():
            gen = IC_GENERATORS[name]
            assert type(gen) is cls and gen.name == name and gen.params_model is model
            assert repr(gen) == f"{cls.__name__}(name={name!r})"
            assert gen.default_params() == model()

    @pytest.mark.parametrize(
        ("name", "block"),
        [
            ("gaussian_random_field", {"length_scale": 0.07, "variance": 3.0}),
            ("multiscale_grf", {"scales": [0.1, 0.2], "variance": 0.5}),
            ("structured", {"num_modes": 2, "wavelength_range": [4.0, 9.0], "amplitude_range": [1.0, 1.5]}),
            ("localized", {"num_blobs": 2, "min_width": 1.0, "max_width": 3.0, "amplitude_range": [0.2, 0.4]}),
        ],
    )
    def test_generate_ic_by_name_uses_the_given_parameters(self, name, block):
        gen = IC_GENERATORS[name]
        params = gen.params_model(**block)
        a = generate_ic(name, block, 16, 2, rng(1))
        np.testing.assert_array_equal(a, gen.generate(params, 16, 2, rng(1)))
        np.testing.assert_array_equal(generate_ic(gen, params, 16, 2, rng(1)), a)
        g2, p2 = resolve_variant(f"{name}_custom", block)
        assert g2 is gen and p2 == params
        assert validate_params(gen, block) == params

    def test_generate_ic_unknown_name(self):
        with pytest.raises(
            ValueError,
            match=r"^initial condition 'grf': unknown type; known types: gaussian_random_field, localized, "
            r"multiscale_grf, structured$",
        ):
            generate_ic("grf", None, 8, 1, rng(0))

    def test_validate_params_labels_and_list_locations(self):
        with pytest.raises(ValueError, match=r"^initial condition 'structured': num_modes: "):
            validate_params(structured, {"num_modes": 0})
        with pytest.raises(ValueError, match=r"^initial condition 'waves_v2': num_modes: "):
            validate_params(structured, {"num_modes": 0}, "waves_v2")
        with pytest.raises(ValueError, match=r"^initial condition 'localized': amplitude_range\[1\]: Input should be a valid number"):
            validate_params(localized, {"amplitude_range": [1.0, "x"]})
        with pytest.raises(ValueError, match=r"^initial condition 'm': scales\[0\]: Input should be a valid number"):
            validate_params(multiscale_grf, {"scales": ["a"]}, "m")
        with pytest.raises(
            ValueError,
            match=r"^initial condition 'localized': width: unknown key \(allowed keys for localized: "
            r"num_blobs, min_width, max_width, amplitude_range\)$",
        ):
            validate_params(localized, {"width": 1.0})
        # a non-extra error does not list the allowed keys
        with pytest.raises(ValueError) as e:
            validate_params(localized, {"num_blobs": 0})
        assert "allowed keys" not in str(e.value)

    def test_resolve_base(self):
        gen, block = resolve_base("structured_x", {"num_modes": 2})
        assert gen is structured and block == {"num_modes": 2}
        gen, block = resolve_base("anything", {"type": "localized", "num_blobs": 2})
        assert gen is localized and block == {"num_blobs": 2}
        src = {"type": "localized"}
        resolve_base("anything", src)
        assert src == {"type": "localized"}  # the caller's block is not modified
        assert resolve_base("gaussian_random_field", None) == (gaussian_random_field, {})
        with pytest.raises(UnknownICTypeError) as e:
            resolve_base("foo", {"type": "bar"})
        assert (e.value.variant, e.value.declared) == ("foo", "bar")
        with pytest.raises(UnknownICTypeError) as e:
            resolve_base("foo", {"type": 3})
        assert (e.value.variant, e.value.declared) == ("foo", 3)
        assert "unknown type 3;" in str(e.value)
        with pytest.raises(UnknownICTypeError) as e:
            resolve_base("foo", {"wibble": 1})
        assert (e.value.variant, e.value.declared) == ("foo", None)
        with pytest.raises(UnknownICTypeError, match=r"^initial condition 'foo': unknown type; known types: "):
            resolve_base("foo", {})
        with pytest.raises(ValueError, match=r"^initial condition name must be a non-empty string, got 3$"):
            resolve_base(3, None)
        with pytest.raises(ValueError, match=r"^initial condition 'x': block must be a mapping, got list$"):
            resolve_base("x", [])

    def test_name_prefix_needs_underscore_and_prefers_longest(self):
        assert resolve_base("localized_", None)[0] is localized
        assert resolve_base("multiscale_grf_gaussian_random_field", None)[0] is multiscale_grf
        # neither a prefix without "_" nor a name merely containing a type resolves by name
        with pytest.raises(UnknownICTypeError):
            resolve_base("xlocalized", None)
        with pytest.raises(UnknownICTypeError):
            resolve_base("my_localized", None)
        # keys are only consulted when the name does not resolve: the name wins
        assert resolve_base("localized_v1", {"scales": [0.1]})[0] is localized

    def test_every_full_key_set_infers_its_generator(self):
        for gen in IC_GENERATORS.values():
            keys = {k: getattr(gen.default_params(), k) for k in gen.params_model.model_fields}
            assert resolve_base("custom", keys)[0] is gen

    def test_ambiguous_message_lists_every_key_and_type(self, monkeypatch):
        class GRFCopy(GaussianRandomField):
            name = "grf_copy"

        monkeypatch.setitem(IC_GENERATORS, "grf_copy", GRFCopy())
        with pytest.raises(ValueError, match=r"^initial condition 'smooth': ambiguous type: keys length_scale, variance "
                                             r"fit gaussian_random_field, grf_copy; add a 'type' key$"):
            resolve_base("smooth", {"variance": 1.0, "length_scale": 0.1})
        assert resolve_base("grf_copy_v1", None)[0] is IC_GENERATORS["grf_copy"]

    def test_validator_messages_are_reported_without_pydantic_prefix(self):
        with pytest.raises(ValueError, match=r"^initial condition 'structured': wavelength_range: lower bound 10.0 "
                                             r"exceeds upper bound 5.0$"):
            validate_params(structured, {"wavelength_range": [10.0, 5.0]})
        with pytest.raises(ValueError, match=r"^initial condition 'structured': num_modes: Input should be greater than "
                                             r"or equal to 1; wavelength_range: lower bound 9.0 exceeds upper bound 3.0$"):
            validate_params(structured, {"num_modes": 0, "wavelength_range": [9.0, 3.0]})
        # resolve_variant labels the message with the variant, not the base type
        with pytest.raises(ValueError, match=r"^initial condition 'structured_v2': num_modes: Input should be"):
            resolve_variant("structured_v2", {"num_modes": 0})
        # an unknown key is named exactly as given, whatever its first letters
        with pytest.raises(ValueError, match=r"^initial condition 'localized': XXwidth: unknown key \(allowed"):
            validate_params(localized, {"XXwidth": 1.0})

    def test_fields_must_all_belong_to_one_generator(self):
        # amplitude_range is shared by structured and localized; with num_blobs only localized fits
        assert resolve_base("a", {"amplitude_range": [1, 2], "num_blobs": 2})[0] is localized
        assert resolve_base("a", {"amplitude_range": [1, 2], "num_modes": 2})[0] is structured
        with pytest.raises(ValueError, match=r"^initial condition 'a': ambiguous type: keys amplitude_range fit "
                                             r"localized, structured; add a 'type' key$"):
            resolve_base("a", {"amplitude_range": [1, 2]})
        with pytest.raises(UnknownICTypeError):
            resolve_base("a", {"num_blobs": 2, "num_modes": 2})


class TestBaseChecks:
    def test_check_range(self):
        assert check_range([1.0, 2.0], 0.0) == [1.0, 2.0]
        assert check_range([2.0, 2.0], 2.0) == [2.0, 2.0]  # equal bounds and lo == minimum allowed
        with pytest.raises(ValueError, match=r"^bounds must be finite, got \[inf, 2.0\]$"):
            check_range([math.inf, 2.0], 0.0)
        with pytest.raises(ValueError, match=r"^bounds must be finite, got \[1.0, nan\]$"):
            check_range([1.0, math.nan], 0.0)
        with pytest.raises(ValueError, match=r"^lower bound 1.5 is below the minimum 2.0$"):
            check_range([1.5, 3.0], 2.0)
        with pytest.raises(ValueError, match=r"^lower bound 3.0 exceeds upper bound 2.5$"):
            check_range([3.0, 2.5], 0.0)

    def test_generate_argument_checks(self):
        p = gaussian_random_field.default_params()
        assert MIN_GRID_SIZE == 4
        assert gaussian_random_field.generate(p, np.int64(4), np.int32(1), rng(0)).shape == (1, 4, 4)
        with pytest.raises(ValueError, match=r"^grid_size must be an integer, got 8.0$"):
            gaussian_random_field.generate(p, 8.0, 1, rng(0))
        with pytest.raises(ValueError, match=r"^grid_size must be an integer, got True$"):
            gaussian_random_field.generate(p, True, 1, rng(0))
        with pytest.raises(ValueError, match=r"^channels must be an integer, got '2'$"):
            gaussian_random_field.generate(p, 8, "2", rng(0))
        with pytest.raises(ValueError, match=r"^grid_size must be >= 4, got 3$"):
            gaussian_random_field.generate(p, 3, 1, rng(0))
        with pytest.raises(ValueError, match=r"^channels must be >= 1, got 0$"):
            gaussian_random_field.generate(p, 4, 0, rng(0))
        with pytest.raises(
            TypeError, match=r"^initial condition 'localized': params must be a LocalizedParams, got GRFParams$"
        ):
            localized.generate(p, 8, 1, rng(0))
        with pytest.raises(TypeError, match=r"^rng must be a numpy.random.Generator, got RandomState$"):
            gaussian_random_field.generate(p, 8, 1, np.random.RandomState(0))


def test_gaussian_blobs_of_no_blobs_is_the_zero_field():
    from spinlock_core.initial_conditions.localized import gaussian_blobs

    u = gaussian_blobs(np.zeros((0, 2)), np.zeros(0), np.zeros((0, 3)), 8)
    assert u.shape == (3, 8, 8) and u.dtype == np.float64 and not u.any()
