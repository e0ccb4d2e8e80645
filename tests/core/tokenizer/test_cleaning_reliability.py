"""Jackknife reliability of aggregated columns (SPEC 8) against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from spinlock_core.tokenizer.reliability import (
    aggregate_realizations,
    jackknife_variance,
    leave_one_out,
    realization_map,
    reliability,
)


def test_aggregates_match_the_summary_implementation():
    torch = pytest.importorskip("torch")
    from spinlock_core.features.summary import aggregate

    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (16, 4, 5)) + rng.normal(0.0, 3.0, (16, 1, 5))
    want = aggregate(torch.from_numpy(x)).double().numpy()
    got = np.concatenate([aggregate_realizations(x, a) for a in ("mean", "std", "cv")], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-6)  # the reference is float32
    assert np.all(aggregate_realizations(x[:, :1], "std") == 0.0)


def test_leave_one_out_hand_case():
    x = np.array([0.0, 1.0, 3.0]).reshape(1, 3, 1)
    np.testing.assert_allclose(leave_one_out(x, "mean")[0, :, 0], [2.0, 1.5, 0.5])
    np.testing.assert_allclose(leave_one_out(x, "std")[0, :, 0], np.array([2.0, 3.0, 1.0]) / np.sqrt(2))


def test_jackknife_variance_of_the_mean_is_s2_over_m():
    rng = np.random.default_rng(1)
    for m in (2, 3, 5, 8):
        x = rng.normal(size=(7, m, 3))
        want = x.var(1, ddof=1) / m
        np.testing.assert_allclose(jackknife_variance(x, "mean"), want, rtol=1e-12)


def test_jackknife_variance_of_the_std_by_hand():
    # realizations 0, 1, 3: leave-one-out stds (ddof 1) sqrt(2), 3/sqrt(2), 1/sqrt(2), i.e.
    # (2, 3, 1)/sqrt(2); their mean is sqrt(2); deviations 0, +-1/sqrt(2): squares sum to 1;
    # times (M - 1)/M = 2/3. Without the factor it would be 1, with 1/M it would be 1/3.
    x = np.array([0.0, 1.0, 3.0]).reshape(1, 3, 1)
    assert jackknife_variance(x, "std")[0, 0] == pytest.approx(2.0 / 3.0, rel=1e-14)


def test_reliability_by_hand():
    # operator 1: realizations 0, 2 (mean 1, s^2 = 2, jackknife 1); operator 2: 4, 6 (mean 5,
    # jackknife 1). Means 1 and 5: ddof-1 variance 8. Reliability 1 - 1/8 = 0.875; dropping the
    # (M - 1)/M factor or using the ddof-0 spread would both give 0.75.
    x = np.array([[[0.0], [2.0]], [[4.0], [6.0]]])
    assert reliability(x, "mean")[0] == pytest.approx(0.875, rel=1e-14)


def test_noise_free_and_pure_noise_columns():
    rng = np.random.default_rng(2)
    signal = rng.normal(0.0, 1.0, (2000, 1, 1)).repeat(3, axis=1)
    noise = rng.normal(0.0, 1.0, (2000, 3, 1))
    x = np.concatenate([signal, noise, signal + noise], axis=2)
    r = reliability(x, "mean")
    assert r[0] == 1.0
    assert abs(r[1]) < 0.1
    # true spread 1, noise variance of a mean of 3 draws 1/3: reliability 1 / (1 + 1/3) = 0.75
    assert r[2] == pytest.approx(0.75, abs=0.03)


def test_std_needs_three_realizations():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 2, 4))
    assert np.isnan(reliability(x, "std")).all() and np.isnan(reliability(x, "cv")).all()
    assert np.isfinite(reliability(x, "mean")).all()
    assert np.isnan(reliability(x[:, :1], "mean")).all()  # M = 1: nothing to leave out
    assert np.isfinite(reliability(rng.normal(size=(10, 3, 4)), "std")).all()


def test_constant_aggregate_is_not_estimable():
    x = np.ones((5, 3, 1))
    assert np.isnan(reliability(x, "mean")[0])


def test_transform_applies_to_full_and_leave_one_out_aggregates():
    rng = np.random.default_rng(4)
    x = rng.lognormal(0.0, 1.0, (50, 3, 2))
    theta = np.log(leave_one_out(x, "mean"))  # [N, M, F]
    jack = 2.0 / 3.0 * ((theta - theta.mean(1, keepdims=True)) ** 2).sum(1)
    want = 1.0 - jack.mean(0) / np.log(x.mean(1)).var(0, ddof=1)
    np.testing.assert_allclose(reliability(x, "mean", transform=np.log), want, rtol=1e-12)
    # an affine transform changes nothing
    np.testing.assert_allclose(reliability(x, "mean", lambda a: 3 * a + 1), reliability(x, "mean"), rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match=r"per_realization must be \[N, M >= 1, F\]"):
        reliability(np.ones((3, 2)), "mean")
    with pytest.raises(ValueError, match="unknown aggregate 'median'"):
        reliability(np.ones((3, 2, 1)), "median")
    with pytest.raises(ValueError, match="non-finite"):
        reliability(np.full((3, 2, 1), np.nan), "mean")
    with pytest.raises(ValueError, match="at least 2 operators"):
        reliability(np.ones((1, 3, 1)), "mean")
    with pytest.raises(ValueError, match="leave-one-out needs M >= 2"):
        leave_one_out(np.ones((3, 1, 1)), "mean")
    with pytest.raises(ValueError, match="transform changed the shape"):
        reliability(np.random.default_rng(0).normal(size=(3, 3, 2)), "mean", lambda a: a[:, :1])


def test_realization_map():
    base = ["std_mean", "energy_growth"]
    names = ["std_mean_mean", "energy_growth_mean", "std_mean_std", "energy_growth_cv"]
    assert realization_map(names, base) == [(0, "mean"), (1, "mean"), (0, "std"), (1, "cv")]
    with pytest.raises(ValueError, match=r"2 columns are not an aggregate .* \['std_mean', 'other_mean'\]"):
        realization_map(["std_mean", "other_mean"], base)
