"""fit_cleaning / apply_cleaning (SPEC 8): the steps in order, statistics from the training rows
only, every dropped column with its reason, the JSON round trip, and the demo dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spinlock_core.tokenizer.cleaning import CleaningSpec, apply_cleaning, fit_cleaning

BASE = ["signal", "noisy", "heavy", "frac_a", "frac_b", "frac_c", "twin", "sens"]
AGG_NAMES = [f"{b}_{a}" for a in ("mean", "std", "cv") for b in BASE]


def _summary_like(n=240, m=3, seed=0):
    """A SUMMARY-like family: per-realization ``[n, m, 8]`` and its ``[n, 24]`` aggregates.

    signal: operator value + small realization noise (reliable mean); noisy: realization noise
    only; heavy: lognormal operator value (heavy-tailed); frac_a/b/c: fractions summing to 1 in
    every realization; twin: signal plus tiny noise (a near-duplicate); sens: NaN (documented).
    """
    rng = np.random.default_rng(seed)
    op = rng.normal(size=(n, 1))
    pr = np.empty((n, m, len(BASE)))
    pr[..., 0] = op + 0.05 * rng.normal(size=(n, m))
    pr[..., 1] = rng.normal(size=(n, m))
    pr[..., 2] = rng.lognormal(0.0, 2.0, (n, 1)) * (1 + 0.01 * rng.normal(size=(n, m)))
    w = rng.dirichlet([2.0, 3.0, 4.0], n)[:, None, :] * 100 + rng.uniform(0, 1, (n, m, 3))
    pr[..., 3:6] = w / w.sum(-1, keepdims=True)
    pr[..., 6] = pr[..., 0] + 1e-3 * rng.normal(size=(n, m))
    pr[..., 7] = np.nan
    mean = pr.mean(1)
    std = pr.std(1, ddof=1)
    cv = std / (np.sqrt(mean**2 + std**2) + 1e-8)
    documented = np.array([b == "sens" for _ in range(3) for b in BASE])
    policies = np.where(rng.uniform(size=n) < 0.75, b"residual", b"convex")
    return np.concatenate([mean, std, cv], axis=1), pr, documented, policies


def _fit(matrix, pr, documented, policies, **kw):
    args = {"documented_nan": documented, "strata": policies, "per_realization": pr,
            "per_realization_names": BASE, "family": "summary"}
    args.update(kw)
    return fit_cleaning(matrix, AGG_NAMES, **args)


@pytest.fixture
def family():
    return _summary_like()


def test_every_column_is_kept_or_dropped_with_its_step(family):
    spec = _fit(*family)
    dropped = {d.name: d for d in spec.dropped}
    assert set(dropped) | set(spec.kept_names) == set(AGG_NAMES) and not set(dropped) & set(spec.kept_names)
    assert {n for n in dropped if dropped[n].step == "variance"} == {"sens_mean", "sens_std", "sens_cv"}
    assert dropped["noisy_mean"].step == "reliability" and "< 0.8" in dropped["noisy_mean"].reason
    assert dropped["twin_mean"].step == "duplicate" and "signal_mean" in dropped["twin_mean"].reason
    assert dropped["frac_c_mean"].step == "linear_combination"
    assert dropped["frac_c_mean"].reason.endswith(
        ("frac_c_mean = 1 - 1*frac_a_mean - 1*frac_b_mean", "frac_c_mean = 1 - 1*frac_b_mean - 1*frac_a_mean")
    )
    assert {"signal_mean", "heavy_mean", "frac_a_mean", "frac_b_mean"} <= set(spec.kept_names)
    # steps listed in SPEC order
    order = [d.step for d in spec.dropped]
    assert order == sorted(order, key=["variance", "reliability", "duplicate", "linear_combination"].index)


def test_reliabilities_recorded(family):
    spec = _fit(*family)
    rel = dict(zip(spec.names, spec.reliabilities))
    assert rel["signal_mean"] > 0.99 and abs(rel["noisy_mean"]) < 0.2
    assert rel["sens_mean"] is None  # dropped before the reliability step
    assert spec.noise_ceiling == pytest.approx(np.mean([rel[n] for n in spec.kept_names]))


def test_heavy_tailed_columns_get_the_signed_log(family):
    matrix, *_ = family
    spec = _fit(*family)
    assert "heavy_mean" in spec.log_scales and "signal_mean" not in spec.log_scales
    assert spec.log_scales["heavy_mean"] == np.median(np.abs(matrix[:, AGG_NAMES.index("heavy_mean")]))
    assert spec.transforms[AGG_NAMES.index("heavy_mean")] == "signed_log"
    assert spec.settings["heavy_tail_rule"] == "kurtosis"


def test_apply_gives_zscores_on_the_training_rows(family):
    matrix, *_ = family
    train = np.arange(len(matrix)) % 5 != 0
    spec = _fit(*family, train_mask=train)
    y = apply_cleaning(spec, matrix)
    assert y.shape == (len(matrix), len(spec.kept_names))
    np.testing.assert_allclose(y[train].mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y[train].std(0), 1.0, rtol=1e-12)


def test_statistics_come_from_training_rows_only(family):
    matrix, pr, documented, policies = family
    n = len(matrix)
    train = np.arange(n) % 4 != 0
    diverged = np.zeros(n, dtype=bool)
    diverged[[1, 2]] = True
    spec = _fit(matrix, pr, documented, policies, train_mask=train, diverged=diverged)

    rng = np.random.default_rng(9)
    other = ~train | diverged
    m2, pr2 = matrix.copy(), pr.copy()
    m2[other] = rng.lognormal(0.0, 5.0, m2[other].shape) * 1e6
    pr2[other] = rng.normal(size=pr2[other].shape)
    m2[np.ix_(other, documented)] = np.nan
    p2 = policies.copy()
    p2[other] = b"convex"
    spec2 = _fit(m2, pr2, documented, p2, train_mask=train, diverged=diverged)
    assert spec2.to_json() == spec.to_json()
    assert spec.n_train == int((train & ~diverged).sum()) and spec.n_diverged_excluded == 2


def test_diverged_rows_are_still_cleaned(family):
    matrix, pr, documented, policies = family
    diverged = np.zeros(len(matrix), dtype=bool)
    diverged[0] = True
    m2 = matrix.copy()
    m2[0, ~documented] = 1e30  # a diverged operator far outside the training range
    spec = _fit(m2, pr, documented, policies, diverged=diverged)
    y = apply_cleaning(spec, m2)
    assert np.all(np.isfinite(y[0]))
    hi = np.array(spec.cap_high)[spec.kept_mask]
    capped = np.isfinite(hi)
    np.testing.assert_allclose(y[0, capped], ((hi - np.array(spec.means)) / np.array(spec.stds))[capped])


def test_json_round_trip_is_exact(family):
    matrix, *_ = family
    spec = _fit(*family, heavy_tail_rule="quantile_ratio", heavy_tail_threshold=float("inf"))
    text = spec.to_json()
    json.loads(text)  # strict JSON: no NaN or Infinity tokens
    back = CleaningSpec.from_json(text)
    assert back == spec
    assert back.settings["heavy_tail_threshold"] == float("inf")
    np.testing.assert_array_equal(apply_cleaning(back, matrix), apply_cleaning(spec, matrix))
    with pytest.raises(ValueError, match="cleaning spec format '0.9'; this code reads '1.0'"):
        CleaningSpec.from_json(text.replace('"version": "1.0"', '"version": "0.9"'))


def test_undocumented_nan_raises_naming_the_column(family):
    matrix, pr, documented, policies = family
    m2 = matrix.copy()
    m2[5, AGG_NAMES.index("heavy_std")] = np.nan
    with pytest.raises(ValueError, match="NaN in columns not documented to hold NaN: heavy_std$"):
        _fit(m2, pr, documented, policies)
    spec = _fit(*family)
    with pytest.raises(ValueError, match="NaN in columns not documented to hold NaN: heavy_std$"):
        apply_cleaning(spec, m2)


def test_std_over_two_realizations_is_not_estimable():
    matrix, pr, documented, policies = _summary_like(m=2)
    spec = _fit(matrix, pr, documented, policies)
    dropped = {d.name: d for d in spec.dropped}
    assert dropped["signal_std"].reason == "reliability not estimable: std over M=2 realizations (needs M >= 3)"
    assert not any(n.endswith(("_std", "_cv")) for n in spec.kept_names)
    # the filter off keeps them, unmeasured
    spec0 = _fit(matrix, pr, documented, policies, min_reliability=0.0)
    assert "signal_std" in spec0.kept_names and spec0.reliabilities[AGG_NAMES.index("signal_std")] is None
    assert np.isfinite(spec0.noise_ceiling)


def test_family_without_realizations_has_reliability_one():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(100, 4))
    spec = fit_cleaning(x, ["a", "b", "c", "d"])
    assert spec.reliabilities == (1.0, 1.0, 1.0, 1.0) and spec.kept == (True,) * 4
    assert spec.noise_ceiling == 1.0


def test_linear_test_skipped_with_too_few_rows():
    x = np.random.default_rng(2).normal(size=(10, 12))
    spec = fit_cleaning(x, [f"c{i}" for i in range(12)], min_stratum=3)
    assert any("linear-combination test skipped: 10 training rows for 12 columns" in t for t in spec.notes)
    assert all(spec.kept)


def test_policy_split_pair_is_kept_within_strata():
    rng = np.random.default_rng(3)
    n = 200
    policies = np.array(["residual"] * 150 + ["convex"] * 50)
    shift = np.where(policies == "convex", 50.0, 0.0)
    x = np.column_stack([rng.normal(size=n) + shift, rng.normal(size=n) + shift])
    kw = {"heavy_tail_rule": "none", "mad_k": 50.0}
    assert fit_cleaning(x, ["a", "b"], strata=policies, **kw).kept == (True, True)
    assert fit_cleaning(x, ["a", "b"], **kw).kept == (True, False)


def test_cap_comes_before_the_duplicate_test():
    rng = np.random.default_rng(4)
    n = 2000
    c = rng.normal(size=n)
    d = c.copy()
    d[7] = 1e6  # one outlier hides an otherwise exact duplicate
    x = np.column_stack([c, d])
    assert abs(np.corrcoef(c, d)[0, 1]) < 0.1
    spec = fit_cleaning(x, ["c", "d"], heavy_tail_rule="none", mad_k=2.0)
    assert spec.kept == (True, False) and spec.dropped[0].step == "duplicate"


def test_cap_within_strata_keeps_the_minority_spread():
    rng = np.random.default_rng(5)
    policies = np.array(["residual"] * 300 + ["convex"] * 100)
    x = np.concatenate([rng.normal(0, 1, 300), rng.normal(20, 1, 100)])[:, None]
    pooled = fit_cleaning(x, ["a"], strata=policies, heavy_tail_rule="none")
    hull = fit_cleaning(x, ["a"], strata=policies, heavy_tail_rule="none", cap_within_strata=True)
    assert np.ptp(apply_cleaning(pooled, x)[300:]) == 0.0
    assert np.ptp(apply_cleaning(hull, x)[300:]) > 0.0
    assert hull.settings["cap_within_strata"] is True


def test_input_errors(family):
    matrix, pr, documented, policies = family
    with pytest.raises(ValueError, match="names must be 24 unique column names, got 23"):
        fit_cleaning(matrix, AGG_NAMES[:-1])
    with pytest.raises(ValueError, match=r"strata must have shape \(240,\)"):
        fit_cleaning(matrix, AGG_NAMES, documented_nan=documented, strata=policies[:-1])
    with pytest.raises(ValueError, match="not an aggregate"):
        fit_cleaning(matrix, AGG_NAMES, documented_nan=documented, per_realization=pr,
                     per_realization_names=[f"x{i}" for i in range(8)])
    shuffled = pr[:, :, [1, 0, 2, 3, 4, 5, 6, 7]]
    with pytest.raises(ValueError, match=r"does not reproduce the aggregated columns \['signal_mean', 'noisy_mean'"):
        _fit(matrix, shuffled, documented, policies)
    spec = _fit(*family)
    with pytest.raises(ValueError, match=r"matrix must be \[N, 24\] for this spec"):
        apply_cleaning(spec, matrix[:, :-1])


# --- the demo dataset ------------------------------------------------------------------------------

DEMO = Path(__file__).resolve().parents[3] / ".spinlock" / "data" / "datasets" / "demo.h5"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    h5py = pytest.importorskip("h5py")
    from spinlock_core.config.experiment import ExperimentConfig

    path = tmp_path_factory.mktemp("demo") / "demo.h5"
    if DEMO.exists():  # `make demo` made it
        shutil.copyfile(DEMO, path)
    else:  # a fresh clone: the demo experiment's dataset, built with the library (~30 s)
        from spinlock_core.config import load_experiment
        from spinlock_core.generation import simulate_shard, write_initial_conditions, write_parameters
        from spinlock_core.storage.dataset import consolidate
        from spinlock_core.storage.paths import ExperimentPaths
        from tests.conftest import ROOT

        cfg = load_experiment(ROOT / "configs/experiments/demo.yaml")
        paths = ExperimentPaths.for_config(cfg, path.parent / "home")
        write_parameters(cfg, paths)
        for s in range(cfg.num_shards):
            write_initial_conditions(cfg, paths, s)
            simulate_shard(cfg, paths, s, families={"summary", "temporal"})
        consolidate(cfg, paths, ["initial_conditions", "rollouts", "features_summary", "features_temporal"])
        path = paths.dataset
    from spinlock_core.storage.layout import PATHS

    keys = (PATHS.SUMMARY_AGG, PATHS.SUMMARY_TRAJ, PATHS.TEMPORAL, PATHS.DIVERGED, PATHS.POLICIES)
    with h5py.File(path, "r") as f:
        cfg = ExperimentConfig.model_validate(json.loads(f.attrs["config"]))
        data = {k: f[k][:] for k in keys}
        names = {k: [n.decode() if isinstance(n, bytes) else str(n) for n in f[k].attrs["feature_names"]]
                 for k in keys[:3]}
    return cfg, data, names


def test_demo_summary_reliability(demo):
    from spinlock_core.features.families import documented_nan
    from spinlock_core.storage.layout import PATHS

    cfg, data, names = demo
    spec = fit_cleaning(
        data[PATHS.SUMMARY_AGG], names[PATHS.SUMMARY_AGG],
        diverged=data[PATHS.DIVERGED], documented_nan=documented_nan(PATHS.SUMMARY_AGG, cfg),
        strata=data[PATHS.POLICIES], per_realization=data[PATHS.SUMMARY_TRAJ],
        per_realization_names=names[PATHS.SUMMARY_TRAJ], family="summary",
    )
    rel = np.array([np.nan if r is None else r for r in spec.reliabilities])
    block = {b: np.array([n.endswith("_" + b) for n in spec.names]) for b in ("mean", "std", "cv")}
    # SPEC 8 (4,096 operators, M = 3): _mean median 0.996, _std median 0.48
    assert np.nanmedian(rel[block["mean"]]) > 0.99
    assert np.nanmedian(rel[block["std"]]) < 0.6
    assert (spec.kept_mask & block["mean"]).sum() >= 90
    assert (spec.kept_mask & block["std"]).sum() <= 10
    y = apply_cleaning(spec, data[PATHS.SUMMARY_AGG])
    assert y.shape == (len(data[PATHS.DIVERGED]), len(spec.kept_names)) and np.all(np.isfinite(y))
    assert CleaningSpec.from_json(spec.to_json()) == spec


def test_demo_temporal_identities_are_found(demo):
    """Time means of TEMPORAL: the 8 band fractions sum to 1, high_frac = band_frac_6 + band_frac_7
    on a 32 grid, corr_mean is the mean of the three correlations; none of them is pairwise."""
    from spinlock_core.storage.layout import PATHS

    _, data, names = demo
    x = data[PATHS.TEMPORAL].astype(np.float64).mean(1)
    spec = fit_cleaning(x, names[PATHS.TEMPORAL], strata=data[PATHS.POLICIES])
    lin = set(spec.dropped_by_step()["linear_combination"])
    assert {"band_frac_7", "high_frac", "corr_mean"} <= lin
