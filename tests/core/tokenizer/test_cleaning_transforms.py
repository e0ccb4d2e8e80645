"""Per-column cleaning steps (SPEC 8) against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from spinlock_core.tokenizer.column_transforms import (
    MAD_TO_SIGMA,
    apply_zscore,
    cap_bounds,
    clip_columns,
    excess_kurtosis,
    heavy_tailed,
    log_scale,
    low_variance,
    mad_cap,
    mad_stats,
    nan_to_zero,
    quantile_ratio,
    signed_log,
    stratified_cap_bounds,
    training_rows,
    zscore_stats,
)

# --- training rows -------------------------------------------------------------------------------

def test_training_rows_is_split_minus_diverged():
    diverged = np.array([False, True, False, True, False])
    split = np.array([True, True, False, False, True])
    assert training_rows(diverged, split).tolist() == [True, False, False, False, True]


@pytest.mark.parametrize(
    "diverged, split, match",
    [
        (np.zeros(3, bool), np.ones(4, bool), "diverged has 3 rows but split_mask has 4"),
        (np.zeros(3, int), np.ones(3, bool), "diverged must be a 1-D bool array"),
        (np.zeros(3, bool), np.ones((3, 1), bool), "split_mask must be a 1-D bool array"),
        (np.array([False, True, True]), np.ones(3, bool), "only 1 training rows remain .3 in the split, 2 of them"),
    ],
)
def test_training_rows_errors(diverged, split, match):
    with pytest.raises(ValueError, match=match):
        training_rows(diverged, split)


# --- NaN -----------------------------------------------------------------------------------------

def test_nan_to_zero_only_documented_columns():
    x = np.array([[np.nan, 1.0], [2.0, 3.0]])
    out = nan_to_zero(x, np.array([True, False]))
    np.testing.assert_array_equal(out, [[0.0, 1.0], [2.0, 3.0]])
    assert np.isnan(x[0, 0])  # input untouched


def test_nan_to_zero_works_on_per_realization_arrays():
    x = np.ones((2, 3, 2))
    x[1, 2, 1] = np.nan
    assert nan_to_zero(x, np.array([False, True]))[1, 2, 1] == 0.0


def test_undocumented_nan_names_the_column():
    x = np.array([[np.nan, 1.0, np.nan], [2.0, 3.0, 4.0]])
    with pytest.raises(ValueError, match=r"NaN in columns not documented to hold NaN: gamma$"):
        nan_to_zero(x, np.array([True, False, False]), ["alpha", "beta", "gamma"])
    with pytest.raises(ValueError, match=r"not documented to hold NaN: 2$"):
        nan_to_zero(x, np.array([True, False, False]))


def test_infinity_is_never_documented():
    x = np.array([[np.inf, 1.0], [2.0, 3.0]])
    with pytest.raises(ValueError, match="infinite values in columns alpha"):
        nan_to_zero(x, np.array([True, True]), ["alpha", "beta"])


def test_nan_to_zero_mask_shape():
    with pytest.raises(ValueError, match=r"documented_mask must be a bool array of shape \(2,\)"):
        nan_to_zero(np.ones((2, 2)), np.array([True]))


# --- heavy tails and the signed log ----------------------------------------------------------------

def test_excess_kurtosis_hand_case():
    # values -1, -1, 1, 1: m2 = 1, m4 = 1 -> 1 - 3 = -2; a constant column gives 0
    x = np.array([[-1.0, 5.0], [-1.0, 5.0], [1.0, 5.0], [1.0, 5.0]])
    np.testing.assert_allclose(excess_kurtosis(x), [-2.0, 0.0])


def test_quantile_ratio_normal_and_spike():
    rng = np.random.default_rng(0)
    normal = rng.standard_normal(200_000)
    spike = np.zeros(1000)
    spike[:30] = 1.0  # IQR 0 with tails beyond the 1% quantile
    x = np.column_stack([normal, spike[np.arange(200_000) % 1000], np.zeros(200_000)])
    q = quantile_ratio(x)
    assert q[0] == pytest.approx(2 * 2.3263 / 1.3490, rel=0.01)
    assert q[1] == np.inf and q[2] == 0.0


def test_heavy_tailed_rules():
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.standard_normal(5000), rng.lognormal(0.0, 2.0, 5000)])
    heavy, stat = heavy_tailed(x, "kurtosis", 10.0)
    assert heavy.tolist() == [False, True]
    assert abs(stat[0]) < 0.3 and stat[1] > 100
    assert heavy_tailed(x, "quantile_ratio", 10.0)[0].tolist() == [False, True]
    assert not heavy_tailed(x, "none", 0.0)[0].any()


def test_heavy_tailed_threshold_is_strict():
    x = np.array([[-1.0], [-1.0], [1.0], [1.0]])  # kurtosis exactly -2
    assert not heavy_tailed(x, "kurtosis", -2.0)[0][0]
    assert heavy_tailed(x, "kurtosis", -2.1)[0][0]


def test_heavy_tailed_errors():
    known = r"unknown heavy-tail rule 'iqr'; known: \['kurtosis', 'none', 'quantile_ratio'\]"
    with pytest.raises(ValueError, match=known):
        heavy_tailed(np.ones((3, 1)), "iqr", 1.0)
    with pytest.raises(ValueError, match="heavy-tail threshold is NaN"):
        heavy_tailed(np.ones((3, 1)), "kurtosis", float("nan"))


def test_log_scale_is_median_abs_with_fallbacks():
    x = np.array(
        [[-3.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 4.0, 0.0], [100.0, -8.0, 0.0]]
    )
    # column 0: median |x| of 3, 1, 0, 1, 2, 100 = 1.5; column 1: median 0 -> mean |x| = 2; column 2: 1
    np.testing.assert_array_equal(log_scale(x), [1.5, 2.0, 1.0])


def test_signed_log_hand_values_and_oddness():
    x = np.array([[-3.0], [0.0], [2.0]])
    out = signed_log(x, [1.5])[:, 0]
    np.testing.assert_allclose(out, [-np.log(3.0), 0.0, np.log(1.0 + 2.0 / 1.5)], rtol=1e-15)
    np.testing.assert_allclose(signed_log(-x, [1.5]), -signed_log(x, [1.5]))


def test_signed_log_scale_errors():
    with pytest.raises(ValueError, match="scale must have shape"):
        signed_log(np.ones((2, 2)), [1.0])
    with pytest.raises(ValueError, match=r"finite and > 0; bad columns: \[1\]"):
        signed_log(np.ones((2, 2)), [1.0, 0.0])


# --- MAD cap ---------------------------------------------------------------------------------------

def test_mad_stats_hand_case():
    # median 2; |x - 2| = 2, 1, 0, 1, 98 -> MAD 1
    med, mad = mad_stats(np.array([[0.0], [1.0], [2.0], [3.0], [100.0]]))
    assert med[0] == 2.0 and mad[0] == 1.0


def test_mad_cap_uses_1_4826_and_k():
    x = np.array([[7.0], [8.0], [-8.0], [0.0]])
    out = mad_cap(x, [0.0], [1.0], k=5)[:, 0]
    # 5 * 1.4826 = 7.413: 7 stays (a factor 1 would cap it at 5), 8 and -8 are capped
    np.testing.assert_allclose(out, [7.0, 7.413, -7.413, 0.0], rtol=1e-15)
    np.testing.assert_allclose(mad_cap(x, [0.0], [1.0], k=4)[:, 0], [5.9304, 5.9304, -5.9304, 0.0], rtol=1e-15)
    assert MAD_TO_SIGMA == 1.4826


def test_mad_zero_column_is_left_uncapped():
    x = np.array([[0.0], [0.0], [0.0], [50.0]])
    med, mad = mad_stats(x)
    assert mad[0] == 0.0
    np.testing.assert_array_equal(mad_cap(x, med, mad), x)
    lo, hi = cap_bounds(med, mad)
    assert lo[0] == -np.inf and hi[0] == np.inf


def test_mad_cap_errors():
    with pytest.raises(ValueError, match="k must be finite and > 0"):
        mad_cap(np.ones((2, 1)), [0.0], [1.0], k=0)
    with pytest.raises(ValueError, match="MAD cannot be negative"):
        mad_cap(np.ones((2, 1)), [0.0], [-1.0])
    with pytest.raises(ValueError, match=r"median must have shape \(1,\)"):
        mad_cap(np.ones((2, 1)), [0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="low <= high"):
        clip_columns(np.ones((2, 1)), [1.0], [0.0])


def test_stratified_bounds_keep_a_minority_stratum():
    rng = np.random.default_rng(2)
    major = rng.normal(0.0, 1.0, 300)
    minor = rng.normal(20.0, 1.0, 100)  # > 5 robust SDs from the pooled median
    x = np.concatenate([major, minor])[:, None]
    labels = np.array(["residual"] * 300 + ["convex"] * 100)
    pooled = mad_cap(x, *mad_stats(x))
    assert np.ptp(pooled[300:]) == 0.0  # the whole minority capped onto one value
    lo, hi = stratified_cap_bounds(x, labels, k=5, min_stratum=30)
    assert hi[0] == pytest.approx(np.median(minor) + 5 * 1.4826 * np.median(np.abs(minor - np.median(minor))))
    np.testing.assert_array_equal(clip_columns(x, lo, hi)[300:], x[300:])
    # never caps more than the pooled rule; a stratum below min_stratum is not judged
    p_lo, p_hi = cap_bounds(*mad_stats(x))
    assert lo[0] <= p_lo[0] and hi[0] >= p_hi[0]
    lo2, hi2 = stratified_cap_bounds(x, labels, k=5, min_stratum=101)
    assert (lo2[0], hi2[0]) == (p_lo[0], p_hi[0])


# --- variance, z-score -----------------------------------------------------------------------------

def test_low_variance_floor_on_population_variance():
    # column 0: values 0, 2e-4 -> variance 1e-8 exactly (not below the floor); column 1: 0.5e-8
    x = np.array([[0.0, 0.0, 1.0], [2e-4, 1e-4 * np.sqrt(2), 1.0]])
    assert low_variance(x, 1e-8).tolist() == [False, True, True]
    with pytest.raises(ValueError, match="variance floor must be >= 0"):
        low_variance(x, -1.0)


def test_zscore_round_trip_and_errors():
    x = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]])
    mean, std = zscore_stats(x)
    np.testing.assert_allclose(mean, [3.0, 20.0])
    np.testing.assert_allclose(std, [np.sqrt(8 / 3), np.sqrt(200 / 3)])
    z = apply_zscore(x, mean, std)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-15)
    np.testing.assert_allclose(z.std(0), 1.0)
    with pytest.raises(ValueError, match=r"zero standard deviation cannot be z-scored: \[0\]"):
        zscore_stats(np.array([[1.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="std must be > 0"):
        apply_zscore(x, mean, [1.0, 0.0])
