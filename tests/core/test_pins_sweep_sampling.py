"""Pins for the seeding scheme and the sample-quality metrics, against independent references.

``spinlock_core.seeding``: every stream is numpy's ``SeedSequence([root, stage number, *index])``,
recomputed here from the stage numbers written out by hand; ``seed_int`` is the first uint64 word
of that sequence with its top bit cleared; unknown stages and negative components are refused with
messages that name them.

``spinlock_core.sampling.quality``: the squared centred L2 discrepancy of small point sets against
Hickernell's closed form (and scipy's ``method="CD"``), one-point and two-point sets, the i.i.d.
expectation by hand, the power-of-two prefix rule at its boundaries (large ``N`` measured through a
stand-in for scipy's O(N^2) discrepancy, so no test computes a large one), shard blocks, Pearson
correlation with constant columns and too few points, stratum counts with the value 1.0 clipped
into the last stratum, every validation message word for word, and every verdict threshold exactly
at its boundary.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import pytest
from scipy.stats import qmc

from spinlock_core.sampling.quality import (
    BlockDiscrepancy,
    SamplingQuality,
    discrepancy_prefix_length,
    iid_discrepancy,
    quality_verdicts,
    sample_quality_for,
    sampling_quality,
)
from spinlock_core.seeding import STAGES, numpy_generator, seed_int, seed_sequence, torch_generator

#: the stage numbers, written out by hand: changing one changes every dataset
STAGE_NUMBERS = {"sobol": 1, "ic_type": 2, "ic": 3, "operator": 4, "noise": 5, "subsample": 6,
                 "sensitivity": 7, "split": 8, "tokenizer": 9}
MASK63 = (1 << 63) - 1

# (root, stage, *index) cases: together they hit states with bit 63 set and with bit 0 set
SEED_CASES = [(42, "operator", 17), (0, "sobol"), (7, "ic", 0, 3), (123456789, "tokenizer", 1, 2),
              (1, "noise", 5), (3, "split"), (99, "sensitivity", 2**40), (5, "subsample", 0)]


def _ref_sequence(root: int, stage: str, *index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([root, STAGE_NUMBERS[stage], *index])


def _ref_state64(root: int, stage: str, *index: int) -> int:
    return int(_ref_sequence(root, stage, *index).generate_state(1, dtype=np.uint64)[0])


# ---- seeding ------------------------------------------------------------------------------------


def test_stage_numbers_are_fixed():
    """The stage name -> number table, append-only."""
    assert STAGES == STAGE_NUMBERS


@pytest.mark.parametrize("case", SEED_CASES)
def test_seed_sequence_is_root_stage_number_then_index(case):
    """The entropy is ``[root, stage number, *index]`` and the words are numpy's for it."""
    root, stage, *index = case
    ss = seed_sequence(root, stage, *index)
    assert isinstance(ss, np.random.SeedSequence)
    assert list(np.atleast_1d(ss.entropy)) == [root, STAGE_NUMBERS[stage], *index]
    np.testing.assert_array_equal(ss.generate_state(4), _ref_sequence(root, stage, *index).generate_state(4))


def test_seed_sequence_accepts_zero_and_numpy_integers():
    """Zero is a valid root and index (only negatives are refused); numpy integers are int()-ed."""
    np.testing.assert_array_equal(seed_sequence(0, "sobol", 0).generate_state(2),
                                  np.random.SeedSequence([0, 1, 0]).generate_state(2))
    np.testing.assert_array_equal(seed_sequence(np.int64(4), "ic", np.uint32(9)).generate_state(2),
                                  np.random.SeedSequence([4, 3, 9]).generate_state(2))


