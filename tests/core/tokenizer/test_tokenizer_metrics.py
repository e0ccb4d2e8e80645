"""SPEC 9 metrics against independent computations on tiny cases; each test pins one formula
(the codebook a utilization is divided by, the perplexity base, the AMI normalisation)."""

from __future__ import annotations

import json
import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
import torch

from spinlock_core.tokenizer.metrics import (
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


def test_reconstruction_error_and_quality():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    x_hat = np.array([[1.0, 0.0], [3.0, 5.0]])
    # squared errors 0, 4, 0, 1 -> mean 5 / 4
    assert reconstruction_error(x, x_hat) == 1.25
    assert quality(x, x_hat) == -0.25
    assert reconstruction_error(torch.tensor(x), torch.tensor(x_hat, requires_grad=True)) == 1.25
    assert quality(x, x) == 1.0
    with pytest.raises(ValueError, match=r"x has shape \(2, 2\) but x_hat has shape \(2, 1\)"):
        reconstruction_error(x, x_hat[:, :1])
    with pytest.raises(ValueError, match=r"not finite"):
        reconstruction_error(x, np.full_like(x, np.nan))


def test_per_level_quality():
    x = np.zeros((2, 3))
    recs = [np.full((2, 3), 0.5), np.full((2, 3), 0.2), np.full((2, 3), 0.1)]
    assert per_level_quality(x, recs) == pytest.approx((0.75, 0.96, 0.99))
    with pytest.raises(ValueError, match=r"reconstructions is empty"):
        per_level_quality(x, [])


# ----------------------------------------------------------------------------- utilization


def test_utilization_divides_by_each_codebooks_own_size():
    sizes = [4, 8, 16]
    tokens = np.array(
        [
            [0, 0, 0],
            [1, 1, 1],
            [0, 7, 2],
            [1, 0, 3],
        ]
    )
    # distinct codes: {0, 1} of 4, {0, 1, 7} of 8, {0, 1, 2, 3} of 16
    per = utilization_per_codebook(tokens, sizes)
    assert per.tolist() == [2 / 4, 3 / 8, 4 / 16]
    # dividing every column by K0 = 4 (the trap) would give [0.5, 0.75, 1.0]
    assert mean_utilization(tokens, sizes) == pytest.approx((0.5 + 0.375 + 0.25) / 3)
    assert utilization(torch.tensor([3, 3, 3]), 4) == 0.25
    assert utilization_per_codebook(torch.from_numpy(tokens), torch.tensor(sizes)).tolist() == per.tolist()


def test_utilization_never_exceeds_one():
    # the earlier implementation reported per-level values of 1.25-1.33: codes beyond the size
    # it divided by. A code outside the codebook is an error, not a utilization above 1.
    with pytest.raises(ValueError, match=r"indices range \[0, 9\] lies outside \[0, 8\)"):
        utilization(np.arange(10), 8)
    with pytest.raises(ValueError, match=r"lies outside \[0, 4\)"):
        utilization_per_codebook(np.array([[0, 5]]), [8, 4])
    with pytest.raises(ValueError, match=r"indices range \[-1, 0\]"):
        utilization(np.array([-1, 0]), 8)


def test_utilization_bad_inputs():
    with pytest.raises(ValueError, match=r"indices must hold integers, got dtype float64"):
        utilization(np.array([0.0, 1.0]), 4)
    with pytest.raises(ValueError, match=r"indices is empty"):
        utilization(np.array([], dtype=np.int64), 4)
    with pytest.raises(ValueError, match=r"codebook_size must be an integer >= 1, got 0"):
        utilization(np.array([0]), 0)
    with pytest.raises(ValueError, match=r"sizes must list one codebook size per token column \(3\)"):
        utilization_per_codebook(np.zeros((2, 3), dtype=np.int64), [4, 4])
    with pytest.raises(ValueError, match=r"sizes must be integers"):
        utilization_per_codebook(np.zeros((2, 2), dtype=np.int64), [4.0, 4.0])


def test_utilization_applies_from_five_k0_rows():
    assert utilization_applies(160, 32)
    assert not utilization_applies(159, 32)
    assert utilization_applies(440, [30, 88, 40]) and not utilization_applies(439, [30, 88, 40])
    with pytest.raises(ValueError, match=r"n_rows must be an integer >= 0"):
        utilization_applies(-1, 4)
    with pytest.raises(ValueError, match=r"k0 must be one or more integer codebook sizes >= 1"):
        utilization_applies(10, 0)


# ----------------------------------------------------------------------------- perplexity


def test_perplexity_is_two_to_the_entropy_in_bits():
    # p = (1/2, 1/4, 1/4): H = 1.5 bits -> 2^1.5 equally used codes (exp(1.5) = 4.48 would be the
    # base mistake)
    idx = np.array([0, 0, 1, 2])
    assert perplexity(idx, 8) == pytest.approx(2**1.5, rel=1e-12)
    assert perplexity(np.array([5, 6, 7, 4] * 3), 8) == pytest.approx(4.0)
    assert perplexity(np.array([3] * 7), 8) == pytest.approx(1.0)
    assert perplexity(torch.tensor([0, 1]), 2) == pytest.approx(2.0)
    tokens = np.array([[0, 0], [0, 1], [1, 2], [2, 3]])
    assert perplexity_per_codebook(tokens, [4, 4]) == pytest.approx([2**1.5, 4.0])
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        perplexity(np.array([0, 2]), 2)


# ----------------------------------------------------------------------------- AMI


def _ami_by_enumeration(u, v, norm):
    """AMI with E[MI] summed term by term over the hypergeometric distribution (Vinh et al. 2010)."""
    n = len(u)
    a, b = Counter(u), Counter(v)
    joint = Counter(zip(u, v))
    mi = sum(c / n * math.log(n * c / (a[i] * b[j])) for (i, j), c in joint.items())
    hu = -sum(c / n * math.log(c / n) for c in a.values())
    hv = -sum(c / n * math.log(c / n) for c in b.values())
    emi = 0.0
    for ai in a.values():
        for bj in b.values():
            for nij in range(max(1, ai + bj - n), min(ai, bj) + 1):
                prob = Fraction(math.comb(ai, nij) * math.comb(n - ai, bj - nij), math.comb(n, bj))
                emi += nij / n * math.log(n * nij / (ai * bj)) * float(prob)
    mean = {"arithmetic": (hu + hv) / 2, "max": max(hu, hv), "geometric": math.sqrt(hu * hv)}[norm]
    return (mi - emi) / (mean - emi)


def test_ami_matches_hypergeometric_enumeration_with_arithmetic_mean():
    codes = [0, 0, 1, 1, 2, 2, 2, 3, 3, 0]
    labels = ["a", "a", "a", "b", "b", "c", "c", "c", "b", "a"]
    expect = _ami_by_enumeration(codes, labels, "arithmetic")
    assert adjusted_mutual_information(np.array(codes), np.array(labels)) == pytest.approx(expect, rel=1e-9)
    assert adjusted_mutual_information(torch.tensor(codes), labels) == pytest.approx(expect, rel=1e-9)
    # the case separates the normalisations, so a change of method would fail above
    for other in ("max", "geometric"):
        assert abs(_ami_by_enumeration(codes, labels, other) - expect) > 1e-3


def test_ami_limits():
    labels = np.array(["grf", "sine", "grf", "blob", "sine", "blob"] * 5)
    relabelled = np.unique(labels, return_inverse=True)[1] + 10
    assert adjusted_mutual_information(relabelled, labels) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    null = [adjusted_mutual_information(rng.integers(0, 8, 300), rng.integers(0, 4, 300)) for _ in range(20)]
    assert abs(np.mean(null)) < 0.01  # adjusted for chance, unlike raw NMI on a few hundred rows
    with pytest.raises(ValueError, match=r"codes has 3 rows but labels has 2"):
        adjusted_mutual_information([0, 1, 2], [0, 1])


def test_level0_ami_reads_the_level0_column_of_every_category():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 5, size=(9, 2))
    tokens = np.stack(
        [labels, noise[:, 0], labels, np.zeros(9, dtype=np.int64), labels, labels], axis=1
    )  # category 0 = (labels, noise, labels), category 1 = (const, labels, labels)
    ami = level0_ami_per_category(tokens, labels, num_levels=3)
    assert ami.tolist() == pytest.approx([1.0, 0.0])
    with pytest.raises(ValueError, match=r"tokens must be \[N, C \* 3\], got shape \(9, 5\)"):
        level0_ami_per_category(tokens[:, :5], labels)


