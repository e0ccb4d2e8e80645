"""A demo-like 16x16 shard: no undocumented constant column in any family, and the redefined
spectral columns are decided by the fields (no log-floor value, no empty band).

Measured once at a larger size (64 operators, T = 32, TINY config, sensitivity on): apart from the
documented ``output_input_corr_std/_cv``, nothing was constant; the only saturated columns (MAD 0)
were genuine (monotonicities at +1 for strictly monotone invariants; regime_switches_std at 0 when
both realizations have a monotone energy; ring_peaks 0 at t = 0 for ICs whose spectrum peaks at
ring 1). This test is the same check on a smaller shard, fast enough for the unit suite: 16
operators (the constant check needs 8) and T = 16 (SUMMARY constants are judged from 16 states),
with the operator-sensitivity block off (about 4 s per operator on 2 CPU cores; its NaN policy is
tested in test_sensitivity_nan.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinlock_core.config import load_experiment
from spinlock_core.features.extract import RolloutFeatures
from spinlock_core.features.families import feature_names
from spinlock_core.features.initial import INITIAL_NAMES, initial_features
from spinlock_core.features.quality import feature_report
from spinlock_core.features.summary import SUMMARY_NAMES
from spinlock_core.features.temporal import TEMPORAL_NAMES
from spinlock_core.generation import ic_types_for, initial_conditions_for, sample_parameters, simulate_operators
from spinlock_core.storage.layout import PATHS

N_OPERATORS = 16
T = 16


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    import yaml

    from tests.conftest import tiny_dict

    d = tiny_dict(**{
        "sampling.total_samples": N_OPERATORS,
        "sampling.batch_size": 8,
        "simulation.num_timesteps": T,
        "dataset.storage.shard_size": N_OPERATORS,
        "features": {"summary": {"extract_operator_features": False}, "initial": {"enabled": True}},
    })
    path = tmp_path_factory.mktemp("demo_like") / "tiny.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    cfg = load_experiment(path)
    unit, _ = sample_parameters(cfg)
    idx = np.arange(N_OPERATORS)
    types = ic_types_for(cfg, idx)
    ics = initial_conditions_for(cfg, idx, types)
    fc = RolloutFeatures(cfg, 0, N_OPERATORS, {"summary", "temporal"})
    simulate_operators(cfg, idx, unit[idx], ics, consumers=[fc])
    values = {
        PATHS.TEMPORAL: fc.temporal,
        PATHS.SUMMARY_TRAJ: fc.per_traj,
        PATHS.SUMMARY_AGG: fc.aggregated,
        PATHS.INITIAL: initial_features(torch.from_numpy(np.asarray(ics))).numpy(),
    }
    return cfg, values, types


def test_no_undocumented_constant_or_nan_column(shard):
    cfg, values, _ = shard
    for fam in ("temporal", "summary", "initial"):
        for path, names in feature_names(fam, cfg).items():
            r = feature_report(path, values[path], names, cfg)
            assert r.constant_ok, (path, r.unexpected_constant)
            assert r.nan_ok, (path, r.undocumented_nan, r.inf_per_feature)
            assert r.ranges_ok, (path, r.range_violations)
    # the low band is no longer excused on 16x16
    r = feature_report(PATHS.TEMPORAL, values[PATHS.TEMPORAL], TEMPORAL_NAMES, cfg)
    assert "low_frac" not in r.constant


def test_redefined_columns_vary_and_carry_no_floor_value(shard):
    _, values, types = shard
    temporal, per_traj = values[PATHS.TEMPORAL], values[PATHS.SUMMARY_TRAJ]
    for name in ("dynamic_range", "slope", "slope_high", "low_frac", *(f"band_frac_{i}" for i in range(8))):
        x = temporal[..., TEMPORAL_NAMES.index(name)]
        assert np.unique(x.round(5)).size > x.size // 4, name
    # the 1.0 signatures: log10(1 / 1e-10) = 10 for every band-limited or single-mode field
    assert not np.isclose(temporal[..., TEMPORAL_NAMES.index("dynamic_range")], 10.0, atol=1e-3).any()
    for name in ("slope_final", "slope_mean", "slope_slope", "low_frac_final"):
        x = per_traj[..., SUMMARY_NAMES.index(name)]
        assert np.unique(x.round(5)).size > x.size // 2, name
    # INITIAL slope: 0 exactly for a single-mode (structured) IC, one ring; decided by the field elsewhere
    for c in range(3):
        s = values[PATHS.INITIAL][:, INITIAL_NAMES.index(f"c{c}_slope")]
        single_mode = types == "structured"
        assert (s[single_mode] == 0).all()
        assert (s[~single_mode] < 0).all() and np.unique(s[~single_mode]).size == (~single_mode).sum()
