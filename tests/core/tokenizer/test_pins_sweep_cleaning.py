"""Pins of the train/validation split and of one family's cleaning (issue #11 sweep), on small
synthetic matrices whose expected values are computed here with numpy:

* ``split.operator_keys``: the first 64-bit word of ``SeedSequence([seed, 8, i])`` over ``2^64``,
  exactly, an empty index, and every message; ``split.validation_mask``: the count
  ``round(fraction * N)`` (half to even) clamped to ``[1, N - 1]``;
* ``cleaning.fit_cleaning`` with its documented defaults (kurtosis > 10, cap at median +/- 5 *
  1.4826 * MAD, variance floor 1e-8, reliability 0.8, |r| > 0.99 in a stratum of >= 30 rows,
  linear tolerance 1e-6): every field of the fitted spec, its settings, notes, log lines and the
  reason of each dropped column; the heavy-tail threshold at its boundary; strata (duplicates,
  ``require``, the stratified cap); the jackknife reliabilities against a re-implementation (the
  column's signed log and cap applied), the reproduction check of the per-realization values and
  every message; the combination reasons (order by standardized weight, signs, ``(+k more)``);
  the skipped linear test;
* ``cleaning.apply_cleaning`` on the fitted specs.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from spinlock_core.tokenizer.cleaning import DroppedColumn, apply_cleaning, fit_cleaning
from spinlock_core.tokenizer.split import operator_keys, validation_mask

LOGGER = "spinlock_core.tokenizer.cleaning"


# ----------------------------------------------------------------------------------- split


def _ref_keys(idx, seed):
    """``[N]`` keys from numpy's SeedSequence directly ("split" is stage 8)."""
    return np.array([np.random.SeedSequence([seed, 8, int(i)]).generate_state(1, dtype=np.uint64)[0] / 2.0**64
                     for i in idx], dtype=np.float64)


@pytest.mark.parametrize("seed", [0, 5])
def test_operator_keys_are_the_first_seed_word_over_two_to_the_64(seed):
    """Key of operator i: first uint64 word of ``SeedSequence([seed, 8, i])`` / 2^64, exactly;
    operator 0 and seed 0 are valid."""
    idx = np.array([0, 7, 3, 1000, 12])
    keys = operator_keys(idx, seed)
    assert keys.dtype == np.float64 and keys.shape == (5,)
    assert keys.tolist() == _ref_keys(idx, seed).tolist()
    assert np.all((keys >= 0) & (keys < 1)) and keys.max() > 0.01
    assert operator_keys([7, 0], seed).tolist() == [keys[1], keys[0]]


def test_operator_keys_of_no_operators():
    """An empty ``[0]`` integer index gives ``[0]`` float64 keys."""
    keys = operator_keys(np.array([], dtype=np.int64), 3)
    assert keys.shape == (0,) and keys.dtype == np.float64


@pytest.mark.parametrize("idx, seed, msg", [
    (np.array([[1, 2]]), 0, r"operator_index must be a 1-D integer array, got int64 of shape \(1, 2\)"),
    (np.array([0.0, 1.0]), 0, r"operator_index must be a 1-D integer array, got float64 of shape \(2,\)"),
    (np.array([-1, 2]), 0, r"operator_index must be non-negative"),
    (np.array([4, 2, 4]), 0, r"operator_index holds repeated operators"),
    (np.array([4, 2]), -1, r"split seed must be >= 0, got -1"),
])
def test_operator_keys_messages(idx, seed, msg):
    """Every refusal of ``operator_keys``, word for word."""
    with pytest.raises(ValueError, match=f"^{msg}$"):
        operator_keys(idx, seed)


@pytest.mark.parametrize("n, fraction, n_val", [(10, 0.25, 2), (10, 0.35, 4), (2, 0.9, 1), (3, 0.01, 1)])
def test_validation_mask_count_rounds_half_to_even_and_clamps(n, fraction, n_val):
    """``[N]`` bool: the ``min(max(1, round(f N)), N - 1)`` smallest keys (round(2.5) = 2)."""
    idx = np.arange(100, 100 + n)[::-1]
    mask = validation_mask(idx, fraction, 2)
    expected = np.zeros(n, dtype=bool)
    expected[np.argsort(_ref_keys(idx, 2))[:n_val]] = True
    assert mask.dtype == np.bool_ and mask.tolist() == expected.tolist()


