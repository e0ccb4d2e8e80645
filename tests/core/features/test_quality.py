"""The feature checks' column verdicts: constant, saturated (one value on most rows), discrete."""

from __future__ import annotations

import numpy as np
import pytest

from spinlock_core.features.families import documented_saturated
from spinlock_core.features.quality import SATURATION_SHARE, feature_report, saturation
from spinlock_core.features.temporal import TEMPORAL_NAMES
from spinlock_core.storage.layout import PATHS
from spinlock_core.validation import feature_checks


def test_saturation_finds_the_modal_value_and_its_share():
    flat = np.array([[1.0, 0.0, np.nan], [1.0, 2.0, np.nan], [3.0, 2.0, 5.0], [1.0, 4.0, np.nan], [7.0, 5.0, 5.0]])
    value, share = saturation(flat)
    assert value[0] == 1.0 and share[0] == pytest.approx(3 / 5)
    assert value[1] == 2.0 and share[1] == pytest.approx(2 / 5)
    assert value[2] == 5.0 and share[2] == 1.0  # NaN rows are not counted
    assert np.isnan(saturation(np.full((3, 1), np.nan))[0][0])


def _temporal(n: int, t: int, rng) -> np.ndarray:
    x = rng.standard_normal((n, t, len(TEMPORAL_NAMES))).astype(np.float32)
    return x


def test_saturated_column_warns_with_its_name_and_discrete_ones_are_listed_apart(tiny_config):
    rng = np.random.default_rng(0)
    x = _temporal(16, 6, rng)
    j_sat, j_disc = TEMPORAL_NAMES.index("dynamic_range"), TEMPORAL_NAMES.index("ring_peaks")
    x[:, :, j_sat] = 0.0
    x[:3, :, j_sat] = 1.0  # 13/16 rows on 0, not constant: a floor or empty set decides it
    x[:, :, j_disc] = 0.0
    x[:4, :, j_disc] = 2.0
    r = feature_report(PATHS.TEMPORAL, x, TEMPORAL_NAMES, tiny_config)
    assert r.unexpected_constant == []
    assert set(r.unexpected_saturated) == {"dynamic_range"} and r.unexpected_saturated["dynamic_range"] == (0.0, 13 / 16)
    assert set(r.saturated_by_construction) == {"ring_peaks"}
    assert documented_saturated(PATHS.TEMPORAL, tiny_config)["ring_peaks"] == "discrete by definition"
    checks = {c.name: c for c in feature_checks(tiny_config, "temporal", {PATHS.TEMPORAL: x}, 0, 16)}
    c = checks["constant_columns"]
    assert not c.passed and c.severity == "WARN" and not c.blocking and "dynamic_range" in c.description
    assert "ring_peaks" not in c.description and "ring_peaks" in c.tables["temporal.features/saturated_by_construction"]
    assert checks["nan_inf"].passed and checks["shard_layout"].passed


def test_just_below_the_saturation_share_passes(tiny_config):
    rng = np.random.default_rng(1)
    x = _temporal(16, 2, rng)  # 32 rows
    j = TEMPORAL_NAMES.index("centroid")
    x[:, :, j] = rng.standard_normal((16, 2))
    x.reshape(-1, x.shape[-1])[: int(32 * SATURATION_SHARE) - 1, j] = 0.25
    assert "centroid" not in feature_report(PATHS.TEMPORAL, x, TEMPORAL_NAMES, tiny_config).saturated
    x.reshape(-1, x.shape[-1])[: int(32 * SATURATION_SHARE), j] = 0.25
    assert "centroid" in feature_report(PATHS.TEMPORAL, x, TEMPORAL_NAMES, tiny_config).saturated


def test_constant_column_is_an_error_and_nan_blocks(tiny_config):
    x = _temporal(16, 6, np.random.default_rng(2))
    x[:, :, TEMPORAL_NAMES.index("entropy")] = 0.5
    x[3, 2, TEMPORAL_NAMES.index("mean")] = np.nan
    checks = {c.name: c for c in feature_checks(tiny_config, "temporal", {PATHS.TEMPORAL: x}, 0, 16)}
    assert not checks["constant_columns"].passed and checks["constant_columns"].severity == "ERROR"
    assert "constant: entropy" in checks["constant_columns"].description
    assert checks["nan_inf"].blocks and "mean" in checks["nan_inf"].description
    assert checks["nan_inf"].values["temporal.features/nan_total"] == 1


def test_layout_check_names_the_wrong_shape(tiny_config):
    x = _temporal(16, 5, np.random.default_rng(3))  # T = 6 in the tiny config
    layout = {c.name: c for c in feature_checks(tiny_config, "temporal", {PATHS.TEMPORAL: x}, 0, 16)}["shard_layout"]
    assert layout.blocks and "features/temporal/features must have shape (16, 6, 63), got (16, 5, 63)" in layout.description
