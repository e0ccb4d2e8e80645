"""Category discovery (SPEC 8) and codebook sizes (SPEC 9) against independent computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from spinlock_core.tokenizer import metrics
from spinlock_core.tokenizer.categories import (
    Categories,
    category_centroids,
    category_orthogonality,
    codebook_sizes,
    correlation_distance,
    default_num_categories,
    discover_categories,
)


def planted(n_rows=400, groups=(6, 6, 6), noise=0.3, seed=0, extra=None):
    """Columns that are noisy copies (random signs) of independent latents, group after group,
    then interleaved so that no group is contiguous. Returns x, names, true group per column."""
    rng = np.random.default_rng(seed)
    lat = rng.standard_normal((n_rows, len(groups)))
    cols, truth = [], []
    for g, size in enumerate(groups):
        for _ in range(size):
            sign = rng.choice([-1.0, 1.0])
            cols.append(sign * lat[:, g] + noise * rng.standard_normal(n_rows))
            truth.append(g)
    perm = rng.permutation(len(cols))
    x = np.stack(cols, axis=1)[:, perm]
    truth = np.asarray(truth)[perm]
    x = (x - x.mean(0)) / x.std(0)
    return x, [f"col{j:02d}" for j in range(x.shape[1])], truth


def same_partition(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    pairs = {(int(i), int(j)) for i, j in zip(a, b)}
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# ----------------------------------------------------------------------------- distance


def test_distance_is_euclidean_between_sign_aligned_standardized_columns():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 5))
    x[:, 1] = -0.8 * x[:, 0] + 0.2 * x[:, 1]
    d = correlation_distance(x)
    u = (x - x.mean(0)) / (x.std(0) * math.sqrt(len(x)))  # unit-norm standardized columns
    for i in range(5):
        for j in range(5):
            expect = min(np.linalg.norm(u[:, i] - u[:, j]), np.linalg.norm(u[:, i] + u[:, j]))
            assert d[i, j] == pytest.approx(expect, abs=1e-10)
    assert np.all(np.diag(d) == 0) and np.array_equal(d, d.T)
    # a column and its negative are at distance 0 (the sign carries no behaviour)
    assert correlation_distance(np.stack([x[:, 0], -3 * x[:, 0] + 1], 1))[0, 1] == pytest.approx(0, abs=1e-6)


# ----------------------------------------------------------------------------- number of categories


@pytest.mark.parametrize(
    "f, k", [(4, 4), (10, 4), (44, 4), (45, 5), (54, 5), (55, 6), (107, 11), (249, 25), (250, 25), (1000, 25)]
)
def test_default_num_categories(f, k):
    assert default_num_categories(f) == k


def test_auto_needs_four_columns():
    x, names, _ = planted(groups=(1, 1, 1))
    with pytest.raises(ValueError, match=r"only F = 3 columns; fix num_categories to an integer <= 3"):
        discover_categories(x, names)
    assert discover_categories(x, names, 3, min_size=1).num_categories == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_categories": 0}, r"num_categories must lie in \[1, F = 18\], got 0"),
        ({"num_categories": 19}, r"num_categories must lie in \[1, F = 18\], got 19"),
        ({"num_categories": "many"}, r"num_categories must be 'auto' or an integer, got 'many'"),
        ({"num_categories": 4.0}, r"num_categories must be 'auto' or an integer, got 4.0"),
        ({"num_categories": True}, r"num_categories must be 'auto' or an integer"),
        ({"min_size": 0}, r"min_size must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    x, names, _ = planted()
    with pytest.raises(ValueError, match=match):
        discover_categories(x, names, **kwargs)


def test_bad_inputs():
    x, names, _ = planted()
    with pytest.raises(ValueError, match=r"names has 17 entries but x has 18 columns"):
        discover_categories(x, names[:-1])
    with pytest.raises(ValueError, match=r"names must be unique, repeated: \['col00'\]"):
        discover_categories(x, ["col00"] + names[:-1])
    with pytest.raises(ValueError, match=r"x must be a 2-D array \[N, F\], got shape \(18,\)"):
        discover_categories(x[0], names)
    with pytest.raises(ValueError, match=r"x needs at least 2 rows"):
        discover_categories(x[:1], names)
    bad = x.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match=r"non-finite values in column\(s\) \[5\]"):
        discover_categories(bad, names)
    bad = x.copy()
    bad[:, 7] = 2.5
    with pytest.raises(ValueError, match=r"column 'col07' \(index 7\) has zero variance"):
        discover_categories(bad, names)


# ----------------------------------------------------------------------------- clustering


def test_recovers_planted_groups_and_matches_scipy_ward():
    x, names, truth = planted(groups=(6, 7, 5, 8), noise=0.5)
    cats = discover_categories(x, names, 4)
    assert same_partition(cats.assignment, truth)
    # the same cut from scipy on an independently computed distance
    r = np.corrcoef(x, rowvar=False)
    dist = np.sqrt(np.clip(2 * (1 - np.abs(r)), 0, None))
    np.fill_diagonal(dist, 0)
    ref = fcluster(linkage(squareform(dist, checks=False), method="ward"), 4, criterion="maxclust")
    assert same_partition(cats.assignment, ref)
    assert cats.sizes == tuple(int(np.sum(cats.assignment == c)) for c in range(4))
    assert sorted(cats.sizes) == [5, 6, 7, 8]


def test_labels_follow_first_column_and_do_not_depend_on_column_order():
    x, names, _ = planted(groups=(6, 7, 5, 8), noise=0.5)
    cats = discover_categories(x, names, 4)
    firsts = [m[0] for m in cats.members]
    assert firsts == sorted(firsts) and firsts[0] == 0
    assert cats.assignment.dtype == np.int64 and not cats.assignment.flags.writeable
    perm = np.random.default_rng(5).permutation(x.shape[1])
    other = discover_categories(x[:, perm], [names[j] for j in perm], 4)
    assert {frozenset(c) for c in other.category_names} == {frozenset(c) for c in cats.category_names}
    again = discover_categories(x, names, 4)
    assert np.array_equal(again.assignment, cats.assignment) and again.to_json() == cats.to_json()


def test_torch_input():
    x, names, _ = planted()
    a = discover_categories(torch.from_numpy(x).float(), names, 3)
    b = discover_categories(x, names, 3)
    assert np.array_equal(a.assignment, b.assignment)


def _pair_case():
    """Three independent groups of six and a tight pair that correlates 0.6 with group 1."""
    rng = np.random.default_rng(3)
    n = 2000
    lat = rng.standard_normal((n, 3))
    pair_lat = 0.6 * lat[:, 1] + 0.8 * rng.standard_normal(n)
    cols = [lat[:, g] + 0.3 * rng.standard_normal(n) for g in range(3) for _ in range(6)]
    cols += [pair_lat + 0.05 * rng.standard_normal(n) for _ in range(2)]
    x = np.stack(cols, 1)
    names = [f"g{g}_{i}" for g in range(3) for i in range(6)] + ["pair_a", "pair_b"]
    return x, names


def test_small_cluster_merged_into_most_correlated_neighbour():
    x, names = _pair_case()
    raw = discover_categories(x, names, 4, min_size=1)
    assert raw.num_categories == 4 and raw.sizes == (6, 6, 6, 2) and raw.merged_columns == ()
    # independent check of "most correlated neighbour": |r| between plain means of the columns
    # (all signs are positive here) of the pair and of each group
    pair = x[:, -2:].mean(1)
    r = [abs(np.corrcoef(pair, x[:, 6 * g : 6 * g + 6].mean(1))[0, 1]) for g in range(3)]
    assert int(np.argmax(r)) == 1
    cats = discover_categories(x, names, 4)
    assert cats.num_categories == 3 and cats.sizes == (6, 8, 6)
    assert cats.category_names[1][-2:] == ("pair_a", "pair_b")
    assert cats.merged_columns == ("pair_a", "pair_b")
    assert cats.requested_num_categories == 4 and cats.num_clusters_cut == 4


def test_fewer_columns_than_min_size_end_in_one_category():
    x, names = _pair_case()
    cats = discover_categories(x[:, :2], names[:2], 2)
    assert cats.num_categories == 1 and cats.sizes == (2,)
    assert math.isnan(cats.orthogonality) and math.isnan(cats.silhouette_final)
    single = discover_categories(x[:, :1], names[:1], 1)
    assert single.assignment.tolist() == [0] and all(math.isnan(s) for s in single.silhouette)


def test_tied_tree_warns_when_cut_has_fewer_clusters():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 100))
    x = np.stack([a, a, a, b, b, b], 1)
    with pytest.warns(UserWarning, match=r"cut gives 2 clusters, not the 4 asked for"):
        cats = discover_categories(x, [f"c{j}" for j in range(6)], 4)
    assert cats.assignment.tolist() == [0, 0, 0, 1, 1, 1]


# ----------------------------------------------------------------------------- diagnostics


def _silhouette_by_hand(dist, labels):
    s = []
    for i in range(len(labels)):
        own = labels == labels[i]
        if own.sum() == 1:
            s.append(0.0)
            continue
        a = dist[i, own].sum() / (own.sum() - 1)
        b = min(dist[i, labels == c].mean() for c in set(labels.tolist()) if c != labels[i])
        s.append((b - a) / max(a, b))
    return float(np.mean(s))


def test_silhouette_around_k():
    x, names, _ = planted(groups=(6, 7, 5, 8), noise=0.5)
    cats = discover_categories(x, names)  # auto: F = 26 -> k = 4
    assert cats.requested_num_categories == 4
    assert cats.silhouette_k == (2, 3, 4, 5, 6)
    r = np.corrcoef(x, rowvar=False)
    dist = np.sqrt(np.clip(2 * (1 - np.abs(r)), 0, None))
    np.fill_diagonal(dist, 0)
    tree = linkage(squareform(dist, checks=False), method="ward")
    for kk, s in zip(cats.silhouette_k, cats.silhouette):
        expect = _silhouette_by_hand(dist, fcluster(tree, kk, criterion="maxclust"))
        assert s == pytest.approx(expect, abs=1e-9)
    assert int(np.argmax(cats.silhouette)) == 2  # the planted k has the best silhouette
    assert cats.silhouette_final == pytest.approx(cats.silhouette[2])


def test_silhouette_nan_where_k_out_of_range():
    x, names, _ = planted(groups=(2, 2, 1), noise=0.2)
    cats = discover_categories(x, names, 3, min_size=1)  # F = 5: k in [2, 4] is measurable
    assert cats.silhouette_k == (1, 2, 3, 4, 5)
    nan = [math.isnan(s) for s in cats.silhouette]
    assert nan == [True, False, False, False, True]


def test_orthogonality_is_measured_on_sign_aligned_centroids():
    rng = np.random.default_rng(2)
    u, e = rng.standard_normal((2, 300))
    v = 0.3 * u + e
    x = np.stack([u, -u, v], 1)
    # category 0 = {u, -u}: without sign alignment its centroid would vanish
    cent = category_centroids(x, [0, 0, 1])
    zu = (u - u.mean()) / u.std()
    assert np.allclose(np.abs(cent[:, 0]), np.abs(zu))
    expect = abs(np.corrcoef(u, v)[0, 1])
    assert category_orthogonality(x, [0, 0, 1]) == pytest.approx(expect, abs=1e-12)
    assert category_orthogonality(torch.from_numpy(x), torch.tensor([0, 0, 1])) == pytest.approx(expect, abs=1e-12)
    assert math.isnan(category_orthogonality(x, [0, 0, 0]))


def test_orthogonality_is_mean_over_pairs():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((500, 3))
    x = np.stack([a[:, 0], a[:, 1], a[:, 0] + a[:, 1] + a[:, 2]], 1)
    r = np.abs(np.corrcoef(x, rowvar=False))
    assert category_orthogonality(x, [0, 1, 2]) == pytest.approx((r[0, 1] + r[0, 2] + r[1, 2]) / 3, abs=1e-12)


def test_reported_orthogonality_is_the_shared_implementation():
    assert metrics.category_orthogonality is category_orthogonality
    x, names, _ = planted(groups=(6, 7, 5, 8), noise=0.5)
    cats = discover_categories(x, names, 4)
    assert cats.orthogonality == pytest.approx(category_orthogonality(x, cats.assignment), abs=1e-12)
    assert cats.orthogonality < 0.1 and cats.meets_orthogonality(0.15) and not cats.meets_orthogonality(0.0)


def test_orthogonality_bad_assignment():
    x = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match=r"assignment must be \[F\] with F = 3 columns, got shape \(2,\)"):
        category_orthogonality(x, [0, 1])
    with pytest.raises(ValueError, match=r"assignment must hold integers, got dtype float64"):
        category_orthogonality(x, [0.0, 1.0, 1.0])


# ----------------------------------------------------------------------------- record


def test_json_round_trip_is_strict():
    x, names = _pair_case()
    cats = discover_categories(x, names, 4)
    text = cats.to_json()
    d = json.loads(text)
    assert d["silhouette"]["k"] == [2, 3, 4, 5, 6]
    assert d["categories"][1][-2:] == ["pair_a", "pair_b"] and d["sizes"] == [6, 8, 6]
    back = Categories.from_json(text)
    assert np.array_equal(back.assignment, cats.assignment) and back.names == cats.names
    assert back.to_json() == text
    one = discover_categories(x[:, :2], names[:2], 2)
    d = json.loads(one.to_json())  # NaN must not leak into the file
    assert d["orthogonality"] is None and d["silhouette"]["value"] == [None] * 5
    assert math.isnan(Categories.from_json(one.to_json()).orthogonality)


def test_from_dict_rejects_bad_records():
    x, names = _pair_case()
    d = discover_categories(x, names, 4).to_dict()
    with pytest.raises(ValueError, match=r"not a categories record: format 'other'"):
        Categories.from_dict({**d, "format": "other"})
    with pytest.raises(ValueError, match=r"categories record version 99, this code reads 1"):
        Categories.from_dict({**d, "version": 99})
    with pytest.raises(ValueError, match=r"sizes \[6, 6, 8\] disagree with the assignment"):
        Categories.from_dict({**d, "sizes": [6, 6, 8]})
    with pytest.raises(ValueError, match=r"numbered in the order of their first column"):
        swapped = [{0: 1, 1: 0}.get(a, a) for a in d["assignment"]]
        Categories.from_dict({k: v for k, v in d.items() if k != "sizes"} | {"assignment": swapped})


# ----------------------------------------------------------------------------- codebook sizes


@pytest.mark.parametrize(
    "n, expect",
    [
        # base = floor(7 log2 n); K0 = max(15, 4 floor(base/4)), K1 = max(6, floor(base/2)), K2 = max(6, floor(base/4))
        (1, (15, 6, 6)),  # base 0
        (2, (15, 6, 6)),  # base 7
        (8, (20, 10, 6)),  # base 21 (exact power of two)
        (16, (28, 14, 7)),  # base 28 (exact)
        (15, (24, 13, 6)),  # 7 * 3.9069 = 27.35 -> 27
        (107, (44, 23, 11)),  # 7 * 6.7415 = 47.19 -> 47
        (334, (56, 29, 14)),  # 7 * 8.3837 = 58.69 -> 58
    ],
)
def test_codebook_sizes_reference_values(n, expect):
    assert codebook_sizes(n, scale=1) == expect
    assert codebook_sizes(n) == tuple(2 * k for k in expect)  # default scale 2
    assert codebook_sizes(n, scale=3) == tuple(3 * k for k in expect)


def test_codebook_size_overrides():
    assert codebook_sizes(107, overrides={0: 64}) == (64, 46, 22)
    assert codebook_sizes(107, overrides=[None, 32, 8]) == (88, 32, 8)
    x, names = _pair_case()
    cats = discover_categories(x, names, 4)
    assert cats.codebook_sizes(scale=1) == (codebook_sizes(6, 1), codebook_sizes(8, 1), codebook_sizes(6, 1))


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((0,), {}, r"n_features must be an integer >= 1, got 0"),
        ((10.0,), {}, r"n_features must be an integer >= 1, got 10.0"),
        ((10,), {"scale": 0}, r"scale must be an integer >= 1, got 0"),
        ((10,), {"overrides": {3: 8}}, r"override level must be 0, 1 or 2, got 3"),
        ((10,), {"overrides": {0: 1}}, r"override of level 0 must be an integer >= 2, got 1"),
        ((10,), {"overrides": [8, 8]}, r"overrides as a sequence needs 3 entries"),
        ((10,), {"overrides": "8"}, r"overrides must be a mapping"),
    ],
)
def test_codebook_sizes_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        codebook_sizes(*args, **kwargs)


def test_codebook_sizes_agree_with_the_config_rule():
    # the tokenizer config carries its own copy of SPEC 9's rule; the two must not drift apart
    config = pytest.importorskip("spinlock_core.config.tokenizer")
    rule = getattr(config, "auto_codebook_sizes", None)
    if rule is None:
        pytest.skip("the config no longer has its own copy of the rule")
    for n in range(1, 401):
        for s in (1, 2, 3):
            assert codebook_sizes(n, s) == tuple(rule(n, s))
