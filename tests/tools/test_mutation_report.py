"""The statistics of ``benchmarks/mutation_report.py`` and the sample membership of
``mutation/sample.py``, against hand computations (these figures decide whether issue #11's 90% bar
is met, so they are pinned like the science)."""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "mutation"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import mutation_report as mr  # noqa: E402
import sample  # noqa: E402


def test_wilson_interval_of_8_in_10_by_hand():
    # p = 0.8, n = 10, z = 1.96: centre = (0.8 + 1.96^2/20) / (1 + 1.96^2/10) = 0.99208 / 1.38416,
    # half = 1.96 sqrt(0.016 + 1.96^2/400) / 1.38416
    centre = 0.99208 / 1.38416
    half = 1.96 * math.sqrt(0.016 + 0.009604) / 1.38416
    lo, hi = mr.wilson(8, 10)
    assert lo == pytest.approx(centre - half, abs=1e-4) and hi == pytest.approx(centre + half, abs=1e-4)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert mr.wilson(0, 0) is None
    lo, hi = mr.wilson(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(10 / (10 + 1.96**2), abs=1e-4)


def _m(name, status, rate=1.0, group=-1, equivalent=False):
    return {"name": name, "status": status, "rate": rate, "group": group, "equivalent": equivalent}


def test_counts_leave_out_equivalent_unsampled_and_unchecked_mutants():
    ms = [_m("a", "killed"), _m("b", "timeout"), _m("c", "survived"), _m("d", "survived", equivalent=True),
          _m("e", "no tests"), _m("f", "not checked"), _m("g", "not sampled"), _m("h", "segfault")]
    c = mr.counts(ms)
    # killed: killed + timeout + segfault = 3; denominator: 8 - 1 equivalent - 2 excluded = 5
    assert c["checked"] == 5 and c["killed_incl_timeouts"] == 3 and c["not_killed"] == 2
    assert c["score"] == pytest.approx(3 / 5) and c["equivalent"] == 1
    # population: 8 mutants less the equivalent share scaled from the 7 sampled ones
    assert c["population"] == pytest.approx(round(8 - 8 / 7, 1))


def test_stratified_estimate_and_interval_by_hand():
    groups = [(0.5, ["pkg/sampled/*"])]
    full = [_m(f"f{i}", "killed") for i in range(9)] + [_m("f9", "survived")]  # 10 mutants, p = 0.9, exact
    sampled = ([_m(f"s{i}", "killed", 0.5, 0) for i in range(6)] + [_m(f"s{i}", "survived", 0.5, 0) for i in range(6, 8)]
               + [_m(f"s{i}", "not sampled", 0.5, 0) for i in range(8, 20)])  # 20 mutants, 8 checked, p = 0.75
    e = mr.stratified(full + sampled, groups)
    est = (10 * 0.9 + 20 * 0.75) / 30
    # only the sampled stratum has variance: (20/30)^2 p(1-p)/n (1 - n/N)
    se = math.sqrt((20 / 30) ** 2 * 0.75 * 0.25 / 8 * (1 - 8 / 20))
    assert e["score"] == pytest.approx(est, abs=1e-4)
    assert e["interval95"] == pytest.approx((est - 1.96 * se, est + 1.96 * se), abs=1e-4)
    assert e["checked"] == 18 and e["population"] == pytest.approx(30)


def test_sample_membership_is_the_sha256_fraction_and_nested():
    name = "spinlock_core.features.extract.x_f__mutmut_1"
    u = int(hashlib.sha256(name.encode()).hexdigest(), 16) / 2**256
    assert sample.unit(name) == pytest.approx(u, rel=1e-15)
    groups = [(0.05, ["spinlock_core/features/*"])]
    assert sample.rate_of("spinlock_core/features/extract.py", groups) == 0.05
    assert sample.rate_of("spinlock_core/rollout.py", groups) == 1.0 and sample.group_of("spinlock_core/rollout.py", groups) == -1
    names = [f"m.x_f__mutmut_{i}" for i in range(4000)]
    small = {n for n in names if sample.in_sample(n, "spinlock_core/features/a.py", [(0.03, groups[0][1])])}
    large = {n for n in names if sample.in_sample(n, "spinlock_core/features/a.py", groups)}
    assert small < large  # a raised rate only adds
    assert abs(len(large) / 4000 - 0.05) < 4 * math.sqrt(0.05 * 0.95 / 4000)
    assert all(sample.in_sample(n, "spinlock_core/rollout.py", groups) for n in names[:50])


def test_fresh_draw_splits_the_sample_at_fresh_from():
    groups = [(0.05, ["pkg/*"])]
    names = [f"m.x_g__mutmut_{i}" for i in range(3000)]
    drawn = [n for n in names if sample.unit(n) < 0.05]
    ms = [_m(n, "killed" if sample.unit(n) < 0.03 else "survived", 0.05, 0) for n in drawn]
    (d,) = mr.fresh_draws(ms, groups, {0: 0.03})
    n_early = sum(sample.unit(n) < 0.03 for n in drawn)
    assert d["earlier"]["checked"] == n_early and d["earlier"]["score"] == 1.0
    assert d["fresh"]["checked"] == len(drawn) - n_early and d["fresh"]["score"] == 0.0


def test_a_targeted_group_is_scored_on_its_fresh_draw_alone():
    groups = [(0.5, ["pkg/*"])]
    names = [f"m.x_h__mutmut_{i}" for i in range(400)]
    drawn = [n for n in names if sample.unit(n) < 0.5]
    # the earlier draw (u < 0.2) all killed after targeting; the fresh draw killed at 3 in 4
    fresh = [n for n in drawn if sample.unit(n) >= 0.2]
    ms = [_m(n, "killed", 0.5, 0) for n in drawn if sample.unit(n) < 0.2]
    ms += [_m(n, "survived" if i % 4 == 0 else "killed", 0.5, 0) for i, n in enumerate(fresh)]
    ms += [_m(n, "not sampled", 0.5, 0) for n in names if sample.unit(n) >= 0.5]
    p = sum(i % 4 != 0 for i in range(len(fresh))) / len(fresh)
    e = mr.stratified(ms, groups, {0: 0.2})
    n, big_n = len(fresh), 400
    se = math.sqrt(p * (1 - p) / n * (1 - n / big_n))
    assert e["score"] == pytest.approx(p, abs=1e-4) and e["checked"] == n
    assert e["interval95"] == pytest.approx((p - 1.96 * se, p + 1.96 * se), abs=1e-4)
    whole = mr.stratified(ms, groups)
    assert whole["score"] == pytest.approx(1 - (len(fresh) + 3) // 4 / len(drawn), abs=1e-4)
