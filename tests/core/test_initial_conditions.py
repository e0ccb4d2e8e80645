"""Initial-condition generators: contract shared by every registry entry, plus analytic checks."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from spinlock_core.initial_conditions import (
    IC_GENERATORS,
    ICGenerator,
    gaussian_blobs,
    gaussian_random_field,
    generate_ic,
    localized,
    multiscale_grf,
    resolve_variant,
    snap_wavevectors,
    structured,
)
from spinlock_core.initial_conditions.gaussian_random_field import wavenumber_magnitude

# The `simulation.input_generation` variant blocks of the production seed config.
PRODUCTION_VARIANTS = {
    "gaussian_random_field_v0": {"length_scale": 0.05, "variance": 0.25},
    "gaussian_random_field_v1": {"length_scale": 0.05, "variance": 0.5},
    "gaussian_random_field_v2": {"length_scale": 0.05, "variance": 1.0},
    "gaussian_random_field_v3": {"length_scale": 0.05, "variance": 2.0},
    "gaussian_random_field_v4": {"length_scale": 0.05, "variance": 4.0},
    "multiscale_grf_low": {"scales": [0.30, 0.35, 0.40], "variance": 1.0},
    "multiscale_grf_mid": {"scales": [0.08, 0.10, 0.12], "variance": 1.0},
    "multiscale_grf_high": {"scales": [0.02, 0.025, 0.03], "variance": 1.0},
    "structured": {"num_modes": 1, "wavelength_range": [8.0, 64.0], "amplitude_range": [0.5, 2.0]},
    "localized": {"num_blobs": 5, "min_width": 5.0, "max_width": 15.0},
}
EXPECTED_BASE = {
    **{f"gaussian_random_field_v{i}": "gaussian_random_field" for i in range(5)},
    **{f"multiscale_grf_{b}": "multiscale_grf" for b in ("low", "mid", "high")},
    "structured": "structured",
    "localized": "localized",
}
KNOWN = "gaussian_random_field, localized, multiscale_grf, structured"


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def draw(variant: str, seed: int = 0, grid: int = 64, channels: int = 3, block: dict | None = None) -> np.ndarray:
    gen, params = resolve_variant(variant, PRODUCTION_VARIANTS.get(variant) if block is None else block)
    return generate_ic(gen, params, grid, channels, rng(seed))


def power(u: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` -> power spectrum ``[H, W]`` summed over channels (fft2 order)."""
    return (np.abs(np.fft.fft2(u.astype(np.float64))) ** 2).sum(axis=0)


def centroid(u: np.ndarray) -> float:
    """Spectral centroid ``sum P |k| / sum P`` over non-DC bins, cycles per domain."""
    p, k = power(u), wavenumber_magnitude(u.shape[-1])
    p[0, 0] = 0.0
    return float((p * k).sum() / p.sum())


# ---------------------------------------------------------------------------------------------
# Contract: every registered generator


@pytest.fixture(params=sorted(IC_GENERATORS))
def generator(request) -> ICGenerator:
    return IC_GENERATORS[request.param]


class TestContract:
    def test_registered_under_its_name(self, generator):
        assert isinstance(generator, ICGenerator)
        assert IC_GENERATORS[generator.name] is generator

    @pytest.mark.parametrize(("grid", "channels"), [(4, 1), (32, 3), (64, 2)])
    def test_shape_dtype_finite(self, generator, grid, channels):
        u = generator.generate(generator.default_params(), grid, channels, rng(1))
        assert u.shape == (channels, grid, grid)
        assert u.dtype == np.float32
        assert np.isfinite(u).all()
        if grid >= 16:  # a default-width blob on a 4-pixel torus is legitimately flat
            assert u.std() > 0

    def test_same_seed_same_field_other_seed_other_field(self, generator):
        p = generator.default_params()
        a = generator.generate(p, 32, 3, rng(7))
        b = generator.generate(p, 32, 3, rng(7))
        c = generator.generate(p, 32, 3, rng(8))
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)

    def test_params_model_forbids_extra_keys(self, generator):
        assert generator.params_model.model_config.get("extra") == "forbid"
        generator.params_model()  # every field has a default
        with pytest.raises(ValidationError):
            generator.params_model.model_validate({"not_a_param": 1})
        with pytest.raises(ValueError, match=rf"initial condition '{generator.name}': not_a_param: unknown key"):
            resolve_variant(generator.name, {"not_a_param": 1})

    def test_boundary_validation(self, generator):
        p = generator.default_params()
        with pytest.raises(ValueError, match="grid_size must be >= 4, got 3"):
            generate_ic(generator, p, 3, 1, rng(0))
        with pytest.raises(ValueError, match="channels must be >= 1, got 0"):
            generate_ic(generator, p, 8, 0, rng(0))
        with pytest.raises(TypeError, match="numpy.random.Generator"):
            generate_ic(generator, p, 8, 1, 42)

    def test_generate_ic_accepts_name_and_mapping(self, generator):
        a = generate_ic(generator.name, None, 16, 2, rng(3))
        b = generator.generate(generator.default_params(), 16, 2, rng(3))
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# Gaussian random field


