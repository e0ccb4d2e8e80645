"""The tokenizer's checks (asset checks of `tokenizer` and `tokens`) judge the numbers they are given."""

from __future__ import annotations

import numpy as np

from spinlock_core.tokenizer.metrics import TokenizerMetrics
from spinlock_core.validation.tokenizer_checks import tokenizer_checks, tokens_checks


def _metrics(quality=0.96, util_val=(1.0, 0.9, 0.8, 1.0, 1.0, 0.95), applies=True, ami=(0.02, 0.10)):
    m = TokenizerMetrics(
        num_categories=2, num_levels=3, n_train=900, n_val=100, reconstruction_error=1 - quality, quality=quality,
        per_level_quality=(0.9, 0.94, quality), codebook_sizes=(30, 12, 6, 30, 12, 6),
        utilization_train=(1.0,) * 6, utilization_val=util_val, perplexity_val=(20.0,) * 6,
        utilization_threshold_applies=applies, ami_ic_type_per_category=ami, orthogonality=0.1, noise_ceiling=0.98)
    d = m.to_dict()
    d["thresholds"] = {"min_val_quality": 0.95, "min_val_utilization": 0.9}
    d["dead_codebooks"] = [j for j, u in enumerate(util_val) if u == 0.0]
    return d


def test_quality_and_utilization_passes_and_reports_values_next_to_thresholds():
    q, cat = tokenizer_checks(_metrics())
    assert q.passed and q.blocking and q.severity == "ERROR"
    assert q.values["val_quality"] == 0.96 and q.thresholds == {"val_quality": 0.95, "val_utilization": 0.9}
    assert abs(q.values["val_utilization"] - np.mean((1.0, 0.9, 0.8, 1.0, 1.0, 0.95))) < 1e-12
    assert cat.passed and not cat.blocking
    assert "| category 1 | K 30 / 12 / 6 | val 1.00 / 1.00 / 0.95 | train 1.00 / 1.00 / 1.00 | AMI 0.100 |" in cat.tables["per_category"]
    assert cat.values["ami_ic_type_max"] == 0.10


def test_each_failure_is_named():
    q, _ = tokenizer_checks(_metrics(quality=0.949))
    assert not q.passed and "validation quality 0.9490 < 0.95" in q.description
    q, cat = tokenizer_checks(_metrics(util_val=(0.5, 0.5, 0.5, 1.0, 1.0, 1.0)))
    assert not q.passed and "validation utilization 0.750 < 0.9" in q.description
    assert not cat.passed and "[0]" in cat.description  # category 0 under the threshold
    # too few validation rows: utilization is reported, not judged; a dead codebook still fails
    q, _ = tokenizer_checks(_metrics(util_val=(0.5, 0.5, 0.5, 1.0, 1.0, 1.0), applies=False))
    assert q.passed and "threshold not applied" in q.description
    q, _ = tokenizer_checks(_metrics(util_val=(1.0, 1.0, 0.0, 1.0, 1.0, 1.0), applies=False))
    assert not q.passed and "dead codebooks (token columns) [2]" in q.description


def test_tokens_in_codebook():
    sizes = [4, 3]
    ok = np.array([[0, 2], [3, 0]])
    (r,) = tokens_checks(ok, sizes)
    assert r.passed and r.blocking
    (r,) = tokens_checks(np.array([[4, 2], [3, -1]]), sizes)
    assert not r.passed and r.values["bad_columns"] == 2
    assert "| column 0 | 1 outside [0, 4) |" in r.tables["outside"]
    (r,) = tokens_checks(np.zeros((2, 3), int), sizes)
    assert not r.passed and "expected [N, 2]" in r.tables["outside"]