def test_seed_sequence_refusals_name_the_problem():
    """Unknown stage: the name and the known ones; negative root or index: the whole entropy list."""
    with pytest.raises(ValueError, match=r"^unknown seeding stage 'nois'; known: \['ic', 'ic_type', 'noise', "
                                         r"'operator', 'sensitivity', 'sobol', 'split', 'subsample', 'tokenizer'\]$"):
        seed_sequence(1, "nois", 0)
    with pytest.raises(ValueError, match=r"^seed components must be non-negative, got \[-1, 3, 2\]$"):
        seed_sequence(-1, "ic", 2)
    with pytest.raises(ValueError, match=r"^seed components must be non-negative, got \[5, 4, 0, -2\]$"):
        seed_sequence(5, "operator", 0, -2)


@pytest.mark.parametrize("case", SEED_CASES)
def test_seed_int_is_the_first_uint64_word_without_its_top_bit(case):
    """``seed_int`` = first uint64 word of the sequence & (2^63 - 1), recomputed from numpy."""
    root, stage, *index = case
    want = _ref_state64(root, stage, *index) & MASK63
    got = seed_int(root, stage, *index)
    assert type(got) is int and got == want and 0 <= got < 2**63


def test_seed_cases_cover_the_top_and_the_low_bit():
    """The cases above are a real test of the mask: some raw words have bit 63 set (cleared by
    ``seed_int``) and some have bit 0 set (kept)."""
    raw = [_ref_state64(r, s, *i) for r, s, *i in SEED_CASES]
    assert any(w >> 63 for w in raw) and any(w & 1 for w in raw)
    for (r, s, *i), w in zip(SEED_CASES, raw):
        assert seed_int(r, s, *i) == w - (1 << 63 if w >> 63 else 0)


def test_numpy_generator_is_pcg64_on_the_sequence():
    """Same draws and the same PCG64 state as ``Generator(PCG64(SeedSequence(...)))``, index included."""
    for root, stage, *index in [(42, "ic", 17), (3, "split"), (8, "noise", 2, 5)]:
        got = numpy_generator(root, stage, *index)
        ref = np.random.Generator(np.random.PCG64(_ref_sequence(root, stage, *index)))
        assert got.bit_generator.state == ref.bit_generator.state
        np.testing.assert_array_equal(got.integers(0, 2**62, size=5), ref.integers(0, 2**62, size=5))


def test_torch_generator_is_seeded_with_seed_int_on_the_cpu_by_default():
    """A CPU generator (the default device) whose seed is the 63-bit word of the sequence."""
    import torch

    g = torch_generator(42, "operator", 17)
    assert g.device == torch.device("cpu")
    assert g.initial_seed() == _ref_state64(42, "operator", 17) & MASK63
    g2 = torch_generator(5, "tokenizer", 1, 2, device="cpu")
    assert g2.initial_seed() == _ref_state64(5, "tokenizer", 1, 2) & MASK63
    want = torch.rand(3, generator=torch.Generator().manual_seed(_ref_state64(5, "tokenizer", 1, 2) & MASK63))
    assert torch.equal(torch.rand(3, generator=g2), want)


# ---- i.i.d. expectation and prefix length --------------------------------------------------------


def test_iid_discrepancy_by_hand():
    """((5/4)^P - (13/12)^P) / n: P = 1 gives 1/6, P = 2 gives 56/144 = 7/18."""
    assert iid_discrepancy(1, 1) == pytest.approx(1 / 6, rel=1e-14)
    assert iid_discrepancy(3, 1) == pytest.approx(1 / 18, rel=1e-14)
    assert iid_discrepancy(3, 2) == pytest.approx(7 / 54, rel=1e-14)
    assert iid_discrepancy(10, 5) == pytest.approx((3125 / 1024 - 371293 / 248832) / 10, rel=1e-14)


def test_iid_discrepancy_refuses_empty_sets():
    """n < 1 or dim < 1 is refused, naming both."""
    with pytest.raises(ValueError, match=r"^n and dim must be >= 1, got n=0, dim=1$"):
        iid_discrepancy(0, 1)
    with pytest.raises(ValueError, match=r"^n and dim must be >= 1, got n=1, dim=0$"):
        iid_discrepancy(1, 0)