class TestGaussianRandomField:
    def test_variances_of_production_variants(self):
        measured = []
        for i, v in enumerate([0.25, 0.5, 1.0, 2.0, 4.0]):
            fields = np.stack([draw(f"gaussian_random_field_v{i}", seed=s) for s in range(8)])  # [8, 3, H, W]
            var = fields.var(axis=(-2, -1)).mean()
            assert var == pytest.approx(v, rel=0.10)
            assert abs(fields.mean()) < 0.02 * np.sqrt(v)
            measured.append(var)
        assert np.all(np.diff(measured) > 0)

    def test_each_draw_has_zero_mean(self):
        u = draw("gaussian_random_field_v2")
        np.testing.assert_allclose(u.mean(axis=(-2, -1)), 0.0, atol=1e-6)

    def test_larger_length_scale_lower_centroid(self):
        cents = [
            np.mean([centroid(draw("g", s, block={"type": "gaussian_random_field", "length_scale": l})) for s in range(3)])
            for l in (0.02, 0.05, 0.1, 0.2)
        ]
        assert np.all(np.diff(cents) < 0), cents

    def test_spectrum_follows_gaussian_density(self):
        # Averaged power in shells ~ exp(-(2 pi k l)^2 / 2) up to a constant.
        l, n = 0.05, 64
        fields = np.concatenate(
            [draw("x", s, grid=n, channels=4, block={"type": "gaussian_random_field", "length_scale": l}) for s in range(10)]
        )
        p, k = power(fields), wavenumber_magnitude(n)
        shells = [p[np.abs(k - r) < 0.5].mean() for r in (2, 4, 6)]
        expected = [np.exp(-0.5 * (2 * np.pi * r * l) ** 2) for r in (2, 4, 6)]
        ratio = np.array(shells) / np.array(expected)
        np.testing.assert_allclose(ratio / ratio[0], 1.0, rtol=0.25)

    def test_huge_length_scale_does_not_underflow(self):
        u = draw("x", block={"type": "gaussian_random_field", "length_scale": 50.0})
        assert np.isfinite(u).all() and u.std() > 0

    def test_channels_independent(self):
        u = np.concatenate([draw("gaussian_random_field_v2", s, channels=2) for s in range(10)])
        corr = np.corrcoef(u[0::2].ravel(), u[1::2].ravel())[0, 1]
        assert abs(corr) < 0.1


# ---------------------------------------------------------------------------------------------
# Multiscale GRF


