"""Near-duplicates within strata and exact linear combinations (SPEC 8)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from spinlock_core.tokenizer.redundancy import (
    combination_coefficients,
    duplicates_within_strata,
    linear_combinations,
)


def _max_pairwise_abs_r(x: np.ndarray) -> float:
    c = np.abs(np.corrcoef(x, rowvar=False))
    np.fill_diagonal(c, 0.0)
    return float(c.max())


@pytest.fixture
def combos():
    """Columns: 0-2 band fractions summing to 1, 3 = a, 4 = b, 5 = 2a - b, 6 free."""
    rng = np.random.default_rng(0)
    n = 400
    w = rng.dirichlet([2.0, 3.0, 4.0], n)
    a, b, free = rng.normal(size=(3, n))
    return np.column_stack([w, a, b, 2 * a - b, free])


# --- linear combinations ---------------------------------------------------------------------------

def test_finds_band_fractions_and_two_a_minus_b(combos):
    assert _max_pairwise_abs_r(combos) < 0.99  # invisible to a pairwise test
    assert duplicates_within_strata(combos, None, 0.99, 30) == {}
    dropped, residual = linear_combinations(combos, tol=1e-6)
    # the later column of each dependent set goes: the third fraction and 2a - b
    assert dropped.tolist() == [False, False, True, False, False, True, False]
    assert residual[2] < 1e-12 and residual[5] < 1e-12
    assert residual[0] == pytest.approx(1.0) and residual[[1, 3, 4, 6]].min() > 0.3


def test_drop_count_equals_pivoted_qr_rank_deficiency(combos):
    z = (combos - combos.mean(0)) / combos.std(0)
    r = scipy.linalg.qr(z, mode="r", pivoting=True)[0]
    d = np.abs(np.diag(r))
    rank = int((d > 1e-6 * d[0]).sum())
    assert int(linear_combinations(combos, 1e-6)[0].sum()) == combos.shape[1] - rank == 2


def test_column_order_decides_which_goes(combos):
    order = [5, 3, 4, 0, 1, 2, 6]  # 2a - b first: now b (last of a, b, 2a - b) goes
    dropped = linear_combinations(combos[:, order], 1e-6)[0]
    assert [order[i] for i in np.flatnonzero(dropped)] == [4, 2]


def test_near_but_not_exact_combination_is_kept(combos):
    rng = np.random.default_rng(1)
    x = combos.copy()
    x[:, 5] += 1e-3 * rng.normal(size=len(x))  # relative residual ~ 4e-4
    dropped, residual = linear_combinations(x, 1e-6)
    assert not dropped[5] and 1e-4 < residual[5] < 1e-3


def test_combination_coefficients_in_own_units(combos):
    b, c0 = combination_coefficients(combos, [5, 2], [0, 1, 3, 4])
    np.testing.assert_allclose(b[0], [0.0, 0.0, 2.0, -1.0], atol=1e-10)
    np.testing.assert_allclose(b[1], [-1.0, -1.0, 0.0, 0.0], atol=1e-10)
    np.testing.assert_allclose(c0, [0.0, 1.0], atol=1e-10)


def test_linear_combination_errors():
    with pytest.raises(ValueError, match="5 columns on 5 training rows: every column past rank 4"):
        linear_combinations(np.random.default_rng(0).normal(size=(5, 5)))
    with pytest.raises(ValueError, match=r"constant columns cannot be standardized: \[1\]"):
        linear_combinations(np.column_stack([np.arange(5.0), np.ones(5)]))
    with pytest.raises(ValueError, match="tol must be in"):
        linear_combinations(np.random.default_rng(0).normal(size=(5, 2)), tol=1.0)


# --- duplicates within strata ----------------------------------------------------------------------

def _policy_split(n=200, seed=0):
    """Columns 0, 1 independent within each policy but shifted together by the policy; column 2 a
    genuine duplicate of 0 (r ~ 0.9999 within both strata)."""
    rng = np.random.default_rng(seed)
    labels = np.array([b"residual"] * (n // 2) + [b"convex"] * (n // 2))
    shift = np.where(labels == b"convex", 50.0, 0.0)
    a, b = rng.normal(size=(2, n))
    x = np.column_stack([a + shift, b + shift, a + shift + 0.01 * rng.normal(size=n)])
    return x, labels


def test_policy_split_correlation_keeps_both():
    x, labels = _policy_split()
    assert abs(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) > 0.99  # pooled: only the split
    out = duplicates_within_strata(x, labels, threshold=0.99, min_stratum=30)
    assert list(out) == [2]
    assert out[2].of == 0 and out[2].r > 0.999 and out[2].stratum in ("residual", "convex")
    # judged on the pooled rows, the policy split makes 1 a "duplicate" of 0
    assert set(duplicates_within_strata(x, None, 0.99, 30)) == {1, 2}


def test_any_versus_all_strata():
    rng = np.random.default_rng(3)
    n = 120
    labels = np.array(["residual"] * 80 + ["convex"] * 40)
    a = rng.normal(size=n)
    b = np.where(labels == "convex", a, rng.normal(size=n))  # a duplicate under convex only
    x = np.column_stack([a, b])
    assert duplicates_within_strata(x, labels, 0.99, 30, require="any")[1].stratum == "convex"
    assert duplicates_within_strata(x, labels, 0.99, 30, require="all") == {}
    # the convex stratum below min_stratum is not judged
    assert duplicates_within_strata(x, labels, 0.99, 41, require="any") == {}


def test_later_column_goes_and_chains_compare_with_kept_columns():
    rng = np.random.default_rng(4)
    n = 3000
    a, e1, e2 = rng.normal(size=(3, n))
    b = a + 0.1 * e1  # r(a, b) ~ 0.995
    c = b + 0.12 * e2  # r(b, c) ~ 0.993, r(a, c) ~ 0.988
    x = np.column_stack([a, b, c])
    r = np.corrcoef(x, rowvar=False)
    assert r[0, 1] > 0.99 and r[1, 2] > 0.99 and r[0, 2] < 0.99
    out = duplicates_within_strata(x, None, 0.99, 30)
    assert list(out) == [1] and out[1].of == 0  # c stays: its only duplicate b is gone
    out_rev = duplicates_within_strata(x[:, ::-1], None, 0.99, 30)
    assert list(out_rev) == [1]


def test_constant_within_a_stratum_is_never_a_duplicate():
    # both columns capped onto one value in the convex stratum: an ulp-level rounding of the
    # stratum mean must not make them correlate
    rng = np.random.default_rng(5)
    labels = np.array(["residual"] * 60 + ["convex"] * 60)
    x = rng.normal(size=(120, 2))
    x[60:] = 0.1 + 0.2  # 0.30000000000000004, its mean over 60 rows is not exactly that value
    assert duplicates_within_strata(x, labels, 0.99, 30) == {}


def test_no_stratum_large_enough_judges_nothing(caplog):
    x = np.random.default_rng(0).normal(size=(20, 2))
    x[:, 1] = x[:, 0]
    assert duplicates_within_strata(x, None, 0.99, 30) == {}
    assert "no stratum has 30 rows" in caplog.text


def test_duplicate_errors():
    x = np.ones((10, 2))
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        duplicates_within_strata(x, None, 1.5)
    with pytest.raises(ValueError, match="min_stratum must be >= 3"):
        duplicates_within_strata(x, None, 0.99, 2)
    with pytest.raises(ValueError, match="require must be 'any' or 'all'"):
        duplicates_within_strata(x, None, 0.99, 3, require="most")
    with pytest.raises(ValueError, match=r"strata_labels must have shape \(10,\)"):
        duplicates_within_strata(x, np.zeros(9), 0.99, 3)