@pytest.mark.parametrize(("n", "cap", "want"), [(1, 1, 1), (3, 1, 1), (12, 12, 12), (11, 12, 11), (13, 12, 8),
                                                (100, 64, 64), (1000, 600, 512), (16385, 16384, 16384),
                                                (16384, 16384, 16384), (5, 2, 2), (5, 3, 2)])
def test_discrepancy_prefix_length(n, cap, want):
    """All ``n`` points up to the cap (inclusive), else the largest power of two <= the cap."""
    assert discrepancy_prefix_length(n, cap) == want


def test_discrepancy_prefix_length_refusals():
    """n < 1 or max_points < 1 is refused, naming both."""
    with pytest.raises(ValueError, match=r"^n and max_points must be >= 1, got n=0, max_points=5$"):
        discrepancy_prefix_length(0, 5)
    with pytest.raises(ValueError, match=r"^n and max_points must be >= 1, got n=4, max_points=0$"):
        discrepancy_prefix_length(4, 0)


# ---- the centred L2 discrepancy ------------------------------------------------------------------


def _cd2_hickernell(x: np.ndarray) -> float:
    """Hickernell (1998) closed form of the squared centred L2 discrepancy of ``x [n, d]``."""
    n, d = x.shape
    a = np.abs(x - 0.5)
    t1 = (13 / 12) ** d
    t2 = np.prod(1 + 0.5 * a - 0.5 * a**2, axis=1).sum() * 2 / n
    pair = 1 + 0.5 * a[:, None, :] + 0.5 * a[None, :, :] - 0.5 * np.abs(x[:, None, :] - x[None, :, :])
    t3 = np.prod(pair, axis=2).sum() / n**2
    return float(t1 - t2 + t3)


# [6, 3]: two 1.0 values (clipped into the last stratum), no constant column
UNIT = np.array([[0.05, 0.90, 0.30],
                 [0.20, 0.10, 0.35],
                 [0.40, 0.55, 1.00],
                 [0.60, 0.30, 0.70],
                 [0.80, 0.75, 0.10],
                 [1.00, 0.40, 0.62]])


def test_small_sample_every_field_by_hand():
    """[6, 3], 3 strata: discrepancy (closed form and scipy), its i.i.d. expectation and ratio,
    Pearson correlation off the diagonal, and the stratum counts (1.0 counts in the last one)."""
    q = sampling_quality(UNIT, num_strata=3)
    cd = _cd2_hickernell(UNIT)
    assert q.discrepancy == pytest.approx(cd, rel=1e-12)
    assert q.discrepancy == pytest.approx(qmc.discrepancy(UNIT, method="CD"), rel=1e-12)
    assert (q.n, q.dim, q.discrepancy_n, q.num_strata, q.block_size, q.blocks) == (6, 3, 6, 3, 0, [])
    iid = ((5 / 4) ** 3 - (13 / 12) ** 3) / 6
    assert q.discrepancy_iid == pytest.approx(iid, rel=1e-14)
    assert q.discrepancy_ratio == pytest.approx(cd / iid, rel=1e-12)
    z = (UNIT - UNIT.mean(0)) / UNIT.std(0)
    corr = z.T @ z / 6
    off = np.abs([corr[0, 1], corr[0, 2], corr[1, 2]])
    assert q.max_abs_correlation == pytest.approx(off.max(), rel=1e-12)
    assert q.mean_abs_correlation == pytest.approx(off.mean(), rel=1e-12)
    # strata [0, 1/3), [1/3, 2/3), [2/3, 1]: column 0 -> 2, 2, 2; column 1 -> 2, 2, 2; column 2 -> 2, 2, 2
    assert q.min_stratum_count_per_dim == [2, 2, 2] and q.min_stratum_count == 2
    assert all(type(c) is int for c in q.min_stratum_count_per_dim) and type(q.min_stratum_count) is int