class TestMultiscaleGRF:
    @pytest.mark.parametrize("grid", [64, 32])
    def test_bands_ordered_by_centroid(self, grid):
        cents = {
            band: np.mean([centroid(draw(f"multiscale_grf_{band}", s, grid=grid)) for s in range(4)])
            for band in ("low", "mid", "high")
        }
        assert cents["low"] * 1.3 < cents["mid"] and cents["mid"] * 1.3 < cents["high"], cents

    @pytest.mark.parametrize("variance", [0.5, 1.0, 3.0])
    def test_pixel_variance_exact(self, variance):
        block = {"scales": [0.3, 0.35, 0.4], "variance": variance}
        for s in range(3):
            u = draw("multiscale_grf_low", s, block=block).astype(np.float64)
            np.testing.assert_allclose(u.var(axis=(-2, -1)), variance, rtol=1e-4)
            np.testing.assert_allclose(u.mean(axis=(-2, -1)), 0.0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Structured


class TestStructured:
    @pytest.mark.parametrize("wavelength", [16.0, 8.0, 12.0])
    def test_single_mode_has_one_spectral_peak(self, wavelength):
        n = 64
        block = {"num_modes": 1, "wavelength_range": [wavelength, wavelength], "amplitude_range": [1.0, 1.0]}
        k = wavenumber_magnitude(n)
        for s in range(6):
            u = draw("structured", s, grid=n, channels=1, block=block)
            p = power(u)
            peak = np.unravel_index(np.argmax(p), p.shape)
            assert abs(k[peak] - n / wavelength) <= 0.75
            # exactly periodic: all power in the bins +-(kx, ky)
            mirror = tuple((-i) % n for i in peak)
            assert (p[peak] + p[mirror]) / p.sum() > 1 - 1e-6
            np.testing.assert_allclose(np.abs(u).max(), 1.0, rtol=0.02)

    def test_amplitude_bound(self):
        block = {"num_modes": 4, "wavelength_range": [8.0, 32.0], "amplitude_range": [0.5, 2.0]}
        for s in range(5):
            assert np.abs(draw("structured", s, block=block)).max() <= 2.0 * 4 + 1e-5

    def test_snapping(self):
        kx, ky = snap_wavevectors(np.array([4.0, 4.0, 0.3, 0.3, 2.9]), np.array([0.0, np.pi / 2, np.pi, np.pi / 3, np.pi / 4]))
        assert kx.tolist() == [4, 0, -1, 0, 2]
        assert ky.tolist() == [0, 4, 0, 1, 2]
        theta = rng(0).uniform(0, 2 * np.pi, 500)
        mag = rng(1).uniform(0.1, 10, 500)
        kx, ky = snap_wavevectors(mag, theta)
        assert np.all((kx != 0) | (ky != 0))
        big = mag > 1
        assert np.all(np.abs(np.hypot(kx, ky)[big] - mag[big]) <= np.sqrt(2) / 2 + 1e-12)

    def test_wavelength_longer_than_domain(self):
        u = draw("structured", block={"num_modes": 1, "wavelength_range": [64.0, 64.0]}, grid=16, channels=1)
        p = power(u)
        p[0, 0] = 0.0
        peak = np.unravel_index(np.argmax(p), p.shape)
        assert wavenumber_magnitude(16)[peak] == 1.0


# ---------------------------------------------------------------------------------------------
# Localized


def periodic_maxima(a: np.ndarray, threshold: float) -> int:
    """Number of strict local maxima of ``a`` [H, W] above ``threshold`` (periodic 3x3 neighbourhood)."""
    neigh = [np.roll(a, (dy, dx), axis=(0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    return int(((a > np.max(neigh, axis=0)) & (a > threshold)).sum())


class TestLocalized:
    def test_single_blob_width(self):
        n = 64
        for w in (3.0, 6.0):
            for s in range(3):
                u = draw("localized", s, grid=n, channels=1,
                         block={"num_blobs": 1, "min_width": w, "max_width": w, "amplitude_range": [1.0, 1.0]})[0]
                a = np.abs(u.astype(np.float64))
                assert a.max() == pytest.approx(1.0, abs=0.05)
                cy, cx = np.unravel_index(np.argmax(a), a.shape)
                a = np.roll(a, (n // 2 - cy, n // 2 - cx), axis=(0, 1))  # blob to the centre
                x = np.arange(n)
                for marginal in (a.sum(0), a.sum(1)):
                    m = (marginal * x).sum() / marginal.sum()
                    var = (marginal * (x - m) ** 2).sum() / marginal.sum()
                    assert var == pytest.approx(w**2, rel=0.05)

    def test_peak_count_and_sign(self):
        block = {"num_blobs": 4, "min_width": 1.5, "max_width": 1.5, "amplitude_range": [1.0, 1.0]}
        counts = []
        for s in range(10):
            u = draw("localized", s, block=block, channels=2)
            assert np.abs(u).max() <= 1.0 + 1e-3
            counts.append(periodic_maxima(np.abs(u[0]), 0.5))
        assert max(counts) <= 4 and min(counts) >= 2
        assert np.mean(np.array(counts) == 4) >= 0.7

    def test_blob_centres(self):
        centres = np.array([[10.0, 20.0], [40.0, 50.0]])
        u = gaussian_blobs(centres, np.array([2.0, 3.0]), np.array([[1.0], [-2.0]]), 64)[0]
        assert np.unravel_index(np.argmax(u), u.shape) == (10, 20)
        assert np.unravel_index(np.argmin(u), u.shape) == (40, 50)
        assert u[40, 50] == pytest.approx(-2.0, rel=1e-6)

    def test_periodic_wrap(self):
        n = 32
        u = gaussian_blobs(np.array([[0.0, 0.0]]), np.array([3.0]), np.array([[1.0]]), n)[0]
        # a blob on the corner continues across both edges symmetrically
        np.testing.assert_allclose(u[1:, 0], u[:0:-1, 0], rtol=1e-12)
        np.testing.assert_allclose(u[0, 1:], u[0, :0:-1], rtol=1e-12)
        assert u[-1, -1] == pytest.approx(np.exp(-1 / 9), rel=1e-6)
        # shifting the centre by the period changes nothing
        v = gaussian_blobs(np.array([[float(n), -float(n)]]), np.array([3.0]), np.array([[1.0]]), n)[0]
        np.testing.assert_allclose(u, v, atol=1e-12)

    def test_peak_equals_amplitude_for_wide_blobs(self):
        for n, w in ((64, 15.0), (32, 15.0), (8, 10.0)):
            u = gaussian_blobs(np.array([[3.3, 5.0]]), np.array([w]), np.array([[2.0]]), n)[0]
            assert u[3, 5] == pytest.approx(2.0, rel=0.01)
            assert u.max() <= 2.0 + 1e-9

    def test_wide_blob_is_smooth_across_antipode(self):
        n = 32
        u = gaussian_blobs(np.array([[0.0, 0.0]]), np.array([12.0]), np.array([[1.0]]), n)[0, 0]
        jumps = np.abs(np.diff(np.concatenate([u, u[:1]])))
        assert jumps[n // 2 - 1] < 0.1 * jumps.max() and jumps[n // 2] < 0.1 * jumps.max()

    def test_gaussian_blobs_rejects_bad_shapes(self):
        with pytest.raises(ValueError, match=r"expected centres \[K, 2\]"):
            gaussian_blobs(np.zeros((2, 3)), np.ones(2), np.ones((2, 1)), 16)
        with pytest.raises(ValueError, match="widths must be > 0"):
            gaussian_blobs(np.zeros((1, 2)), np.zeros(1), np.ones((1, 1)), 16)


# ---------------------------------------------------------------------------------------------
# Registry and variant resolution


class TestResolveVariant:
    @pytest.mark.parametrize("variant", sorted(PRODUCTION_VARIANTS))
    def test_production_variants(self, variant):
        gen, params = resolve_variant(variant, PRODUCTION_VARIANTS[variant])
        assert gen.name == EXPECTED_BASE[variant]
        assert isinstance(params, gen.params_model)
        for key, value in PRODUCTION_VARIANTS[variant].items():
            assert getattr(params, key) == value

    def test_defaults(self):
        for block in (None, {}):
            gen, params = resolve_variant("gaussian_random_field_v9", block)
            assert gen is gaussian_random_field and params == gen.params_model()

    def test_explicit_type_wins_and_is_removed(self):
        gen, params = resolve_variant("gaussian_random_field_smooth", {"type": "multiscale_grf", "scales": [0.2]})
        assert gen is multiscale_grf and params.scales == [0.2]
        assert "type" not in params.model_dump()

    def test_longest_prefix(self):
        assert resolve_variant("multiscale_grf", None)[0] is multiscale_grf
        assert resolve_variant("structured_fine", {"num_modes": 2})[0] is structured
        # a name that only shares a prefix without "_" is not a match
        with pytest.raises(ValueError, match="unknown type"):
            resolve_variant("structuredX", None)

    def test_inferred_from_fields(self):
        assert resolve_variant("blobs", {"num_blobs": 3})[0] is localized
        assert resolve_variant("waves", {"wavelength_range": [8, 16]})[0] is structured
        assert resolve_variant("band", {"scales": [0.1]})[0] is multiscale_grf
        assert resolve_variant("smooth", {"length_scale": 0.1, "variance": 2.0})[0] is gaussian_random_field

    def test_ambiguous_fields(self):
        with pytest.raises(ValueError, match="initial condition 'noise': ambiguous type: keys variance fit "
                                             "gaussian_random_field, multiscale_grf; add a 'type' key"):
            resolve_variant("noise", {"variance": 1.0})

    def test_unknown_type(self):
        with pytest.raises(ValueError, match=f"^initial condition 'foo': unknown type; known types: {KNOWN}$"):
            resolve_variant("foo", None)
        with pytest.raises(ValueError, match=f"^initial condition 'foo': unknown type 'bar'; known types: {KNOWN}$"):
            resolve_variant("foo", {"type": "bar"})
        with pytest.raises(ValueError, match="initial condition 'foo': unknown type; known types"):
            resolve_variant("foo", {"wibble": 1})

    def test_extra_key(self):
        with pytest.raises(ValueError, match=r"^initial condition 'gaussian_random_field_v0': lengthscale: unknown key "
                                             r"\(allowed keys for gaussian_random_field: length_scale, variance\)$"):
            resolve_variant("gaussian_random_field_v0", {"lengthscale": 0.1})

    def test_inverted_bounds(self):
        with pytest.raises(ValueError, match=r"^initial condition 'structured': wavelength_range: "
                                             r"lower bound 10.0 exceeds upper bound 5.0$"):
            resolve_variant("structured", {"wavelength_range": [10.0, 5.0]})
        with pytest.raises(ValueError, match=r"^initial condition 'localized': max_width: must be >= min_width \(5.0\), got 2.0$"):
            resolve_variant("localized", {"min_width": 5.0, "max_width": 2.0})
        with pytest.raises(ValueError, match=r"amplitude_range: lower bound 2.0 exceeds upper bound 1.0"):
            resolve_variant("localized", {"amplitude_range": [2.0, 1.0]})

    @pytest.mark.parametrize(
        ("variant", "block", "message"),
        [
            ("structured", {"wavelength_range": [1.0, 8.0]}, r"wavelength_range: lower bound 1.0 is below the minimum 2.0"),
            ("structured", {"num_modes": 0}, r"num_modes: Input should be greater than or equal to 1"),
            ("structured", {"amplitude_range": [1.0]}, r"amplitude_range: List should have at least 2 items"),
            ("gaussian_random_field_v0", {"length_scale": 0.0}, r"length_scale: Input should be greater than 0"),
            ("gaussian_random_field_v0", {"variance": float("nan")}, r"variance: Input should be a finite number"),
            ("multiscale_grf_low", {"scales": []}, r"scales: List should have at least 1 item"),
            ("multiscale_grf_low", {"scales": [0.1, -0.2]}, r"scales: scale \[1\] must be finite and > 0, got -0.2"),
            ("localized", {"min_width": 0.0}, r"min_width: Input should be greater than 0"),
        ],
    )
    def test_invalid_values(self, variant, block, message):
        with pytest.raises(ValueError, match=rf"^initial condition '{variant}': {message}"):
            resolve_variant(variant, block)

    def test_several_errors_are_all_listed(self):
        with pytest.raises(ValueError, match=r"num_modes: .*; wavelength_range: lower bound 9.0 exceeds"):
            resolve_variant("structured", {"num_modes": 0, "wavelength_range": [9.0, 3.0]})

    def test_bad_block_and_name(self):
        with pytest.raises(ValueError, match="initial condition 'structured': block must be a mapping, got list"):
            resolve_variant("structured", [1, 2])
        with pytest.raises(ValueError, match="non-empty string"):
            resolve_variant("", None)

    def test_params_of_another_model_rejected(self):
        with pytest.raises(TypeError, match="params must be a StructuredParams"):
            structured.generate(localized.default_params(), 16, 1, rng(0))
