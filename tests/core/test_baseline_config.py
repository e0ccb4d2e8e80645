"""The 10k baseline config applies its operators, and every one of its parameters acts on its features.

For each parameter that can take more than one value: two operators with the same index (same
weights and noise draws) and the same initial condition, differing only in that parameter, must
give different TEMPORAL and SUMMARY features. The grid stays the config's 128x128; M is cut to 1
and the small end of the architecture ranges is held fixed, so that this runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinlock_core.config import load_experiment
from spinlock_core.features.extract import RolloutFeatures
from spinlock_core.generation import initial_conditions_for, simulate_operators
from spinlock_core.sampling import decode_row
from tests.conftest import ROOT

PATH = ROOT / "configs/experiments/baseline_10k.yaml"
INDEX = 5  # one operator index for every variant: same weights, same noise draws

# unit value of every parameter in the reference operator: the cheap end of the architecture
# (2 layers, width 16, 3x3 kernels), a residual update with dt near its upper bound (0.1) so that
# one application moves the state well above float32 noise, and noise at 0.1
BASE = {
    "num_layers": 0.0, "base_channels": 0.0, "kernel_size": 0.0, "activation": 0.0, "dropout_rate": 0.5,
    "padding_mode": 0.0, "noise_type": 0.0, "noise_scale": 0.8, "noise_schedule": 0.0,
    "spatial_correlation": 0.5, "normalization": 0.0, "grid_size": 0.0, "update_policy": 0.0, "dt": 0.99,
    "alpha": 0.5,
}
# the other unit value tried for each parameter (alpha is read by the convex policy only, so its
# pair runs with update_policy = convex)
OTHER = {
    "num_layers": 0.3, "base_channels": 0.1, "kernel_size": 0.4, "activation": 0.6, "dropout_rate": 0.0,
    "padding_mode": 0.7, "noise_type": 0.7, "noise_scale": 0.6, "spatial_correlation": 0.0,
    "normalization": 0.7, "update_policy": 0.9, "dt": 0.5, "alpha": 0.0,
}
CONTEXT = {"alpha": {"update_policy": 0.9}}


@pytest.fixture(scope="module")
def cfg():
    c = load_experiment(PATH)
    sim = c.simulation.model_copy(update={"num_realizations": 1, "device": "cpu"})
    return c.model_copy(update={"simulation": sim})


def _features(cfg, unit_row: np.ndarray, ic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TEMPORAL ``[T, 63]`` and SUMMARY per-trajectory ``[M, 120]`` of one operator."""
    feats = RolloutFeatures(cfg, INDEX, 1, {"summary", "temporal"})
    sim = simulate_operators(cfg, np.array([INDEX]), unit_row[None].astype(np.float32), ic[None],
                             consumers=[feats], device="cpu", keep_trajectories=False, progress=lambda d, t: None)
    assert not sim.diverged.any()
    return feats.temporal[0], feats.per_traj[0]


def _row(cfg, **unit) -> np.ndarray:
    values = {**BASE, **unit}
    return np.array([values[n] for n in cfg.parameter_space.names], dtype=np.float64)


def test_baseline_applies_one_operator_step():
    """The seed stored one output state per realization: here T = 2 (initial condition + one)."""
    c = load_experiment(PATH)
    assert c.simulation.num_timesteps == 2 and c.grid_size == 128 and c.parameter_space.dim == 15
    assert set(BASE) == set(c.parameter_space.names)


def test_unit_values_pick_different_decoded_values(cfg):
    fixed = {n for n, s in cfg.parameter_space.ordered() if s.cardinality == 1}
    assert fixed == {"grid_size", "noise_schedule"}  # single values: nothing to vary
    assert set(OTHER) == set(cfg.parameter_space.names) - fixed
    for name, u in OTHER.items():
        ctx = CONTEXT.get(name, {})
        a, b = decode_row(_row(cfg, **ctx), cfg.parameter_space), decode_row(_row(cfg, **ctx, **{name: u}), cfg.parameter_space)
        assert a[name] != b[name], name
        assert {k: v for k, v in a.items() if k != name} == {k: v for k, v in b.items() if k != name}, name
    base = decode_row(_row(cfg), cfg.parameter_space)
    assert (base["num_layers"], base["base_channels"], base["kernel_size"], base["update_policy"]) == (2, 16, 3, "residual")


def _differs(a: np.ndarray, b: np.ndarray) -> float:
    """Largest relative difference over the entries finite in both."""
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[ok] - b[ok]) / (np.abs(a[ok]) + np.abs(b[ok]) + 1e-6)))


def test_every_parameter_acts_on_the_features(cfg):
    ic = initial_conditions_for(cfg, np.array([INDEX]), np.array(["gaussian_random_field_v2"]))[0]
    refs = {}
    inert, report = [], {}
    for name, u in OTHER.items():
        ctx = CONTEXT.get(name, {})
        key = tuple(sorted(ctx.items()))
        if key not in refs:
            refs[key] = _features(cfg, _row(cfg, **ctx), ic)
        t0, s0 = refs[key]
        t1, s1 = _features(cfg, _row(cfg, **ctx, **{name: u}), ic)
        np.testing.assert_array_equal(t0[0], t1[0])  # same initial condition, so state 0 is identical
        report[name] = (_differs(t0[1], t1[1]), _differs(s0, s1))
        if min(report[name]) < 1e-4:
            inert.append(name)
    assert not inert, f"parameters without effect on TEMPORAL or SUMMARY features: {inert}; {report}"