def test_discrepancy_of_scipys_documented_example():
    """[6, 2] Latin square (scipy's ``qmc.discrepancy`` docstring): CD^2 = 0.008142039609053464."""
    space = (np.array([[1, 3], [2, 6], [3, 2], [4, 5], [5, 1], [6, 4]]) - 0.5) / 6
    q = sampling_quality(space, num_strata=6)
    assert q.discrepancy == pytest.approx(0.008142039609053464, rel=1e-12)
    assert q.discrepancy == pytest.approx(_cd2_hickernell(space), rel=1e-12)
    assert q.min_stratum_count_per_dim == [1, 1]  # a Latin square: one point per stratum per axis


def test_stratum_counts_per_dimension_by_hand():
    """[5, 2], 5 strata: column 0 holds one point per stratum (1.0 in the last), column 1 none in
    the top two strata; the default is 5 strata."""
    x = np.array([[0.1, 0.05], [0.3, 0.15], [0.5, 0.25], [0.7, 0.35], [1.0, 0.45]])
    q = sampling_quality(x)
    assert q.num_strata == 5
    assert q.min_stratum_count_per_dim == [1, 0] and q.min_stratum_count == 0
    q4 = sampling_quality(x[:, :1], num_strata=4)  # strata of 1/4: 0.1 | 0.3 | 0.5, 0.7 | 1.0
    assert q4.min_stratum_count_per_dim == [1]
    q1 = sampling_quality(x, num_strata=1)  # one stratum holds every point
    assert (q1.num_strata, q1.min_stratum_count_per_dim, q1.min_stratum_count) == (1, [5, 5], 5)


def test_strata_are_counted_in_float64_whatever_the_input_dtype():
    """A float16 value just below 1/5 is in stratum 0 (x * 5 = 0.99976 in float64, 1.0 in float16)."""
    x16 = np.array([[0.1999511719], [0.3], [0.5], [0.7], [0.9]], dtype=np.float16)
    assert float(x16[0, 0]) * 5 < 1
    q = sampling_quality(x16)
    assert q.min_stratum_count_per_dim == [1]  # strata 0, 1, 2, 3, 4: one point each


def test_one_point_and_two_points():
    """One point: CD^2 (and its ratio) is 0 by definition, correlation 0. Two points: CD^2 is the
    closed form, correlation still 0 (Pearson needs more than two points)."""
    one = sampling_quality([[0.3, 0.8]], num_strata=2)
    assert (one.n, one.dim, one.discrepancy_n) == (1, 2, 1)
    assert one.discrepancy == 0.0 and one.discrepancy_ratio == 0.0
    assert one.discrepancy_iid == pytest.approx(7 / 18, rel=1e-14)
    assert one.max_abs_correlation == 0.0 and one.mean_abs_correlation == 0.0
    assert one.min_stratum_count_per_dim == [0, 0]
    two = np.array([[0.1, 0.2], [0.7, 0.9]])  # [2, 2]: perfectly correlated, but too few points
    q = sampling_quality(two)
    assert q.discrepancy == pytest.approx(_cd2_hickernell(two), rel=1e-12) and q.discrepancy > 0
    assert q.discrepancy_ratio == pytest.approx(_cd2_hickernell(two) / (7 / 36), rel=1e-12)
    assert q.max_abs_correlation == 0.0 and q.mean_abs_correlation == 0.0


def test_correlation_from_three_points_and_two_columns():
    """[3, 2]: three points are enough; two columns are enough (off-diagonal = the one pair)."""
    x = np.array([[0.1, 0.3], [0.5, 0.4], [0.9, 0.95]])
    r = np.corrcoef(x[:, 0], x[:, 1])[0, 1]
    q = sampling_quality(x)
    assert r > 0.9
    assert q.max_abs_correlation == pytest.approx(r, rel=1e-12)
    assert q.mean_abs_correlation == pytest.approx(r, rel=1e-12)


def test_correlation_of_one_column_is_zero():
    """[5, 1]: no pair of columns, no correlation."""
    q = sampling_quality(np.array([[0.1], [0.4], [0.2], [0.9], [0.6]]))
    assert q.max_abs_correlation == 0.0 and q.mean_abs_correlation == 0.0