# ----------------------------------------------------------------------------- noise ceiling


def test_noise_ceiling_is_the_mean_reliability():
    assert noise_ceiling([0.9, 1.0, 0.95, 0.85]) == pytest.approx(0.925)
    assert noise_ceiling(torch.tensor([0.99, 0.97])) == pytest.approx(0.98)
    with pytest.raises(ValueError, match=r"non-empty 1-D"):
        noise_ceiling([])
    with pytest.raises(ValueError, match=r"NaN or inf"):
        noise_ceiling([0.9, float("nan")])


# ----------------------------------------------------------------------------- record


def _model_outputs():
    rng = np.random.default_rng(7)
    n_train, n_val, f = 200, 60, 7
    x_val = rng.standard_normal((n_val, f))
    sizes = [12, 6, 6, 8, 4, 4]  # two categories, different K0

    def tok(n):  # level 0 may use every code, levels 1-2 only the first five
        return np.stack([rng.integers(0, min(k, 5) if j % 3 else k, n) for j, k in enumerate(sizes)], 1)

    return {
        "x_val": x_val,
        "reconstruction_val": x_val + 0.1,
        "level_reconstructions_val": [x_val + 0.5, x_val + 0.2, x_val + 0.1],
        "tokens_train": tok(n_train),
        "tokens_val": tok(n_val),
        "codebook_sizes": sizes,
        "ic_types_val": rng.choice(["grf", "sine", "blob"], n_val),
        "assignment": [0, 0, 0, 1, 1, 1, 1],
        "reliabilities": [0.9, 0.95, 1.0, 0.99, 0.97, 0.96, 0.93],
    }