# -------------------------------------------------------------------------- cleaning helpers


def _kurtosis(x):
    """``[N, F] -> [F]`` excess kurtosis with population moments (0 for a constant column)."""
    d = x - x.mean(0)
    m2, m4 = (d**2).mean(0), (d**4).mean(0)
    out = np.zeros(x.shape[1])
    ok = m2 > 0
    out[ok] = m4[ok] / m2[ok] ** 2 - 3.0
    return out


def _slog(x, scales):
    """``[K, F]``: ``sign(x) log1p(|x| / s)`` where ``scales`` is set, identity where it is NaN."""
    out = x.copy()
    h = ~np.isnan(scales)
    out[:, h] = np.sign(x[:, h]) * np.log1p(np.abs(x[:, h]) / scales[h])
    return out


def _fitted(xt, k=5.0, threshold=10.0):
    """Re-implementation of steps 3-4 on the training rows ``xt [N, F]``: kurtosis, scales (median
    |x|), pooled median and MAD after the signed log, and the bounds ``med +/- k 1.4826 MAD``."""
    stat = _kurtosis(xt)
    scales = np.full(xt.shape[1], np.nan)
    heavy = stat > threshold
    scales[heavy] = np.median(np.abs(xt[:, heavy]), axis=0)
    x1 = _slog(xt, scales)
    med = np.median(x1, axis=0)
    mad = np.median(np.abs(x1 - med), axis=0)
    lo = np.where(mad > 0, med - k * 1.4826 * mad, -np.inf)
    hi = np.where(mad > 0, med + k * 1.4826 * mad, np.inf)
    return stat, scales, med, mad, lo, hi


def _standardized(rng, n, f):
    """``[n, f]`` columns of mean 0 and population std 1 exactly."""
    u = rng.normal(size=(n, f))
    return (u - u.mean(0)) / u.std(0)


def _messages(caplog, level):
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


# --------------------------------------------------------------------- fit_cleaning: defaults

NAMES = ["a", "heavy", "twin", "b", "small", "combo", "doc", "flat"]


def _family():
    """``[34, 8]`` family: 30 training rows (rows 32-33 outside the split, 5, 6 and 33 diverged;
    every other row x1000). a: normal (std 3); heavy: lognormal with one 200 (kurtosis > 10, its
    signed log capped); twin: 2a + 1 + tiny noise (duplicate); b: std 0.2; small: std 2e-4
    (variance ~4e-8, above the floor); combo: 1 + 0.5 a - 3 b (exact combination); doc: NaN
    documented; flat: constant on the training rows (MAD 0, variance 0)."""
    rng = np.random.default_rng(11)
    n = 34
    a = 3.0 * rng.normal(size=n)
    heavy = np.exp(rng.normal(size=n))
    heavy[0] = 200.0
    twin = 2.0 * a + 1.0 + 0.01 * rng.normal(size=n)
    b = 0.2 * rng.normal(size=n)
    small = 2e-4 * rng.normal(size=n)
    combo = 1.0 + 0.5 * a - 3.0 * b
    doc = rng.normal(size=n)
    doc[[3, 9, 17, 32]] = np.nan
    flat = np.full(n, 7.0)
    x = np.column_stack([a, heavy, twin, b, small, combo, doc, flat])
    train = np.arange(n) < 32
    diverged = np.zeros(n, dtype=bool)
    diverged[[5, 6, 33]] = True
    x[~(train & ~diverged)] *= 1000.0  # rows that must not move any statistic
    documented = np.array([c == "doc" for c in NAMES])
    return x, train, diverged, documented