def test_constant_columns_count_as_uncorrelated():
    """[5, 3] with column 1 constant: its pairs are 0, the other pair is Pearson's r;
    the mean runs over all 6 off-diagonal entries. One varying column alone: all 0."""
    a = np.array([0.1, 0.4, 0.2, 0.9, 0.6])
    b = np.array([0.3, 0.5, 0.1, 0.8, 0.95])
    x = np.stack([a, np.full(5, 0.5), b], axis=1)
    r = abs(np.corrcoef(a, b)[0, 1])
    q = sampling_quality(x)
    assert r > 0.5
    assert q.max_abs_correlation == pytest.approx(r, rel=1e-12)
    assert q.mean_abs_correlation == pytest.approx(2 * r / 6, rel=1e-12)
    q1 = sampling_quality(np.stack([a, np.full(5, 0.5), np.full(5, 0.25)], axis=1))
    assert q1.max_abs_correlation == 0.0 and q1.mean_abs_correlation == 0.0


def test_uncorrelated_columns_report_zero_not_the_diagonal():
    """[4, 2] with exactly uncorrelated columns: 0, not the diagonal's 1."""
    x = np.array([[0.1, 0.1], [0.1, 0.9], [0.9, 0.1], [0.9, 0.9]])
    q = sampling_quality(x)
    assert q.max_abs_correlation == pytest.approx(0.0, abs=1e-12)
    assert q.mean_abs_correlation == pytest.approx(0.0, abs=1e-12)


def test_discrepancy_cap_of_two_points_and_shard_blocks():
    """[7, 2], cap 2, blocks of 3: the prefix is the first 2 points; blocks [0, 3), [3, 6), [6, 7)
    each measured on their first min(len, 2) points against the i.i.d. expectation of that many."""
    x = np.array([[0.1, 0.6], [0.8, 0.3], [0.45, 0.9], [0.2, 0.2], [0.65, 0.7], [0.9, 0.05], [0.35, 0.4]])
    q = sampling_quality(x, max_points=2, block_size=3)
    assert (q.n, q.discrepancy_n, q.block_size) == (7, 2, 3)
    assert q.discrepancy == pytest.approx(_cd2_hickernell(x[:2]), rel=1e-12)
    assert q.discrepancy_iid == pytest.approx(7 / 36, rel=1e-14)
    assert [(b.start, b.n) for b in q.blocks] == [(0, 3), (3, 3), (6, 1)]
    assert all(type(b) is BlockDiscrepancy for b in q.blocks)
    for b, rows in zip(q.blocks[:2], (x[0:2], x[3:5])):
        assert b.discrepancy == pytest.approx(_cd2_hickernell(rows), rel=1e-12)
        assert b.ratio == pytest.approx(_cd2_hickernell(rows) / (7 / 36), rel=1e-12)
    assert q.blocks[2].discrepancy == 0.0 and q.blocks[2].ratio == 0.0


def test_blocks_of_one_point_and_blocks_that_fit_under_the_cap():
    """Blocks of 1: one block per point, each CD^2 0. Blocks of 4 under the cap: whole blocks."""
    x = UNIT[:, :2]
    q1 = sampling_quality(x, block_size=1)
    assert q1.block_size == 1 and [(b.start, b.n, b.discrepancy, b.ratio) for b in q1.blocks] == [
        (i, 1, 0.0, 0.0) for i in range(6)]
    q4 = sampling_quality(x, block_size=4)
    assert [(b.start, b.n) for b in q4.blocks] == [(0, 4), (4, 2)]
    assert q4.blocks[0].discrepancy == pytest.approx(_cd2_hickernell(x[:4]), rel=1e-12)
    assert q4.blocks[0].ratio == pytest.approx(_cd2_hickernell(x[:4]) / (7 / 72), rel=1e-12)
    assert q4.blocks[1].discrepancy == pytest.approx(_cd2_hickernell(x[4:]), rel=1e-12)
    assert q4.blocks[1].ratio == pytest.approx(_cd2_hickernell(x[4:]) / (7 / 36), rel=1e-12)


