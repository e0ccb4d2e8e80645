"""Reference pins for the tokenizer metrics (SPEC 9) not covered by test_tokenizer_metrics.py.

Each metric is recomputed here on a small hand-made input, by hand where the arithmetic is short
and otherwise with an independent reference (numpy, scipy.stats.entropy, scikit-learn's own
adjusted_mutual_info_score), and the record's derived values (means, maxima, per-codebook rows,
JSON round trip) are checked against numbers worked out in the test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.metrics import adjusted_mutual_info_score

from spinlock_core.tokenizer.metrics import (
    METRICS_FORMAT,
    METRICS_VERSION,
    UTILIZATION_MIN_ROWS_PER_K0,
    TokenizerMetrics,
    adjusted_mutual_information,
    compute_tokenizer_metrics,
    level0_ami_per_category,
    mean_utilization,
    noise_ceiling,
    per_level_quality,
    perplexity,
    perplexity_per_codebook,
    quality,
    reconstruction_error,
    utilization,
    utilization_applies,
    utilization_per_codebook,
)

# ----------------------------------------------------------------------------- reconstruction


def test_reconstruction_error_is_float64_mse_of_any_shape():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    y = (x + rng.standard_normal(x.shape) * 1e-3).astype(np.float32)
    expect = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    got = reconstruction_error(x, y)
    assert isinstance(got, float)
    assert got == pytest.approx(expect, rel=1e-13)  # accumulated in float64, not float32
    assert quality(x, y) == pytest.approx(1.0 - expect, rel=1e-15)
    # tensors that require grad are detached first (np.asarray alone would refuse them)
    tx = torch.tensor([4.0, 0.0], dtype=torch.float64, requires_grad=True)
    assert reconstruction_error(tx, torch.ones(2, requires_grad=True)) == 5.0
    # hand case: errors 3 and -1 -> (9 + 1) / 2 = 5
    assert reconstruction_error([4.0, 0.0], [1.0, 1.0]) == 5.0
    assert quality([4.0, 0.0], [1.0, 1.0]) == -4.0


def test_reconstruction_error_rejections():
    with pytest.raises(ValueError, match=r"^x is empty$"):
        reconstruction_error(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"^reconstruction error is not finite \(NaN or inf in x or x_hat\)$"):
        reconstruction_error([0.0, np.inf], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"^x has shape \(3,\) but x_hat has shape \(1, 3\)$"):
        reconstruction_error(np.zeros(3), np.zeros((1, 3)))


def test_per_level_quality_is_a_tuple_of_qualities():
    x = np.array([[1.0, -1.0], [0.0, 2.0]])
    recs = [np.zeros((2, 2)), x + 0.5, x]
    # zeros: (1 + 1 + 0 + 4) / 4 = 1.5 -> -0.5; offset 0.5: 0.25 -> 0.75; exact: 1
    q = per_level_quality(x, recs)
    assert isinstance(q, tuple) and q == pytest.approx((-0.5, 0.75, 1.0), abs=1e-15)
    with pytest.raises(ValueError, match=r"x has shape \(2, 2\) but x_hat has shape \(2, 1\)"):
        per_level_quality(x, [x[:, :1]])
    with pytest.raises(ValueError, match=r"^reconstructions is empty: pass one per prefix of levels$"):
        per_level_quality(x, ())


# ----------------------------------------------------------------------------- utilization


def test_utilization_boundaries_and_input_kinds():
    assert utilization(np.array([0, 3]), 4) == 0.5  # the largest legal code is K - 1
    assert utilization(np.array([0]), 1) == 1.0  # a codebook of one
    assert utilization(np.array([2, 2, 2], dtype=np.int8), np.int64(8)) == 0.125
    assert utilization(torch.tensor([1, 5, 5, 1, 0]), 6) == 0.5
    with pytest.raises(ValueError, match=r"^indices range \[0, 4\] lies outside \[0, 4\): codes must be judged "
                                         r"against the size of the codebook that produced them$"):
        utilization(np.array([0, 4]), 4)
    with pytest.raises(ValueError, match=r"^indices must hold integers, got dtype float32$"):
        utilization(np.array([0.0, 1.0], dtype=np.float32), 4)
    with pytest.raises(ValueError, match=r"^indices must be 1-D \[N\], got shape \(2, 2\)$"):
        utilization(np.zeros((2, 2), dtype=np.int64), 4)
    with pytest.raises(ValueError, match=r"^codebook_size must be an integer >= 1, got True$"):
        utilization(np.array([0]), True)
    with pytest.raises(ValueError, match=r"^codebook_size must be an integer >= 1, got 4.0$"):
        utilization(np.array([0]), 4.0)
    with pytest.raises(ValueError, match=r"^codebook_size must be an integer >= 1, got -2$"):
        utilization(np.array([0]), -2)


def test_utilization_per_codebook_against_hand_counts():
    tokens = torch.tensor([[0, 2, 5], [0, 1, 5], [1, 2, 5], [0, 0, 9]])
    sizes = np.array([2, 3, 10])
    per = utilization_per_codebook(tokens, sizes)
    assert per.dtype == np.float64 and per.tolist() == [2 / 2, 3 / 3, 2 / 10]
    assert isinstance(mean_utilization(tokens, sizes), float)
    assert mean_utilization(tokens, sizes) == pytest.approx((1.0 + 1.0 + 0.2) / 3, rel=1e-15)


def test_token_table_rejections():
    with pytest.raises(ValueError, match=r"^tokens must be 2-D \[N, C \* L\], got shape \(4,\)$"):
        utilization_per_codebook(np.zeros(4, dtype=np.int64), [4])
    with pytest.raises(ValueError, match=r"^sizes must list one codebook size per token column \(2\), got shape \(1, 2\)$"):
        perplexity_per_codebook(np.zeros((3, 2), dtype=np.int64), [[4, 4]])
    with pytest.raises(ValueError, match=r"^sizes must be integers, got dtype float64$"):
        perplexity_per_codebook(np.zeros((3, 2), dtype=np.int64), [4.0, 4.0])


def test_utilization_applies_argument_kinds():
    assert UTILIZATION_MIN_ROWS_PER_K0 == 5
    assert utilization_applies(np.int64(20), 4) and not utilization_applies(19, np.int32(4))
    assert utilization_applies(25, (5, 2, 3)) and not utilization_applies(24, (2, 5, 3))
    assert utilization_applies(10, torch.tensor([2, 1]))
    assert utilization_applies(5, 1) and not utilization_applies(4, 1)
    with pytest.raises(ValueError, match=r"^n_rows must be an integer >= 0, got True$"):
        utilization_applies(True, 1)
    with pytest.raises(ValueError, match=r"^n_rows must be an integer >= 0, got 10.0$"):
        utilization_applies(10.0, 1)
    with pytest.raises(ValueError, match=r"^k0 must be one or more integer codebook sizes >= 1, got \[\]$"):
        utilization_applies(10, [])
    with pytest.raises(ValueError, match=r"^k0 must be one or more integer codebook sizes >= 1, got 4.0$"):
        utilization_applies(10, 4.0)
    with pytest.raises(ValueError, match=r"^k0 must be one or more integer codebook sizes >= 1, got \[3, 0\]$"):
        utilization_applies(10, [3, 0])
    assert utilization_applies(0, 1) is False


# ----------------------------------------------------------------------------- perplexity


def test_perplexity_against_scipy_entropy():
    rng = np.random.default_rng(3)
    for k in (3, 7, 50):
        idx = rng.integers(0, k, 200)
        counts = np.bincount(idx, minlength=k)
        expect = math.exp(scipy.stats.entropy(counts))  # natural log, normalises the counts
        got = perplexity(idx, k)
        assert isinstance(got, float) and got == pytest.approx(expect, rel=1e-12)
        assert 1.0 <= got <= k


def test_perplexity_ignores_unused_codes_and_codebook_size():
    # p = (3/4, 1/4): H = -(3/4 ln 3/4 + 1/4 ln 1/4) -> exp(H) = (4/3)^(3/4) * 4^(1/4)
    hand = (4 / 3) ** 0.75 * 4**0.25
    for k in (2, 5, 100):
        assert perplexity(np.array([1, 1, 1, 0]), k) == pytest.approx(hand, rel=1e-14)
    assert perplexity(np.array([4, 4, 4, 2]), 5) == pytest.approx(hand, rel=1e-14)
    with pytest.raises(ValueError, match=r"^indices is empty$"):
        perplexity(np.array([], dtype=np.int64), 3)


def test_perplexity_per_codebook_against_hand_values():
    tokens = np.array([[0, 1, 0], [1, 1, 0], [2, 1, 1], [3, 1, 2]])
    per = perplexity_per_codebook(tokens, [4, 2, 3])
    # uniform over 4 -> 4; a single code -> 1; (1/2, 1/4, 1/4) -> 2^1.5
    assert per.dtype == np.float64
    np.testing.assert_allclose(per, [4.0, 1.0, 2**1.5], rtol=1e-14)


# ----------------------------------------------------------------------------- AMI


def test_ami_equals_sklearn_arithmetic_on_hand_cases():
    codes = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 0, 0])
    labels = np.array(["g", "g", "s", "s", "s", "b", "b", "b", "b", "g", "g", "s"])
    expect = adjusted_mutual_info_score(labels, codes, average_method="arithmetic")
    got = adjusted_mutual_information(codes, labels)
    assert isinstance(got, float) and got == pytest.approx(expect, rel=1e-12)
    # not the geometric / max / min normalisation (they differ on this case)
    for other in ("geometric", "max", "min"):
        assert abs(adjusted_mutual_info_score(labels, codes, average_method=other) - got) > 1e-4
    # identical partitions up to renaming -> exactly 1; a constant code carries no information -> 0
    assert adjusted_mutual_information(np.array([5, 5, 7, 7, 9]), ["a", "a", "b", "b", "c"]) == pytest.approx(1.0)
    assert adjusted_mutual_information(np.zeros(6, dtype=np.int64), ["a", "b"] * 3) == pytest.approx(0.0, abs=1e-12)


def test_ami_rejections():
    with pytest.raises(ValueError, match=r"^codes and labels must be 1-D, got shapes \(2, 1\) and \(2,\)$"):
        adjusted_mutual_information(np.zeros((2, 1)), np.zeros(2))
    with pytest.raises(ValueError, match=r"^codes and labels must be 1-D, got shapes \(2,\) and \(1, 2\)$"):
        adjusted_mutual_information(np.zeros(2), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"^codes is empty$"):
        adjusted_mutual_information([], [])
    with pytest.raises(ValueError, match=r"^codes has 4 rows but labels has 3$"):
        adjusted_mutual_information(np.zeros(4, dtype=np.int64), ["a", "b", "c"])


def test_level0_ami_default_levels_and_validation():
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    rng = np.random.default_rng(5)
    other = rng.integers(0, 3, 8)
    # default num_levels = 3: columns 0 and 3 are the level-0 codes
    tokens = np.stack([other, labels, labels, labels, other, other], axis=1)
    got = level0_ami_per_category(tokens, labels)
    expect = [adjusted_mutual_info_score(labels, other), 1.0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-12)
    # num_levels = 2: level-0 columns 0, 2, 4
    np.testing.assert_allclose(
        level0_ami_per_category(tokens, labels, num_levels=2),
        [adjusted_mutual_info_score(labels, other), 1.0, adjusted_mutual_info_score(labels, other)],
        rtol=1e-12,
        atol=1e-12,
    )
    # num_levels = 1: every column
    assert level0_ami_per_category(tokens[:, 1:3], labels, num_levels=1).tolist() == pytest.approx([1.0, 1.0])
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match=rf"^num_levels must be an integer >= 1, got {bad!r}$"):
            level0_ami_per_category(tokens, labels, num_levels=bad)
    with pytest.raises(ValueError, match=r"^tokens must be \[N, C \* 3\], got shape \(8, 0\)$"):
        level0_ami_per_category(np.zeros((8, 0), dtype=np.int64), labels)
    with pytest.raises(ValueError, match=r"^tokens must be \[N, C \* 2\], got shape \(8,\)$"):
        level0_ami_per_category(labels, labels, num_levels=2)


def test_noise_ceiling_rejects_2d_and_returns_float():
    got = noise_ceiling(np.array([0.5, 1.0], dtype=np.float32))
    assert isinstance(got, float) and got == 0.75
    with pytest.raises(ValueError, match=r"^reliabilities must be a non-empty 1-D array, got shape \(1, 2\)$"):
        noise_ceiling([[0.9, 0.8]])
    with pytest.raises(ValueError, match=r"^reliabilities contain NaN or inf$"):
        noise_ceiling([np.inf])


# ----------------------------------------------------------------------------- record


def _record(**over) -> TokenizerMetrics:
    base = dict(
        num_categories=2,
        num_levels=2,
        n_train=40,
        n_val=20,
        reconstruction_error=0.25,
        quality=0.75,
        per_level_quality=(0.5, 0.75),
        codebook_sizes=(4, 2, 8, 2),
        utilization_train=(1.0, 1.0, 0.5, 0.5),
        utilization_val=(0.5, 1.0, 0.25, 0.5),
        perplexity_val=(1.5, 2.0, 1.75, 1.0),
        utilization_threshold_applies=False,
        ami_ic_type_per_category=(0.1, 0.3),
        orthogonality=0.2,
        noise_ceiling=0.9,
    )
    base.update(over)
    return TokenizerMetrics(**base)


def test_record_derived_values_by_hand():
    m = _record()
    assert m.utilization == pytest.approx((0.5 + 1.0 + 0.25 + 0.5) / 4)
    assert m.utilization_train_mean == pytest.approx(0.75)
    assert m.ami_ic_type == pytest.approx(0.2) and m.ami_ic_type_max == 0.3
    assert m.codebooks() == [
        {"column": 0, "category": 0, "level": 0, "codebook_size": 4,
         "utilization_train": 1.0, "utilization_val": 0.5, "perplexity_val": 1.5},
        {"column": 1, "category": 0, "level": 1, "codebook_size": 2,
         "utilization_train": 1.0, "utilization_val": 1.0, "perplexity_val": 2.0},
        {"column": 2, "category": 1, "level": 0, "codebook_size": 8,
         "utilization_train": 0.5, "utilization_val": 0.25, "perplexity_val": 1.75},
        {"column": 3, "category": 1, "level": 1, "codebook_size": 2,
         "utilization_train": 0.5, "utilization_val": 0.5, "perplexity_val": 1.0},
    ]
    unmeasured = _record(ami_ic_type_per_category=())
    assert math.isnan(unmeasured.ami_ic_type) and math.isnan(unmeasured.ami_ic_type_max)


def test_record_to_dict_by_hand():
    d = _record(orthogonality=float("nan")).to_dict()
    assert d["format"] == METRICS_FORMAT == "spinlock.tokenizer_metrics" and d["version"] == METRICS_VERSION == 1
    assert set(d) == {
        "format", "version", "num_categories", "num_levels", "n_train", "n_val", "reconstruction_error",
        "quality", "per_level_quality", "utilization_threshold_applies", "ami_ic_type_per_category",
        "orthogonality", "noise_ceiling", "ami_ic_type", "ami_ic_type_max", "utilization",
        "utilization_train_mean", "codebooks",
    }
    assert (d["num_categories"], d["num_levels"], d["n_train"], d["n_val"]) == (2, 2, 40, 20)
    assert d["per_level_quality"] == [0.5, 0.75] and d["ami_ic_type_per_category"] == [0.1, 0.3]
    assert d["orthogonality"] is None and d["noise_ceiling"] == 0.9
    assert d["reconstruction_error"] == 0.25 and d["quality"] == 0.75
    assert d["ami_ic_type"] == pytest.approx(0.2) and d["ami_ic_type_max"] == 0.3
    assert d["utilization"] == pytest.approx(0.5625) and d["utilization_train_mean"] == pytest.approx(0.75)
    assert d["utilization_threshold_applies"] is False
    assert [b["codebook_size"] for b in d["codebooks"]] == [4, 2, 8, 2]
    # a NaN inside a tuple is written as null too
    d2 = _record(per_level_quality=(float("nan"), 0.5)).to_dict()
    assert d2["per_level_quality"] == [None, 0.5]
    json.loads(_record(per_level_quality=(float("nan"), 0.5), noise_ceiling=float("nan")).to_json())
    no_ami = _record(ami_ic_type_per_category=()).to_dict()
    assert no_ami["ami_ic_type"] is None and no_ami["ami_ic_type_max"] is None
    assert no_ami["ami_ic_type_per_category"] == []


def test_record_json_round_trip_and_column_order():
    m = _record(reconstruction_error=float("nan"), quality=float("nan"), noise_ceiling=float("nan"))
    text = m.to_json(indent=1)
    assert "NaN" not in text and "\n" in text  # strict JSON, kwargs passed to json.dumps
    back = TokenizerMetrics.from_json(text)
    assert math.isnan(back.reconstruction_error) and math.isnan(back.quality) and math.isnan(back.noise_ceiling)
    assert back.codebook_sizes == m.codebook_sizes and back.perplexity_val == m.perplexity_val
    assert back.orthogonality == 0.2 and back.n_train == 40 and back.n_val == 20
    # codebooks are re-ordered by column, whatever order the file lists them in
    d = json.loads(_record().to_json())
    d["codebooks"] = d["codebooks"][::-1]
    assert TokenizerMetrics.from_dict(d) == _record()
    d["utilization_threshold_applies"] = 1
    assert TokenizerMetrics.from_dict(d).utilization_threshold_applies is True


def test_record_rejections():
    with pytest.raises(ValueError, match=r"^per_level_quality has 3 entries, expected 2$"):
        _record(per_level_quality=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match=r"^ami_ic_type_per_category needs one entry per category$"):
        _record(ami_ic_type_per_category=(0.1,))
    for name in ("codebook_sizes", "utilization_train", "perplexity_val"):
        with pytest.raises(ValueError, match=rf"^{name} has 3 entries, expected num_categories x num_levels = 4$"):
            _record(**{name: (1, 1, 1)})
    # strict JSON: a non-finite value that is not NaN (written as null) is refused, not written
    with pytest.raises(ValueError, match=r"Out of range float values are not JSON compliant"):
        _record(orthogonality=float("inf")).to_json()
    d = _record().to_dict()
    with pytest.raises(ValueError, match=r"^not a tokenizer metrics record: format None$"):
        TokenizerMetrics.from_dict({k: v for k, v in d.items() if k != "format"})
    with pytest.raises(ValueError, match=r"^not a tokenizer metrics record: format 'spinlock.other'$"):
        TokenizerMetrics.from_dict({**d, "format": "spinlock.other"})
    with pytest.raises(ValueError, match=r"^tokenizer metrics version 2, this code reads 1$"):
        TokenizerMetrics.from_dict({**d, "version": 2})


# ----------------------------------------------------------------------------- collection


def _hand_outputs():
    # 2 categories x 2 levels, sizes (4, 2, 3, 3); 6 validation rows, 5 training rows
    x_val = np.array([[0.0, 1.0], [2.0, -1.0], [4.0, 2.0], [6.0, 0.0], [8.0, 3.0], [10.0, 1.0]])
    tokens_val = np.array([[0, 0, 0, 2], [1, 0, 0, 2], [2, 1, 0, 2], [0, 1, 1, 2], [0, 0, 1, 2], [3, 1, 2, 2]])
    tokens_train = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 2, 1], [0, 1, 0, 1], [0, 0, 0, 0]])
    return dict(
        x_val=x_val,
        reconstruction_val=x_val + np.array([1.0, -1.0]),  # error 1 everywhere -> MSE 1
        level_reconstructions_val=[x_val + 2.0, x_val + 0.5],  # MSE 4 and 0.25
        tokens_train=tokens_train,
        tokens_val=tokens_val,
        codebook_sizes=[4, 2, 3, 3],
        num_levels=2,
    )


def test_compute_tokenizer_metrics_hand_case():
    out = _hand_outputs()
    m = compute_tokenizer_metrics(**out)
    assert (m.num_categories, m.num_levels, m.n_train, m.n_val) == (2, 2, 5, 6)
    assert type(m.num_categories) is int and '"num_categories": 2,' in m.to_json()
    assert m.reconstruction_error == 1.0 and m.quality == 0.0
    assert m.per_level_quality == (-3.0, 0.75)
    assert m.codebook_sizes == (4, 2, 3, 3)
    # val: {0,1,2,3}/4, {0,1}/2, {0,1,2}/3, {2}/3; train: {0}/4, {0,1}/2, {0,1,2}/3, {0,1}/3
    assert m.utilization_val == (1.0, 1.0, 1.0, 1 / 3)
    assert m.utilization_train == (0.25, 1.0, 1.0, 2 / 3)
    # val histograms: (3,1,1,1)/6, (3,3)/6, (3,2,1)/6, (6)/6
    def ppl(counts):
        p = np.array(counts) / sum(counts)
        return math.exp(-(p * np.log(p)).sum())

    assert m.perplexity_val == pytest.approx((ppl([3, 1, 1, 1]), 2.0, ppl([3, 2, 1]), 1.0), rel=1e-14)
    # 6 rows < 5 * max(K0 = 4, 3) = 20
    assert m.utilization_threshold_applies is False
    assert m.ami_ic_type_per_category == () and math.isnan(m.orthogonality) and math.isnan(m.noise_ceiling)


def test_compute_tokenizer_metrics_threshold_uses_level0_sizes_only():
    out = _hand_outputs()
    n = 20  # = 5 * max(K0) with K0 = sizes[0::2] = (4, 3); the level-1 sizes must not count
    rows = np.resize(out["tokens_val"], (n, 4))
    x = np.zeros((n, 2))
    common = dict(out, x_val=x, reconstruction_val=x, level_reconstructions_val=[x, x], tokens_val=rows)
    assert compute_tokenizer_metrics(**common).utilization_threshold_applies is True
    assert compute_tokenizer_metrics(**{**common, "codebook_sizes": [4, 5, 3, 5]}).utilization_threshold_applies is True
    assert compute_tokenizer_metrics(**{**common, "codebook_sizes": [5, 2, 3, 3]}).utilization_threshold_applies is False
    assert compute_tokenizer_metrics(**{**common, "codebook_sizes": [4, 2, 5, 3]}).utilization_threshold_applies is False
    # with num_levels = 1 every column is a level-0 codebook
    one = compute_tokenizer_metrics(**{**common, "num_levels": 1, "level_reconstructions_val": [x]})
    assert one.num_categories == 4 and one.utilization_threshold_applies is True
    sizes5 = compute_tokenizer_metrics(**{**common, "num_levels": 1, "level_reconstructions_val": [x],
                                          "codebook_sizes": [4, 5, 3, 3]})
    assert sizes5.utilization_threshold_applies is False


def test_compute_tokenizer_metrics_probes_by_hand():
    out = _hand_outputs()
    labels = np.array(["a", "b", "c", "a", "a", "d"])  # = level-0 code of category 0 up to renaming
    m = compute_tokenizer_metrics(**out, ic_types_val=labels, reliabilities=[0.5, 1.0, 0.75], assignment=[0, 1])
    assert m.ami_ic_type_per_category[0] == pytest.approx(1.0)
    assert m.ami_ic_type_per_category[1] == pytest.approx(
        adjusted_mutual_info_score(labels, out["tokens_val"][:, 2], average_method="arithmetic"), rel=1e-12
    )
    assert m.noise_ceiling == 0.75
    # two one-column categories: the centroids are the standardized columns, so the orthogonality
    # is |Pearson r| of the two columns of x_val
    r = np.corrcoef(out["x_val"][:, 0], out["x_val"][:, 1])[0, 1]
    assert 0.1 < abs(r) < 0.9 and m.orthogonality == pytest.approx(abs(r), rel=1e-12)


def test_compute_tokenizer_metrics_default_is_three_levels():
    x = np.zeros((10, 2))
    tokens = np.arange(10)[:, None] % np.array([5, 2, 2, 4, 2, 2])  # [10, 6], every code used
    m = compute_tokenizer_metrics(
        x_val=x, reconstruction_val=x, level_reconstructions_val=[x, x, x],
        tokens_train=tokens, tokens_val=tokens, codebook_sizes=[5, 2, 2, 4, 2, 2],
    )
    assert (m.num_categories, m.num_levels) == (2, 3)
    assert m.utilization_val == (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    # K0 = sizes[0::3] = (5, 4): 10 rows < 25
    assert m.utilization_threshold_applies is False


def test_compute_tokenizer_metrics_rejections():
    out = _hand_outputs()
    with pytest.raises(ValueError, match=r"^4 token columns are not a multiple of num_levels = 3$"):
        compute_tokenizer_metrics(**{**out, "num_levels": 3, "level_reconstructions_val": [0, 0, 0]})
    with pytest.raises(ValueError, match=r"^level_reconstructions_val needs 2 entries, got 3$"):
        compute_tokenizer_metrics(**{**out, "level_reconstructions_val": [out["x_val"]] * 3})
    with pytest.raises(ValueError, match=r"^tokens_val has 6 rows but x_val has 5$"):
        x5 = out["x_val"][:5]
        compute_tokenizer_metrics(**{**out, "x_val": x5, "reconstruction_val": x5, "level_reconstructions_val": [x5, x5]})
    with pytest.raises(ValueError, match=r"^sizes must list one codebook size per token column \(3\)"):
        compute_tokenizer_metrics(**{**out, "tokens_train": out["tokens_train"][:, :3]})
    with pytest.raises(ValueError, match=r"lies outside \[0, 2\)"):
        bad = out["tokens_train"].copy()
        bad[0, 1] = 2
        compute_tokenizer_metrics(**{**out, "tokens_train": bad})
