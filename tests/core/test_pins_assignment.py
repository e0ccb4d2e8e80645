"""Label assignment pinned by hand: the balance tolerance (1 percentage point, or 3 counts for small
n) and the Kronecker assignment ``frac(s + i / phi)`` against its cumulative-weight intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinlock_core.sampling import assign_labels, balance_tolerance
from spinlock_core.seeding import numpy_generator


@pytest.mark.parametrize(
    ("n", "want"),
    [(1, 3.0), (2, 1.5), (3, 1.0), (150, 0.02), (299, 3.0 / 299), (300, 0.01), (301, 0.01), (10_000, 0.01)],
)
def test_balance_tolerance_is_one_point_or_three_counts(n, want):
    assert balance_tolerance(n) == pytest.approx(want, rel=1e-15, abs=0)


@pytest.mark.parametrize("n", [0, -1, -7])
def test_balance_tolerance_rejects_a_non_positive_count(n):
    with pytest.raises(ValueError, match=rf"^n must be positive, got {n}$"):
        balance_tolerance(n)


def _reference_labels(weights: dict[str, float], indices, seed: int) -> list[str]:
    s = numpy_generator(seed, "ic_type").random()
    phi_inv = (math.sqrt(5.0) - 1.0) / 2.0
    names, out = list(weights), []
    for i in indices:
        u = (s + math.fmod(i * phi_inv, 1.0)) % 1.0
        acc = 0.0
        for j, name in enumerate(names):
            acc += weights[name]
            if u < acc or j == len(names) - 1:
                out.append(name)
                break
    return out


@pytest.mark.parametrize("seed", [0, 11])
def test_assign_labels_follows_the_golden_ratio_sequence(seed):
    w = {"a": 0.5, "b": 0.25, "c": 0.25}
    idx = np.arange(0, 200, 3)
    got = assign_labels(w, idx, seed=seed)
    assert got.dtype == object and got.shape == idx.shape
    assert got.tolist() == _reference_labels(w, idx.tolist(), seed)
    # an index keeps its label whatever else is assigned with it
    assert assign_labels(w, idx[5:7], seed=seed).tolist() == got[5:7].tolist()


def test_assign_labels_zero_weight_label_is_never_drawn_and_last_interval_is_closed():
    w = {"a": 0.3, "never": 0.0, "b": 0.7}
    got = assign_labels(w, np.arange(500), seed=2)
    assert set(got.tolist()) == {"a", "b"}
    assert abs((got == "a").mean() - 0.3) <= balance_tolerance(500)


@pytest.mark.parametrize(
    ("weights", "indices", "match"),
    [
        ({}, [0], r"^weights must not be empty$"),
        ({"a": 0.5, "b": 0.6}, [0], r"^weights must be non-negative and sum to 1, got \{'a': .*0\.5.*'b': .*0\.6"),
        ({"a": -0.5, "b": 1.5}, [0], r"weights must be non-negative and sum to 1, got \{'a': .*-0\.5"),
        ({"a": 1.0}, [0, -1], r"^indices must be non-negative$"),
    ],
)
def test_assign_labels_errors(weights, indices, match):
    with pytest.raises(ValueError, match=match):
        assign_labels(weights, np.asarray(indices), seed=0)


def test_assign_labels_accepts_a_sum_within_1e_6():
    assert assign_labels({"a": 0.5, "b": 0.5 + 5e-7}, np.arange(3), seed=0).shape == (3,)


def test_assign_labels_intervals_are_closed_on_the_left():
    """Label k owns [cum_{k-1}, cum_k): a point exactly on a boundary belongs to the next label."""
    seed, i = 4, 6
    u = (numpy_generator(seed, "ic_type").random() + math.fmod(i * (math.sqrt(5.0) - 1.0) / 2.0, 1.0)) % 1.0
    w = {"a": u, "b": 1.0 - u}
    assert assign_labels(w, np.array([i]), seed=seed).tolist() == ["b"]
    assert assign_labels({"a": np.nextafter(u, 2.0), "b": 1.0 - u}, np.array([i]), seed=seed).tolist() == ["a"]