def test_as_dict_is_the_fields_with_blocks_as_dicts():
    """as_dict() is every field by name, blocks as dicts ([4, 2], 2 strata, blocks of 3)."""
    q = sampling_quality(UNIT[:4, :2], num_strata=2, block_size=3)
    d = q.as_dict()
    assert d == {"n": 4, "dim": 2, "discrepancy": q.discrepancy, "discrepancy_n": 4, "discrepancy_iid": q.discrepancy_iid,
                 "discrepancy_ratio": q.discrepancy_ratio, "max_abs_correlation": q.max_abs_correlation,
                 "mean_abs_correlation": q.mean_abs_correlation, "num_strata": 2, "min_stratum_count": 1,
                 "min_stratum_count_per_dim": [1, 2], "block_size": 3,
                 "blocks": [{"start": 0, "n": 3, "discrepancy": q.blocks[0].discrepancy, "ratio": q.blocks[0].ratio},
                            {"start": 3, "n": 1, "discrepancy": 0.0, "ratio": 0.0}]}
    assert d["discrepancy"] == pytest.approx(_cd2_hickernell(UNIT[:4, :2]), rel=1e-12)


def test_sampling_quality_refusals_name_the_field_and_value():
    """Each refusal names the field and the value given (the shape for the sample)."""
    with pytest.raises(ValueError, match=r"^unit sample must be \[N, P\] with N >= 1, got shape \(5,\)$"):
        sampling_quality(np.linspace(0.1, 0.9, 5))
    with pytest.raises(ValueError, match=r"^unit sample must be \[N, P\] with N >= 1, got shape \(0, 3\)$"):
        sampling_quality(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"^unit sample must be \[N, P\] with N >= 1, got shape \(2, 2, 2\)$"):
        sampling_quality(np.full((2, 2, 2), 0.5))
    with pytest.raises(ValueError, match=r"^num_strata must be >= 1, got 0$"):
        sampling_quality(UNIT, num_strata=0)
    with pytest.raises(ValueError, match=r"^max_points must be >= 2, got 1$"):
        sampling_quality(UNIT, max_points=1)
    with pytest.raises(ValueError, match=r"^block_size must be >= 0, got -1$"):
        sampling_quality(UNIT, block_size=-1)


# ---- what is handed to scipy (a stand-in records the calls; no large discrepancy is computed) -----


@pytest.fixture
def cd_calls(monkeypatch):
    """Replace scipy's discrepancy by a recorder returning 0.25 for every set."""
    calls = []

    def fake(x, *, iterative=False, method="CD", workers=1):
        calls.append((np.asarray(x).copy(), method, workers))
        return 0.25

    monkeypatch.setattr(qmc, "discrepancy", fake)
    return calls


def test_default_cap_is_16384_points_and_default_workers_is_one(cd_calls):
    """16,385 points [N, 1] with the defaults: the first 16,384 (2^14) are measured, method CD,
    one worker; 5 strata of 3,277 points; no blocks."""
    x = ((np.arange(16385) + 0.5) / 16385)[:, None]
    q = sampling_quality(x)
    assert len(cd_calls) == 1
    pts, method, workers = cd_calls[0]
    assert pts.shape == (16384, 1) and np.array_equal(pts, x[:16384]) and method == "CD" and workers == 1
    assert (q.discrepancy_n, q.discrepancy) == (16384, 0.25)
    assert q.discrepancy_ratio == pytest.approx(0.25 / ((5 / 4 - 13 / 12) / 16384), rel=1e-12)
    assert (q.num_strata, q.min_stratum_count_per_dim, q.block_size, q.blocks) == (5, [3277], 0, [])
    cd_calls.clear()
    assert sampling_quality(x[:16384]).discrepancy_n == 16384 and cd_calls[0][0].shape == (16384, 1)