def test_fit_cleaning_with_the_documented_defaults_by_hand(caplog):
    """Every field of the spec fitted with the defaults on 30 training rows: the kurtosis > 10
    column gets the signed log with scale median |x|; bounds median +/- 5 * 1.4826 * MAD (MAD 0:
    uncapped, noted); variance < 1e-8 dropped; reliability 1 without realizations; the |r| > 0.99
    pair judged in the one stratum of exactly 30 rows; the exact combination dropped with its
    terms by standardized weight; z-score statistics of the capped kept columns; the settings;
    the dropped list in step order; the log lines; ``apply_cleaning`` on every row."""
    x, train, diverged, documented = _family()
    rows = train & ~diverged
    caplog.set_level(logging.INFO, logger=LOGGER)
    spec = fit_cleaning(x, NAMES, train_mask=train, diverged=diverged, documented_nan=documented)

    x0 = np.nan_to_num(x, nan=0.0)
    xt = x0[rows]
    stat, scales, med, mad, lo, hi = _fitted(xt)
    heavy = ~np.isnan(scales)
    assert heavy.tolist() == [c == "heavy" for c in NAMES]  # premise
    x1 = _slog(xt, scales)
    x2 = np.clip(x1, lo, hi)
    assert np.any(x2 != x1) and 1e-8 < xt[:, NAMES.index("small")].var() < 1.0  # premises
    keep = np.array([c in ("a", "heavy", "b", "small", "doc") for c in NAMES])
    r = abs(np.corrcoef(x2[:, 0], x2[:, 2])[0, 1])

    assert spec.family == "" and spec.names == tuple(NAMES)
    assert spec.documented_nan == (False,) * 6 + (True, False)
    assert spec.log_scales == {"heavy": scales[1]}
    np.testing.assert_allclose(spec.tail_statistic, stat, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(spec.medians, med, rtol=1e-12)
    np.testing.assert_allclose(spec.mads, mad, rtol=1e-12)
    assert spec.mad_k == 5.0
    np.testing.assert_allclose(spec.cap_low, lo, rtol=1e-12)
    np.testing.assert_allclose(spec.cap_high, hi, rtol=1e-12)
    assert spec.cap_low[-1] == -np.inf and spec.cap_high[-1] == np.inf
    assert spec.reliabilities == (1.0,) * 7 + (None,)
    assert spec.kept == tuple(keep.tolist())
    np.testing.assert_allclose(spec.means, x2[:, keep].mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(spec.stds, x2[:, keep].std(0), rtol=1e-12)

    assert [(d.name, d.step) for d in spec.dropped] == [
        ("flat", "variance"), ("twin", "duplicate"), ("combo", "linear_combination")]
    assert spec.dropped[0] == DroppedColumn("flat", "variance", "variance 0 < 1e-08 on the training rows")
    assert spec.dropped[1].reason == f"|r| = {r:.5f} > 0.99 with a in stratum '0'"
    assert re.fullmatch(r"exact linear combination of kept columns \(relative residual \d\.\d\de-\d\d <= 1e-06\): "
                        r"combo = 1 \+ 0\.5\*a - 3\*b", spec.dropped[2].reason), spec.dropped[2].reason
    assert spec.settings == {
        "heavy_tail_rule": "kurtosis", "heavy_tail_threshold": 10.0, "mad_k": 5.0, "cap_within_strata": False,
        "variance_floor": 1e-8, "min_reliability": 0.8, "duplicate_threshold": 0.99, "min_stratum": 30,
        "duplicate_require": "any", "linear_tol": 1e-6, "realizations": None,
    }
    assert spec.n_train == 30 and spec.n_diverged_excluded == 2
    assert spec.notes == ("uncapped (MAD 0): ['flat']",)
    assert _messages(caplog, logging.INFO) == [
        "cleaning: variance dropped 1 columns", "cleaning: reliability dropped 0 columns",
        "cleaning: duplicate dropped 1 columns", "cleaning: linear_combination dropped 1 columns"]
    assert _messages(caplog, logging.WARNING) == []

    y = apply_cleaning(spec, x)
    ref = np.clip(_slog(x0, scales), lo, hi)[:, keep]
    assert y.shape == (34, 5) and y.dtype == np.float64
    np.testing.assert_allclose(y, (ref - x2[:, keep].mean(0)) / x2[:, keep].std(0), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"^matrix must be \[N, 8\] for this spec, got shape \(34, 7\)$"):
        apply_cleaning(spec, x[:, :-1])


def _with_kurtosis(base, target, at):
    """``base`` with ``base[at]`` raised to the value whose excess kurtosis is ``target`` (bisection)."""
    lo, hi = float(base.max()), 1e4
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        v = base.copy()
        v[at] = mid
        if _kurtosis(v[:, None])[0] < target:
            lo = mid
        else:
            hi = mid
    v = base.copy()
    v[at] = 0.5 * (lo + hi)
    return v


def test_default_heavy_tail_threshold_is_kurtosis_ten():
    """Default rule and threshold: excess kurtosis 10.5 gets the signed log, 9.5 does not."""
    rng = np.random.default_rng(3)
    grid = np.linspace(-1.0, 1.0, 40)
    x = np.column_stack([_with_kurtosis(grid, 10.5, 0), _with_kurtosis(rng.permutation(grid), 9.5, 1)])
    np.testing.assert_allclose(_kurtosis(x), [10.5, 9.5], rtol=1e-9)
    spec = fit_cleaning(x, ["k105", "k95"])
    np.testing.assert_allclose(spec.tail_statistic, [10.5, 9.5], rtol=1e-9)
    assert list(spec.log_scales) == ["k105"] and spec.transforms == ("signed_log", "identity")
    assert spec.log_scales["k105"] == np.median(np.abs(x[:, 0]))


def test_min_reliability_is_a_strict_lower_bound():
    """Without realizations every reliability is 1.0: ``min_reliability=1.0`` keeps them all."""
    x = np.random.default_rng(4).uniform(size=(40, 3))
    spec = fit_cleaning(x, ["p", "q", "r"], min_reliability=1.0)
    assert spec.kept == (True, True, True) and spec.reliabilities == (1.0, 1.0, 1.0)
    assert spec.settings["min_reliability"] == 1.0


# --------------------------------------------------------------------------- fit_cleaning: strata


def _strata_family():
    """``[70, 3]``: 40 rows of policy b"res", 30 of b"cvx" shifted by 50 in p and q; p and q are
    independent within each policy (pooled |r| > 0.99); r = 2 p + tiny noise under "res" only."""
    rng = np.random.default_rng(7)
    labels = np.array([b"res"] * 40 + [b"cvx"] * 30)
    cvx = labels == b"cvx"
    p = rng.normal(size=70) + 50.0 * cvx
    q = rng.normal(size=70) + 50.0 * cvx
    r = np.where(cvx, rng.normal(size=70), 2.0 * p + 0.01 * rng.normal(size=70))
    return np.column_stack([p, q, r]), labels


def test_duplicates_are_judged_within_strata_and_the_cap_stays_pooled():
    """With strata (and the default ``cap_within_strata=False``) the bounds are the pooled ones; the
    policy-split pair stays, r goes as a duplicate of p in stratum 'res'; under
    ``duplicate_require="all"`` r stays (not a duplicate under "cvx")."""
    x, labels = _strata_family()
    kw = {"heavy_tail_rule": "none", "mad_k": 50.0}
    spec = fit_cleaning(x, ["p", "q", "r"], strata=labels, **kw)
    _, _, _, _, lo, hi = _fitted(x, k=50.0, threshold=np.inf)
    np.testing.assert_allclose(spec.cap_low, lo, rtol=1e-12)
    np.testing.assert_allclose(spec.cap_high, hi, rtol=1e-12)
    res = labels == b"res"
    r = abs(np.corrcoef(x[res, 0], x[res, 2])[0, 1])
    assert spec.kept == (True, True, False)
    assert spec.dropped == (DroppedColumn("r", "duplicate", f"|r| = {r:.5f} > 0.99 with p in stratum 'res'"),)
    assert fit_cleaning(x, ["p", "q", "r"], strata=labels, duplicate_require="all", **kw).kept == (True, True, True)
    # pooled, the shift makes p and q one column
    assert abs(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) > 0.99
    assert fit_cleaning(x, ["p", "q", "r"], **kw).kept[1] is False


def test_cap_within_strata_is_the_hull_with_the_given_k_and_min_stratum():
    """``cap_within_strata=True``: bounds = hull of the pooled bounds and those of every stratum of
    at least ``min_stratum`` rows (here 31: the 40-row stratum counts, the 30-row one does not), all
    with ``mad_k``."""
    x, labels = _strata_family()
    spec = fit_cleaning(x, ["p", "q", "r"], strata=labels, heavy_tail_rule="none", mad_k=3.0,
                        cap_within_strata=True, min_stratum=31)
    _, _, _, _, lo, hi = _fitted(x, k=3.0, threshold=np.inf)
    _, _, _, _, s_lo, s_hi = _fitted(x[labels == b"res"], k=3.0, threshold=np.inf)
    lo, hi = np.minimum(lo, s_lo), np.maximum(hi, s_hi)
    np.testing.assert_allclose(spec.cap_low, lo, rtol=1e-12)
    np.testing.assert_allclose(spec.cap_high, hi, rtol=1e-12)
    assert spec.settings["cap_within_strata"] is True and spec.settings["min_stratum"] == 31
    assert spec.settings["mad_k"] == 3.0 and spec.mad_k == 3.0


# ------------------------------------------------------------------- fit_cleaning: reliability

BASES = ["noise", "zero", "sig", "heavy", "doc"]
COLS = ["sig_mean", "noise_mean", "zero_mean", "heavy_mean", "doc_mean", "sig_cv"]


def _agg(pr, agg):
    """``[N, M, F] -> [N, F]``: mean, std (ddof 1) or bounded cv over realizations."""
    mean = pr.mean(1)
    if agg == "mean":
        return mean
    std = pr.std(1, ddof=1)
    return std if agg == "std" else std / (np.sqrt(mean**2 + std**2) + 1e-8)


def _ref_reliability(pr, agg, transform):
    """Jackknife reliability of one column ``pr [N, M]`` with ``transform`` on every aggregate."""
    m = pr.shape[1]
    full = transform(_agg(pr[:, :, None], agg)[:, 0])
    loo = np.stack([transform(_agg(np.delete(pr, i, axis=1)[:, :, None], agg)[:, 0]) for i in range(m)], axis=1)
    var_jack = (m - 1) / m * ((loo - loo.mean(1, keepdims=True)) ** 2).sum(1)
    return 1.0 - var_jack.mean() / full.var(ddof=1)


def _realizations():
    """30 operators, M = 4 realizations of 5 bases (F' = 5): noise (realization noise only), zero,
    sig (operator value + small noise), heavy (lognormal operator value, one 300), doc (NaN
    documented, two NaN realizations); the aggregated ``[30, 6]`` columns of ``COLS``."""
    rng = np.random.default_rng(21)
    n, m = 30, 4
    pr = np.empty((n, m, 5))
    pr[..., 0] = rng.normal(size=(n, m))
    pr[..., 1] = 0.0
    pr[..., 2] = rng.normal(size=(n, 1)) + 0.05 * rng.normal(size=(n, m))
    op = np.exp(rng.normal(size=(n, 1)))
    op[0] = 300.0
    pr[..., 3] = op * (1.0 + 0.05 * rng.normal(size=(n, m)))
    pr[..., 4] = 3.0 * rng.normal(size=(n, 1)) + rng.normal(size=(n, m))
    pr[3, 1, 4] = pr[7, 0, 4] = np.nan
    mean = _agg(pr, "mean")
    x = np.column_stack([mean[:, 2], mean[:, 0], mean[:, 1], mean[:, 3], mean[:, 4], _agg(pr, "cv")[:, 2]])
    return x, pr, np.array([c == "doc_mean" for c in COLS])


def test_reliability_is_the_jackknife_of_the_transformed_column():
    """Per-realization values: each column's reliability is the jackknife one of its aggregate
    (mean or cv; no std column here) through its fitted signed log and cap, computed on the
    per-realization values with documented NaN -> 0; below 0.8 it goes with the value in the
    reason; a column dropped at the variance step has none; ``realizations`` records M."""
    x, pr, documented = _realizations()
    spec = fit_cleaning(x, COLS, documented_nan=documented, per_realization=pr, per_realization_names=BASES)
    x0 = np.nan_to_num(x, nan=0.0)
    pr0 = np.nan_to_num(pr, nan=0.0)
    _, scales, _, _, lo, hi = _fitted(x0)
    assert not np.isnan(scales[3]) and np.isnan(scales[:3]).all()  # premise: heavy_mean gets the signed log

    def tf(j):
        return lambda v: np.clip(_slog(v[:, None], scales[[j]])[:, 0], lo[j], hi[j])

    src = {"sig_mean": (2, "mean"), "noise_mean": (0, "mean"), "heavy_mean": (3, "mean"), "doc_mean": (4, "mean"),
           "sig_cv": (2, "cv")}
    ref = {c: _ref_reliability(pr0[:, :, b], agg, tf(COLS.index(c))) for c, (b, agg) in src.items()}
    # premises: the transform matters for heavy_mean, the threshold is far from every value
    assert abs(_ref_reliability(pr0[:, :, 3], "mean", lambda v: v) - ref["heavy_mean"]) > 1e-4
    assert all(abs(v - 0.8) > 0.02 for v in ref.values()) and ref["noise_mean"] < 0.8
    rel = dict(zip(COLS, spec.reliabilities))
    assert rel["zero_mean"] is None
    for c, v in ref.items():
        assert rel[c] == pytest.approx(v, rel=1e-9, abs=1e-12), c
    assert spec.kept == tuple(c != "zero_mean" and ref[c] >= 0.8 for c in COLS)
    dropped = {d.name: d for d in spec.dropped}
    assert dropped["zero_mean"] == DroppedColumn("zero_mean", "variance", "variance 0 < 1e-08 on the training rows")
    assert dropped["noise_mean"].step == "reliability"
    assert dropped["noise_mean"].reason == f"reliability {ref['noise_mean']:.3f} < 0.8 (jackknife over realizations)"
    assert spec.settings["realizations"] == 4


def test_reliability_not_estimable_over_two_realizations():
    """M = 2 (F' = 3): a std column is not estimable, goes with the reason naming std and M = 2,
    and has no reliability; with ``min_reliability=0`` it stays, still without one."""
    rng = np.random.default_rng(5)
    pr = np.stack([rng.normal(size=(30, 1)) + 0.05 * rng.normal(size=(30, 2)),
                   rng.normal(size=(30, 2)), rng.normal(size=(30, 2))], axis=2)
    x = np.column_stack([pr[:, :, 0].mean(1), pr[:, :, 0].std(1, ddof=1)])
    kw = {"per_realization": pr, "per_realization_names": ["s", "t", "u"]}
    spec = fit_cleaning(x, ["s_mean", "s_std"], **kw)
    assert spec.kept == (True, False) and spec.reliabilities[1] is None and spec.reliabilities[0] > 0.99
    assert spec.dropped == (DroppedColumn("s_std", "reliability",
                                          "reliability not estimable: std over M=2 realizations (needs M >= 3)"),)
    assert spec.settings["realizations"] == 2
    off = fit_cleaning(x, ["s_mean", "s_std"], min_reliability=0.0, **kw)
    assert off.kept == (True, True) and off.reliabilities[1] is None and off.dropped == ()


def _big_small():
    """30 operators, M = 4, bases big (~1e6) and small (~1e-3); aggregated means stored as float32."""
    rng = np.random.default_rng(8)
    pr = np.stack([1e6 * (1 + 0.3 * rng.normal(size=(30, 1)) + 0.01 * rng.normal(size=(30, 4))),
                   1e-3 * (1 + 0.3 * rng.normal(size=(30, 1)) + 0.01 * rng.normal(size=(30, 4)))], axis=2)
    x = pr.mean(1).astype(np.float32).astype(np.float64)
    return x, pr


def test_reproduction_check_tolerance_is_relative_per_column():
    """Stored aggregates rounded to float32 pass (tolerance 1e-5 (|x| + column mean |x|) + 1e-12);
    an error of 1e-6 on a ~1e-3 column fails, naming only that column; an all-zero column passes."""
    x, pr = _big_small()
    names, bases = ["big_mean", "small_mean"], ["big", "small"]
    spec = fit_cleaning(x, names, per_realization=pr, per_realization_names=bases)
    assert spec.kept == (True, True) and min(spec.reliabilities) > 0.99
    bad = x.copy()
    bad[5, 1] += 1e-6
    msg = r"^per_realization does not reproduce the aggregated columns \['small_mean'\]$"
    with pytest.raises(ValueError, match=msg):
        fit_cleaning(bad, names, per_realization=pr, per_realization_names=bases)
    pz = np.concatenate([pr, np.zeros((30, 4, 1))], axis=2)
    xz = np.column_stack([x, np.zeros(30)])
    spec = fit_cleaning(xz, names + ["zero_mean"], per_realization=pz, per_realization_names=bases + ["zero"])
    assert spec.kept == (True, True, False) and spec.dropped[0].step == "variance"


def test_reproduction_message_lists_ten_columns():
    """Eleven columns off by 1: the message lists the first ten."""
    rng = np.random.default_rng(9)
    pr = rng.normal(size=(30, 3, 11))
    names = [f"c{i}_mean" for i in range(11)]
    with pytest.raises(ValueError) as e:
        fit_cleaning(pr.mean(1) + 1.0, names, per_realization=pr, per_realization_names=[f"c{i}" for i in range(11)])
    assert str(e.value) == f"per_realization does not reproduce the aggregated columns {names[:10]}"


def test_per_realization_messages():
    """Shape ``[N, M, F']`` with N the matrix's rows, names for the last axis, and undocumented NaN
    in the per-realization values named by their per-realization name."""
    x, pr = _big_small()
    names, bases = ["big_mean", "small_mean"], ["big", "small"]
    with pytest.raises(ValueError, match=r"^per_realization must be \[N=30, M, F'\], got shape \(30, 4\)$"):
        fit_cleaning(x, names, per_realization=pr[:, :, 0], per_realization_names=bases)
    with pytest.raises(ValueError, match=r"^per_realization must be \[N=30, M, F'\], got shape \(29, 4, 2\)$"):
        fit_cleaning(x, names, per_realization=pr[1:], per_realization_names=bases)
    for wrong in (None, bases + ["extra"]):
        with pytest.raises(ValueError, match="^per_realization_names must name the last axis of per_realization$"):
            fit_cleaning(x, names, per_realization=pr, per_realization_names=wrong)
    nan = pr.copy()
    nan[2, 1, 1] = np.nan
    with pytest.raises(ValueError, match="^NaN in columns not documented to hold NaN: small$"):
        fit_cleaning(x, names, per_realization=nan, per_realization_names=bases)


# ------------------------------------------------------------ fit_cleaning: linear combinations


def test_combination_reason_lists_six_terms_by_weight_then_counts_the_rest():
    """``combo6 = -2 + sum k_i u_i`` (6 terms) and ``combo7 = 1 + sum k_i u_i`` (7 terms) on
    standardized u: terms by |coefficient| * std ratio, signs, '(+1 more)' only past six."""
    u = _standardized(np.random.default_rng(12), 40, 7)
    k = np.array([1.0, 2.0, -3.0, 4.0, 5.0, 6.0, 7.0])
    x = np.column_stack([u, -2.0 + u[:, :6] @ k[:6], 1.0 + u @ k])
    names = [f"u{i}" for i in range(7)] + ["combo6", "combo7"]
    spec = fit_cleaning(x, names)
    assert spec.kept == (True,) * 7 + (False, False)
    head = r"exact linear combination of kept columns \(relative residual \d\.\d\de-\d\d <= 1e-06\): "
    r6, r7 = (d.reason for d in spec.dropped)
    assert re.fullmatch(head + re.escape("combo6 = -2 + 6*u5 + 5*u4 + 4*u3 - 3*u2 + 2*u1 + 1*u0"), r6), r6
    assert re.fullmatch(head + re.escape("combo7 = 1 + 7*u6 + 6*u5 + 5*u4 + 4*u3 - 3*u2 + 2*u1 (+1 more)"), r7), r7


def test_linear_tol_decides_a_near_combination():
    """near = u0 + 2 u1 + 0.02 e (e orthogonal to both): relative residual ~0.009 is dropped under
    ``linear_tol=0.05`` (reason with the residual and the tolerance) and kept under the default."""
    rng = np.random.default_rng(13)
    z = _standardized(rng, 50, 3)
    q, _ = np.linalg.qr(np.column_stack([np.ones(50), z]))
    e = q[:, 3] * np.sqrt(50)  # mean 0, orthogonal to u0 and u1, population std 1
    x = np.column_stack([z[:, 0], z[:, 1], z[:, 0] + 2.0 * z[:, 1] + 0.02 * e])
    zn = (x[:, 2] - x[:, 2].mean()) / x[:, 2].std()
    res = np.linalg.norm(zn - x[:, :2] @ np.linalg.lstsq(x[:, :2], zn, rcond=None)[0]) / np.sqrt(50)
    spec = fit_cleaning(x, ["u0", "u1", "near"], linear_tol=0.05)
    assert spec.kept == (True, True, False) and spec.settings["linear_tol"] == 0.05
    head = f"exact linear combination of kept columns (relative residual {res:.2e} <= 0.05): near = "
    intercept = r"(-?\d(\.\d+)?e-\d\d|-?0)"  # 0 up to rounding
    assert re.fullmatch(re.escape(head) + intercept + re.escape(" + 2*u1 + 1*u0"), spec.dropped[0].reason)
    assert fit_cleaning(x, ["u0", "u1", "near"]).kept == (True, True, True)


@pytest.mark.parametrize("family, prefix, info", [("fam", "fam: ", "fam"), ("", "", "cleaning")])
def test_linear_test_skipped_when_rows_equal_columns(caplog, family, prefix, info):
    """3 training rows for 3 columns: the test is skipped with a note and a warning (prefixed by
    the family when one is given); bytes names are decoded."""
    x = np.array([[1.0, 4.0, 2.0], [2.0, 1.0, 7.0], [4.0, 3.0, 1.0]])
    caplog.set_level(logging.INFO, logger=LOGGER)
    kw = {"family": family} if family else {}
    spec = fit_cleaning(x, [b"p", b"q", "r"], **kw)
    msg = ("linear-combination test skipped: 3 training rows for 3 columns "
           "(every column past the rank would be a combination)")
    assert spec.notes == (msg,) and spec.kept == (True, True, True)
    assert spec.names == ("p", "q", "r") and spec.family == family
    assert _messages(caplog, logging.WARNING) == [prefix + msg]
    assert _messages(caplog, logging.INFO) == [f"{info}: {s} dropped 0 columns"
                                               for s in ("variance", "reliability", "duplicate", "linear_combination")]


def test_fit_cleaning_messages():
    """The matrix shape, unique names, the strata shape and an undocumented NaN, word for word."""
    x = np.random.default_rng(14).normal(size=(30, 2))
    with pytest.raises(ValueError, match=r"^matrix must be \[N, F\], got shape \(5,\)$"):
        fit_cleaning(np.zeros(5), ["a"])
    with pytest.raises(ValueError, match=r"^names must be 2 unique column names, got 2 \(1 unique\)$"):
        fit_cleaning(x, ["a", "a"])
    with pytest.raises(ValueError, match=r"^strata must have shape \(30,\), got \(29,\)$"):
        fit_cleaning(x, ["a", "b"], strata=np.zeros(29))
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="^NaN in columns not documented to hold NaN: b$"):
        fit_cleaning(bad, ["a", "b"])