def test_compute_tokenizer_metrics_collects_every_metric():
    out = _model_outputs()
    m = compute_tokenizer_metrics(**out)
    assert (m.num_categories, m.num_levels, m.n_train, m.n_val) == (2, 3, 200, 60)
    assert m.reconstruction_error == pytest.approx(0.01) and m.quality == pytest.approx(0.99)
    assert m.per_level_quality == pytest.approx((0.75, 0.96, 0.99))
    assert m.codebook_sizes == (12, 6, 6, 8, 4, 4)
    assert list(m.utilization_val) == utilization_per_codebook(out["tokens_val"], out["codebook_sizes"]).tolist()
    assert list(m.utilization_train) == utilization_per_codebook(out["tokens_train"], out["codebook_sizes"]).tolist()
    assert m.utilization == pytest.approx(np.mean(m.utilization_val))
    assert max(m.utilization_val) <= 1.0
    assert m.utilization_threshold_applies  # 60 rows >= 5 * max K0 = 60
    assert not compute_tokenizer_metrics(**{**out, "codebook_sizes": [13, 6, 6, 8, 4, 4]}).utilization_threshold_applies
    assert m.ami_ic_type_per_category == pytest.approx(
        [adjusted_mutual_information(out["tokens_val"][:, c], out["ic_types_val"]) for c in (0, 3)]
    )
    assert m.ami_ic_type == pytest.approx(np.mean(m.ami_ic_type_per_category))
    assert m.noise_ceiling == pytest.approx(np.mean(out["reliabilities"]))
    from spinlock_core.tokenizer.categories import category_orthogonality

    assert m.orthogonality == category_orthogonality(out["x_val"], out["assignment"])


def test_metrics_json_lists_each_codebook_size_next_to_its_use():
    out = _model_outputs()
    m = compute_tokenizer_metrics(**out)
    d = json.loads(m.to_json())
    books = d["codebooks"]
    assert [(b["category"], b["level"], b["codebook_size"]) for b in books] == [
        (0, 0, 12),
        (0, 1, 6),
        (0, 2, 6),
        (1, 0, 8),
        (1, 1, 4),
        (1, 2, 4),
    ]
    for j, b in enumerate(books):
        assert b["column"] == j
        assert b["utilization_val"] == m.utilization_val[j]
        assert b["utilization_train"] == m.utilization_train[j]
        assert b["perplexity_val"] == m.perplexity_val[j]
        assert b["utilization_val"] * b["codebook_size"] == pytest.approx(len(set(out["tokens_val"][:, j])))
    assert d["utilization"] == pytest.approx(m.utilization) and d["quality"] == pytest.approx(0.99)
    back = TokenizerMetrics.from_json(m.to_json())
    assert back == m


def test_metrics_json_without_probes_is_strict():
    out = _model_outputs()
    for k in ("ic_types_val", "assignment", "reliabilities"):
        out.pop(k)
    m = compute_tokenizer_metrics(**out)
    d = json.loads(m.to_json())
    assert d["ami_ic_type"] is None and d["orthogonality"] is None and d["noise_ceiling"] is None
    back = TokenizerMetrics.from_json(m.to_json())
    assert math.isnan(back.noise_ceiling) and back.codebook_sizes == m.codebook_sizes


def test_metrics_record_rejects_inconsistent_lengths():
    m = compute_tokenizer_metrics(**_model_outputs())
    with pytest.raises(ValueError, match=r"utilization_val has 5 entries, expected num_categories x num_levels = 6"):
        TokenizerMetrics(**{**m.__dict__, "utilization_val": m.utilization_val[:5]})
    with pytest.raises(ValueError, match=r"level_reconstructions_val needs 3 entries, got 2"):
        out = _model_outputs()
        compute_tokenizer_metrics(**{**out, "level_reconstructions_val": out["level_reconstructions_val"][:2]})
    with pytest.raises(ValueError, match=r"not a tokenizer metrics record"):
        TokenizerMetrics.from_dict({"format": "x"})