def test_workers_reach_scipy_for_the_prefix_and_every_block(cd_calls):
    """``workers`` is passed to scipy for the prefix and for each block ([6, 2], blocks of 4)."""
    x = UNIT[:, :2]
    q = sampling_quality(x, block_size=4, workers=3)
    assert [(len(p), m, w) for p, m, w in cd_calls] == [(6, "CD", 3), (4, "CD", 3), (2, "CD", 3)]
    np.testing.assert_array_equal(cd_calls[1][0], x[:4])
    np.testing.assert_array_equal(cd_calls[2][0], x[4:])
    assert [b.discrepancy for b in q.blocks] == [0.25, 0.25]
    assert q.blocks[0].ratio == pytest.approx(0.25 / (7 / 72), rel=1e-12)


def _quality_cfg(points: int, strata: int, shard: int, shards: int):
    return NS(sampling=NS(validation=NS(discrepancy_points=points), stratification=NS(num_strata_per_dim=strata)),
              dataset=NS(storage=NS(shard_size=shard)), num_shards=shards)


def test_sample_quality_for_uses_every_core(cd_calls):
    """The experiment's quality run asks scipy for all cores (workers=-1), for prefix and blocks."""
    unit = UNIT[:, :2]
    q = sample_quality_for(unit, _quality_cfg(4, 3, 4, 2))
    assert [(len(p), m, w) for p, m, w in cd_calls] == [(4, "CD", -1), (4, "CD", -1), (2, "CD", -1)]
    assert (q.discrepancy_n, q.num_strata, q.block_size) == (4, 3, 4)
    assert [(b.start, b.n) for b in q.blocks] == [(0, 4), (4, 2)]


# ---- verdicts -----------------------------------------------------------------------------------


def _verdict_cfg(*, max_disc=0.02, min_points=128, max_ratio=0.5, max_corr=0.25, min_per_stratum=3, strata=4,
                 disc=True, corr=True, strat=True):
    v = NS(check_discrepancy=disc, check_correlation=corr, check_stratification=strat, max_discrepancy=max_disc,
           discrepancy_min_points=min_points, max_discrepancy_ratio=max_ratio, max_correlation=max_corr)
    return NS(sampling=NS(validation=v, stratification=NS(min_samples_per_stratum=min_per_stratum,
                                                           num_strata_per_dim=strata)))


def _q(*, disc=0.0125, disc_n=128, iid=0.05, ratio=0.5, corr=0.1, min_count=3, blocks=()):
    return SamplingQuality(n=300, dim=3, discrepancy=disc, discrepancy_n=disc_n, discrepancy_iid=iid,
                           discrepancy_ratio=ratio, max_abs_correlation=corr, mean_abs_correlation=corr / 2,
                           num_strata=4, min_stratum_count=min_count, min_stratum_count_per_dim=[min_count, 5, 6],
                           block_size=128 if blocks else 0, blocks=list(blocks))


def test_verdicts_pass_exactly_at_the_inclusive_thresholds():
    """Prefix and block ratio equal to max_discrepancy_ratio pass; sets of exactly
    discrepancy_min_points are judged (and give the worst block); a short block above the ratio is
    not judged; stratification passes with exactly min_samples_per_stratum points."""
    blocks = [BlockDiscrepancy(0, 128, 0.01, 0.2), BlockDiscrepancy(128, 128, 0.025, 0.5),
              BlockDiscrepancy(256, 44, 0.9, 0.99)]
    out = quality_verdicts(_q(blocks=blocks), _verdict_cfg())
    assert out == {
        "discrepancy": (True, "CD^2 0.0125 on the first 128 points = 0.500 x i.i.d. (0.05); worst shard block ratio 0.500"),
        "correlation": (True, "max |corr| 0.1 vs threshold 0.25"),
        "stratification": (True, "min stratum count 3 vs required 3 (4 strata per dimension)"),
    }


