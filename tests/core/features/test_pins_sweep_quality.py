"""Pins of the feature checks (issue #11): ``quality.saturation`` (modal value and share of the
finite rows), ``quality.feature_report`` (every field of the report, the operator-count,
series-length, relative-tolerance, saturation-share and value-range boundaries, the column-count
message) and ``families`` (enabled families, dataset names, the columns documented as NaN,
constant or saturating by construction, the declared value ranges and the short-series NaN mask
read off the SUMMARY implementation), against hand-written expectations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from spinlock_core.config import load_experiment
from spinlock_core.features import families
from spinlock_core.features.families import (
    documented_constant,
    documented_nan,
    documented_saturated,
    enabled_families,
    feature_names,
    value_ranges,
)
from spinlock_core.features.quality import _flatten, feature_report, saturation
from spinlock_core.features.summary import AGGREGATED_NAMES, SENSITIVITY_NAMES, SUMMARY_NAMES
from spinlock_core.features.temporal import TEMPORAL_NAMES
from spinlock_core.storage.layout import PATHS

pytestmark = pytest.mark.usefixtures("one_thread")  # the short-series mask runs torch (conftest.py)

DISCRETE = "discrete by definition"
ZERO_MEAN = "zero-mean IC families (all but localized) have spatial mean exactly 0"
#: parameters of the tiny config (tests/conftest.py), in sampling order
ARCH = ("num_layers", "base_channels", "kernel_size", "activation", "dropout_rate", "noise_scale",
        "spatial_correlation", "noise_schedule", "grid_size", "update_policy", "dt")
ARCH_DISCRETE = ("num_layers", "base_channels", "kernel_size", "activation", "noise_schedule", "grid_size",
                 "update_policy")
GRANGER = ("granger_01", "granger_02", "granger_12")
#: SUMMARY columns discrete by definition: regime_switches and the 12 invariant monotonicities
MONOTONE = tuple(f"{i}_{s}_monotonicity" for i in ("linf", "l2", "entropy", "tv") for s in ("raw", "low", "high"))
#: TEMPORAL columns with a declared range, by hand from families._RANGES (first matching pattern)
TEMPORAL_RANGES = {
    **{f"band_frac_{i}": (0.0, 1.0) for i in range(8)},
    "entropy": (0.0, 1.0), "flatness": (0.0, 1.0), "peak_frac": (0.0, 1.0), "anisotropy": (-1.0, 1.0),
    "orientation_coherence": (0.0, 1.0), "low_frac": (0.0, 1.0), "high_frac": (0.0, 1.0),
    "corr_01": (-1.0, 1.0), "corr_02": (-1.0, 1.0), "corr_12": (-1.0, 1.0), "corr_abs_mean": (0.0, 1.0),
    "coherence_01": (0.0, 1.0), "coherence_02": (0.0, 1.0), "coherence_12": (0.0, 1.0),
}


def _col(name: str) -> int:
    return TEMPORAL_NAMES.index(name)


def _temporal(n: int, t: int, seed: int) -> np.ndarray:
    """``[n, t, 63]`` float64 in [0.2, 0.8]: inside every declared range, no repeated value."""
    return np.random.default_rng(seed).uniform(0.2, 0.8, size=(n, t, len(TEMPORAL_NAMES)))


@pytest.fixture
def cfg_of(write_config):
    """``cfg_of(**overrides)``: the tiny experiment config with dotted-path overrides."""
    return lambda **overrides: load_experiment(write_config(**overrides))


# --------------------------------------------------------------------------- saturation, _flatten
def test_saturation_modes_on_a_non_square_array():
    """[R=7, F=4]: the mode of a run that is not the first, the first of tied runs (smallest value),
    a column with one finite value (share 1), +-Inf left out of the rows counted."""
    nan, inf = np.nan, np.inf
    flat = np.array([
        [3.0, 5.0, nan, inf],
        [0.0, 5.0, nan, -inf],
        [2.0, 4.0, 2.0, 7.0],
        [3.0, 4.0, nan, 7.0],
        [1.0, 9.0, nan, 8.0],
        [2.0, 8.0, nan, nan],
        [3.0, 6.0, nan, 8.5],
    ])
    value, share = saturation(flat)
    assert value.shape == share.shape == (4,)
    np.testing.assert_array_equal(value, [3.0, 4.0, 2.0, 7.0])
    np.testing.assert_allclose(share, [3 / 7, 2 / 7, 1.0, 2 / 4], rtol=0, atol=1e-15)


def test_saturation_leading_run_and_a_column_without_finite_rows_first():
    """[R=5, F=3]: the modal run starting at the first sorted row; a first column of NaN only
    (share 0, value NaN) does not stop the columns after it."""
    flat = np.array([[np.nan, 1.0, 6.0], [np.nan, 1.0, 6.0], [np.nan, 1.0, 6.0], [np.nan, 2.0, 5.0],
                     [np.nan, 2.0, 5.0]])
    value, share = saturation(flat)
    assert np.isnan(value[0]) and share[0] == 0.0
    assert value[1] == 1.0 and share[1] == pytest.approx(0.6, abs=1e-15)
    assert value[2] == 6.0 and share[2] == pytest.approx(0.6, abs=1e-15)


def test_flatten_merges_every_axis_but_the_last():
    """[2, 3, 4] -> [6, 4] in C order (T = 3 != F = 4, so the feature axis cannot be confused)."""
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(_flatten(x), np.arange(24.0).reshape(6, 4))
    np.testing.assert_array_equal(_flatten(x[0]), x[0])


# --------------------------------------------------------------------------- feature_report
def test_report_fields_of_a_temporal_shard_at_the_operator_minimum(tiny_config):
    """[n=8, T=6, 63], exactly MIN_OPERATORS_FOR_CONSTANT operators: NaN counted per column and
    undocumented; one constant column (unexpected); one column on exactly SATURATION_SHARE of the
    rows (saturated) and a discrete one on 3/4 (expected); a range broken on each side."""
    x = _temporal(8, 6, seed=0)
    x[1, 2, _col("mean")] = x[6, 0, _col("mean")] = np.nan
    x[:, :, _col("skewness")] = 0.3
    x.reshape(-1, 63)[::2, _col("dynamic_range")] = 0.0  # 24 of 48 rows
    x.reshape(-1, 63)[:36, _col("ring_peaks")] = 3.0
    x[2, 3, _col("entropy")] = 1.5
    x[3, 1, _col("corr_01")] = -1.25
    r = feature_report(PATHS.TEMPORAL, x, TEMPORAL_NAMES, tiny_config)
    assert r.path == PATHS.TEMPORAL and r.n == 8
    assert r.nan_per_feature == {"mean": 2} and r.undocumented_nan == {"mean": 2} and r.inf_per_feature == {}
    assert r.constant == ["skewness"] and r.unexpected_constant == ["skewness"]
    assert r.saturated == {"dynamic_range": (0.0, 0.5), "ring_peaks": (3.0, 0.75)}
    assert r.unexpected_saturated == {"dynamic_range": (0.0, 0.5)}
    assert r.saturated_by_construction == {"ring_peaks": (3.0, 0.75)}
    ent, corr = x[..., _col("entropy")], x[..., _col("corr_01")]
    assert r.range_violations == {"entropy": (0.0, 1.0, ent.min(), 1.5), "corr_01": (-1.0, 1.0, -1.25, corr.max())}
    assert r.excused == set() and r.too_short is False
    assert r.expected_saturated == dict.fromkeys(("ring_peaks", "peak_k", "peak_kx", "peak_ky"), DISCRETE)
    assert not r.nan_ok and not r.constant_ok and not r.ranges_ok


def test_report_below_the_operator_minimum_judges_no_constant_or_saturation(tiny_config):
    """[n=7, T=6, 63]: one operator too few, so a constant column and a saturated one are not
    reported (empty list and dict); NaN, Inf and ranges are still checked."""
    x = _temporal(7, 6, seed=1)
    x[:, :, _col("skewness")] = 0.3
    x[:, :, _col("dynamic_range")] = 0.0
    x[0, 0, _col("kurtosis")] = np.inf
    r = feature_report(PATHS.TEMPORAL, x, TEMPORAL_NAMES, tiny_config)
    assert r.n == 7 and r.constant == [] and r.unexpected_constant == [] and r.saturated == {}
    assert r.inf_per_feature == {"kurtosis": 1} and r.nan_per_feature == {} and r.undocumented_nan == {}
    assert r.range_violations == {} and r.constant_ok and r.ranges_ok and not r.nan_ok


def test_report_names_the_column_count_mismatch(tiny_config):
    """[9, 4, 62] against the 63 TEMPORAL names: the message names the path and both counts."""
    x = _temporal(9, 4, seed=2)[..., :62]
    with pytest.raises(ValueError, match=r"^features/temporal/features: 62 columns but 63 names$"):
        feature_report(PATHS.TEMPORAL, x, TEMPORAL_NAMES, tiny_config)


def test_constant_is_judged_relative_to_the_column_scale(tiny_config):
    """[n=8, T=3, 63]: a spread of 1e-3 on values of 1e6 is constant; a spread of ~1e-10 on values
    of ~1e-9 is not (the 1e-30 floor, not 1); a spread of exactly 1e-7 x scale is constant (strict
    >); equal negative values and an all-NaN column are constant; the spread is taken against the
    first operator, not its negative."""
    rng = np.random.default_rng(3)
    x = _temporal(8, 3, seed=3)
    x[..., _col("p05")] = 1e6 + 1e-3 * rng.uniform(size=(8, 3))
    x[..., _col("p25")] = 1e-9 * rng.uniform(0.2, 0.8, size=(8, 3))
    x[..., _col("p75")] = 1e7
    x[3, 1, _col("p75")] = 1e7 - 1.0  # spread 1 = 1e-7 * 1e7
    x[..., _col("p95")] = 0.0
    x[..., _col("mad")] = -2.0
    x[..., _col("median")] = np.nan
    assert 1e-7 * 1e7 == 1.0
    r = feature_report(PATHS.TEMPORAL, x, TEMPORAL_NAMES, tiny_config)
    assert r.constant == ["p05", "median", "p75", "p95", "mad"]
    assert r.saturated == {} and r.range_violations == {}
    assert r.undocumented_nan == {"median": 24}


def test_range_check_boundaries(tiny_config):
    """[n=8, T=2, 63] float64: values exactly 1e-5 outside [lo, hi] pass, beyond that they are
    violations reported as (lo, hi, observed min, max); one side is enough; a column of NaN only
    is skipped."""
    x = _temporal(8, 2, seed=4)
    x[0, 0, _col("entropy")] = 0.0 - 1e-5
    x[1, 1, _col("flatness")] = 1.0 + 1e-5
    x[2, 0, _col("peak_frac")] = -0.5e-5
    x[3, 1, _col("low_frac")] = 1.0
    x[4, 0, _col("high_frac")] = -0.5
    x[5, 1, _col("orientation_coherence")] = 1.5
    x[6, 0, _col("band_frac_0")] = -0.01
    x[..., _col("band_frac_1")] = np.nan
    x[7, 1, _col("anisotropy")] = -1.0
    r = feature_report(PATHS.TEMPORAL, x, TEMPORAL_NAMES, tiny_config)
    col = lambda n: x[..., _col(n)]  # noqa: E731
    assert r.range_violations == {
        "high_frac": (0.0, 1.0, -0.5, col("high_frac").max()),
        "orientation_coherence": (0.0, 1.0, col("orientation_coherence").min(), 1.5),
        "band_frac_0": (0.0, 1.0, -0.01, col("band_frac_0").max()),
    }


def test_inf_is_counted_under_strict_floating_point_modes(tiny_config):
    """[n=8, T=3, 63] with +Inf twice at the same state (Inf - Inf in the spread) and an all-NaN
    column: no floating-point error under ``np.errstate(all="raise")`` and no warning escapes."""
    x = _temporal(8, 3, seed=5)
    x[0, 1, _col("std")] = x[5, 1, _col("std")] = np.inf
    x[2, 2, _col("std")] = -np.inf
    x[..., _col("median")] = np.nan
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        r = feature_report(PATHS.TEMPORAL, x, TEMPORAL_NAMES, tiny_config)
    assert r.inf_per_feature == {"std": 3} and r.nan_per_feature == {"median": 24} and not r.nan_ok


def test_architecture_report_excuses_single_valued_parameters(tiny_config):
    """ARCHITECTURE [n=8, 11] (2-D): the single-choice grid_size is constant but excused; a binary
    choice column on half the rows saturates by construction; dt above 1 breaks [0, 1]."""
    x = np.random.default_rng(6).uniform(0.1, 0.9, size=(8, len(ARCH)))
    x[:, ARCH.index("grid_size")] = 0.5
    x[:, ARCH.index("kernel_size")] = [0.0, 1.0] * 4
    x[5, ARCH.index("dt")] = 1.2
    r = feature_report(PATHS.ARCHITECTURE, x, ARCH, tiny_config)
    assert r.constant == ["grid_size"] and r.excused == {"grid_size"} and r.unexpected_constant == []
    assert r.saturated == {"kernel_size": (0.0, 0.5)} and r.unexpected_saturated == {}
    assert r.expected_saturated == dict.fromkeys(ARCH_DISCRETE, DISCRETE)
    assert r.range_violations == {"dt": (0.0, 1.0, x[:, ARCH.index("dt")].min(), 1.2)}


def test_summary_report_short_series_and_documented_nan(cfg_of):
    """SUMMARY per trajectory [n=8, M=2, 120]: NaN in a sensitivity column is documented, in
    skewness_final not; with T = 6 < MIN_STATES_FOR_CONSTANT the report is too short to call a
    column constant, with T = 16 it is not and the sensitivity block is excused."""
    x = np.random.default_rng(7).uniform(0.2, 0.8, size=(8, 2, len(SUMMARY_NAMES)))
    x[..., SUMMARY_NAMES.index("std_final")] = 0.5
    x[2, 1, 110] = np.nan
    x[4, 0, SUMMARY_NAMES.index("skewness_final")] = np.nan
    for t, short in ((6, True), (16, False)):
        r = feature_report(PATHS.SUMMARY_TRAJ, x, SUMMARY_NAMES, cfg_of(simulation__num_timesteps=t))
        assert r.nan_per_feature == {"skewness_final": 1, "lipschitz_incr_t0": 1}
        assert r.undocumented_nan == {"skewness_final": 1}
        assert r.constant == ["std_final"] and r.too_short is short
        assert r.unexpected_constant == ([] if short else ["std_final"])
    assert r.excused == set(SENSITIVITY_NAMES)


# --------------------------------------------------------------------------- families
def test_enabled_families_and_feature_names(cfg_of, tiny_config):
    """The families enabled by the config, in FAMILIES order; the dataset names of each family
    (ARCHITECTURE: the parameter names, as a tuple)."""
    assert [f.name for f in enabled_families(tiny_config)] == ["summary", "temporal", "architecture"]
    other = cfg_of(features={"temporal": {"enabled": False}, "initial": {"enabled": True}})
    assert [f.name for f in enabled_families(other)] == ["summary", "architecture", "initial"]
    arch = feature_names("architecture", tiny_config)
    assert arch == {PATHS.ARCHITECTURE: ARCH} and type(arch[PATHS.ARCHITECTURE]) is tuple
    assert feature_names("temporal", tiny_config) == {PATHS.TEMPORAL: TEMPORAL_NAMES}
    assert feature_names("summary", tiny_config) == {PATHS.SUMMARY_AGG: AGGREGATED_NAMES,
                                                      PATHS.SUMMARY_TRAJ: SUMMARY_NAMES}


def test_documented_nan_masks(cfg_of, tiny_config):
    """Boolean masks of each dataset's width: none outside SUMMARY; the sensitivity block per
    trajectory and in each of the three aggregate blocks; plus the Granger gains when T = 6; an
    unknown path is named in the error."""
    for path, width in ((PATHS.TEMPORAL, 63), (PATHS.INITIAL, 42), (PATHS.ARCHITECTURE, 11)):
        m = documented_nan(path, tiny_config)
        assert m.dtype == bool and m.shape == (width,) and not m.any()
    long = cfg_of(simulation__num_timesteps=16)
    traj, agg = documented_nan(PATHS.SUMMARY_TRAJ, long), documented_nan(PATHS.SUMMARY_AGG, long)
    assert traj.dtype == agg.dtype == bool and traj.shape == (120,) and agg.shape == (360,)
    assert np.flatnonzero(traj).tolist() == list(range(110, 120))
    assert np.flatnonzero(agg).tolist() == [*range(110, 120), *range(230, 240), *range(350, 360)]
    short = documented_nan(PATHS.SUMMARY_TRAJ, tiny_config)
    assert {SUMMARY_NAMES[i] for i in np.flatnonzero(short)} == set(GRANGER) | set(SENSITIVITY_NAMES)
    with pytest.raises(ValueError, match=r"^features/nope is not a feature dataset$"):
        documented_nan("features/nope", tiny_config)


@pytest.mark.parametrize("t, operator_features, expected", [
    (16, False, set(SENSITIVITY_NAMES)),
    (16, True, set()),
    (8, True, set()),
    (6, True, set(GRANGER)),
    (6, False, set(GRANGER) | set(SENSITIVITY_NAMES)),
])
def test_documented_constant_per_trajectory(cfg_of, t, operator_features, expected):
    """SUMMARY per trajectory: the columns undefined for every operator (the sensitivity block when
    not computed, the Granger gains below T = 8) are excused, nothing else."""
    cfg = cfg_of(simulation__num_timesteps=t, features={"summary": {"extract_operator_features": operator_features}})
    assert documented_constant(PATHS.SUMMARY_TRAJ, cfg) == expected


def test_documented_constant_aggregate_and_other_paths(cfg_of, tiny_config):
    """SUMMARY aggregate: output_input_corr std/cv always, every std/cv when M = 1, the three
    aggregates of undefined columns; TEMPORAL and INITIAL: nothing; ARCHITECTURE: the integer,
    continuous and choice parameters with a single value."""
    ops = {"summary": {"extract_operator_features": True}}
    oic = {"output_input_corr_std", "output_input_corr_cv"}
    assert documented_constant(PATHS.SUMMARY_AGG, cfg_of(simulation__num_timesteps=16, features=ops)) == oic
    sens = {f"{n}_{s}" for n in SENSITIVITY_NAMES for s in ("mean", "std", "cv")}
    assert documented_constant(PATHS.SUMMARY_AGG, cfg_of(simulation__num_timesteps=16)) == oic | sens
    one = cfg_of(simulation__num_timesteps=16, simulation__num_realizations=1, features=ops)
    assert documented_constant(PATHS.SUMMARY_AGG, one) == {f"{n}_{s}" for n in SUMMARY_NAMES for s in ("std", "cv")}
    assert documented_constant(PATHS.TEMPORAL, tiny_config) == set()
    assert documented_constant(PATHS.INITIAL, tiny_config) == set()
    assert documented_constant(PATHS.ARCHITECTURE, tiny_config) == {"grid_size"}
    single = cfg_of(**{"parameter_space.architecture.num_layers": {"type": "integer", "bounds": [2, 2]},
                       "parameter_space.architecture.dropout_rate": {"type": "continuous", "bounds": [0.1, 0.1]}})
    assert documented_constant(PATHS.ARCHITECTURE, single) == {"num_layers", "dropout_rate", "grid_size"}


def test_documented_saturated_per_path(tiny_config):
    """``{column: reason}``: ARCHITECTURE non-continuous parameters, the TEMPORAL discrete state
    columns, the INITIAL peak densities and zero means, the SUMMARY regime switches and
    monotonicities (each aggregate of them); nothing for a path that is not a feature dataset."""
    assert documented_saturated(PATHS.ARCHITECTURE, tiny_config) == dict.fromkeys(ARCH_DISCRETE, DISCRETE)
    assert documented_saturated(PATHS.TEMPORAL, tiny_config) == dict.fromkeys(
        ("ring_peaks", "peak_k", "peak_kx", "peak_ky"), DISCRETE)
    assert documented_saturated(PATHS.INITIAL, tiny_config) == {
        **{f"c{c}_peak_density": DISCRETE for c in range(3)}, **{f"c{c}_mean": ZERO_MEAN for c in range(3)}}
    traj = ("regime_switches", *MONOTONE)
    assert documented_saturated(PATHS.SUMMARY_TRAJ, tiny_config) == dict.fromkeys(traj, DISCRETE)
    assert documented_saturated(PATHS.SUMMARY_AGG, tiny_config) == {
        f"{n}_{s}": DISCRETE for n in traj for s in ("mean", "std", "cv")}
    assert documented_saturated("features/nope", tiny_config) == {}


def test_value_ranges_per_path(tiny_config):
    """Declared [lo, hi] by first matching pattern: 22 TEMPORAL columns, the INITIAL entropies and
    anisotropies, [0, 1] for every ARCHITECTURE column; a few SUMMARY columns."""
    assert value_ranges(PATHS.TEMPORAL, tiny_config) == TEMPORAL_RANGES
    assert value_ranges(PATHS.INITIAL, tiny_config) == {
        **{f"c{c}_entropy": (0.0, 1.0) for c in range(3)}, **{f"c{c}_anisotropy": (-1.0, 1.0) for c in range(3)}}
    assert value_ranges(PATHS.ARCHITECTURE, tiny_config) == dict.fromkeys(ARCH, (0.0, 1.0))
    traj = value_ranges(PATHS.SUMMARY_TRAJ, tiny_config)
    assert traj["low_frac_final"] == (0.0, 1.0) and traj["linf_raw_monotonicity"] == (-1.0, 1.0)
    assert "std_final" not in traj and "granger_01" in traj
    agg = value_ranges(PATHS.SUMMARY_AGG, tiny_config)
    assert agg["std_final_cv"] == (0.0, 1.0) and agg["tv_high_monotonicity_mean"] == (-1.0, 1.0)
    assert "std_final_mean" not in agg


def _undefined_at_one_state() -> set[str]:
    """FEATURES.md NaN policy: with T = 1 every column 0-109 but the *_final, *_mean and
    intermittency ones."""
    return {n for n in SUMMARY_NAMES[:110] if not n.endswith(("_final", "_mean")) and n != "intermittency"}


@pytest.mark.parametrize("t", [1, 4, 5, 7, 8])
def test_short_series_nan_mask(t):
    """The uncached mask [120] bool of the columns a T-state series leaves undefined: 85 columns at
    T = 1; Granger gains (T >= 8) and the lag-3 asymmetry (T >= 5) below their lengths; never the
    sensitivity block (passed as zeros)."""
    mask = families._short_series_nan_uncached(t)
    assert mask.dtype == bool and mask.shape == (120,) and not mask[110:].any()
    got = {SUMMARY_NAMES[i] for i in np.flatnonzero(mask)}
    if t == 1:
        assert got == _undefined_at_one_state() and len(got) == 85
    else:
        assert got == {8: set(), 7: set(GRANGER), 5: set(GRANGER), 4: {*GRANGER, "lag_asym_max_3"}}[t]



def test_a_column_with_one_inf_is_not_called_constant(tiny_config):
    """Constancy is judged on the finite values: one +Inf in an otherwise varying column makes it
    an Inf count, not a constant column (its spread and scale would both be Inf, and Inf > Inf is
    False); a column whose finite values are all equal stays constant beside its -Inf."""
    x = _temporal(8, 6, seed=3)
    x[2, 1, _col("std")] = np.inf
    x[:, :, _col("skewness")] = 0.3
    x[0, 0, _col("skewness")] = -np.inf
    r = feature_report(PATHS.TEMPORAL, x, TEMPORAL_NAMES, tiny_config)
    assert r.inf_per_feature == {"std": 1, "skewness": 1}
    assert r.constant == ["skewness"] and r.unexpected_constant == ["skewness"]