def test_verdicts_fail_exactly_at_the_exclusive_thresholds():
    """CD^2 equal to max_discrepancy fails, and so does a correlation equal to max_correlation;
    one point short of min_samples_per_stratum fails."""
    out = quality_verdicts(_q(disc=0.02, ratio=0.25, corr=0.25, min_count=2), _verdict_cfg())
    assert out == {
        "discrepancy": (False, "CD^2 0.02 >= max_discrepancy 0.02"),
        "correlation": (False, "max |corr| 0.25 vs threshold 0.25"),
        "stratification": (False, "min stratum count 2 vs required 3 (4 strata per dimension)"),
    }


def test_every_discrepancy_problem_is_listed_blocks_capped_at_ten():
    """All three problems joined by '; ': the bound, the prefix ratio, and the bad blocks (11 bad
    blocks of exactly discrepancy_min_points points, the first 10 listed)."""
    blocks = [BlockDiscrepancy(128 * i, 128, 0.03, 0.6) for i in range(11)]
    passed, reason = quality_verdicts(_q(disc=0.02, ratio=0.75, blocks=blocks), _verdict_cfg())["discrepancy"]
    listed = ", ".join(f"[{128 * i}, {128 * (i + 1)}) ratio 0.600" for i in range(10))
    assert passed is False
    assert reason == ("CD^2 0.02 >= max_discrepancy 0.02; "
                      "first 128 points: CD^2 is 0.750 x the i.i.d. expectation (max_discrepancy_ratio 0.5): "
                      "not a low-discrepancy sample; "
                      f"11 shard block(s) above max_discrepancy_ratio 0.5: {listed}")
    assert "[1280, 1408)" not in reason


def test_one_bad_block_alone_fails_with_its_bounds():
    """A judged block above the ratio fails the check alone, listed as [start, end) and its ratio."""
    blocks = [BlockDiscrepancy(0, 200, 0.01, 0.3), BlockDiscrepancy(200, 150, 0.04, 0.8123)]
    passed, reason = quality_verdicts(_q(disc=0.01, ratio=0.3, blocks=blocks), _verdict_cfg())["discrepancy"]
    assert (passed, reason) == (False, "1 shard block(s) above max_discrepancy_ratio 0.5: [200, 350) ratio 0.812")


def test_small_sets_are_reported_not_judged():
    """A prefix of fewer than discrepancy_min_points points above the ratio passes, and says so;
    blocks that are all short give no worst-block figure."""
    q = _q(disc=0.01, disc_n=24, iid=0.0125, ratio=0.8, blocks=[BlockDiscrepancy(0, 24, 0.01, 0.8)])
    passed, reason = quality_verdicts(q, _verdict_cfg())["discrepancy"]
    assert (passed, reason) == (True, "CD^2 0.01 on the first 24 points = 0.800 x i.i.d. (0.0125) "
                                      "(fewer than 128 points: ratio not judged)")
    passed, reason = quality_verdicts(_q(disc=0.01, disc_n=127, iid=0.0125, ratio=0.8), _verdict_cfg())["discrepancy"]
    assert (passed, reason) == (True, "CD^2 0.01 on the first 127 points = 0.800 x i.i.d. (0.0125) "
                                      "(fewer than 128 points: ratio not judged)")


def test_prefix_ratio_above_the_bound_fails_alone():
    """A judged prefix just above max_discrepancy_ratio fails (the figure is printed to 3 places)."""
    passed, reason = quality_verdicts(_q(ratio=0.5001), _verdict_cfg())["discrepancy"]
    assert (passed, reason) == (False, "first 128 points: CD^2 is 0.500 x the i.i.d. expectation "
                                       "(max_discrepancy_ratio 0.5): not a low-discrepancy sample")


def test_disabled_checks_are_absent():
    """A disabled check has no entry at all."""
    assert quality_verdicts(_q(), _verdict_cfg(disc=False, corr=False, strat=False)) == {}
    assert set(quality_verdicts(_q(), _verdict_cfg(corr=False))) == {"discrepancy", "stratification"}
    assert set(quality_verdicts(_q(), _verdict_cfg(disc=False, strat=False))) == {"correlation"}
