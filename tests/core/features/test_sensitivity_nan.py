"""Operator sensitivity (SUMMARY 110-119): a failed estimate is NaN, never a sentinel number.

The 1.0 code turned NaN into 0, +inf into 38.5 and -inf (the log of a zero norm, floored at
1e-30) into -30. A failed estimate must stay recognisable: NaN, allowed by
``families.documented_nan`` and counted by the ``nan_inf`` check.
"""

from __future__ import annotations

import numpy as np
import torch

from spinlock_core.config import load_experiment
from spinlock_core.features.families import documented_constant, documented_nan
from spinlock_core.features.sensitivity import SENSITIVITY_NAMES, sensitivity_features
from spinlock_core.features.summary import AGGREGATED_NAMES, SUMMARY_NAMES
from spinlock_core.operators import OperatorSpec, build_operator
from spinlock_core.storage.layout import PATHS

SENTINELS = (0.0, 38.5, np.log10(3.4e38), -30.0)


def _operator():
    spec = OperatorSpec(num_layers=1, base_channels=4, kernel_size=3, grid_size=16, normalization="none",
                        activation="leaky_relu", noise_scale=0.0, dropout_rate=0.0, dt=0.1)
    return build_operator(spec, root_seed=0, index=0, num_steps=5)


def _trajectory(scale: float = 1.0) -> torch.Tensor:
    return torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * scale


def col(s: np.ndarray, name: str) -> np.ndarray:
    return s[:, SENSITIVITY_NAMES.index(name)]


def test_constant_output_operator():
    """O(u) = its bias: L_O = 0 at every size, so lipschitz_op_scaling = log(0 / 0) fails, and
    G = F - u has a zero Jacobian, so jacobian_norm = log10(0) fails. lipschitz_op_t0 = 0 is a
    genuine value (a constant map has Lipschitz constant 0)."""
    op = _operator()
    with torch.no_grad():
        op.head.weight.zero_()
    s = sensitivity_features(op, _trajectory(), root_seed=0, index=0).numpy()
    assert np.isnan(col(s, "lipschitz_op_scaling")).all()  # 1.0: 0
    assert np.isnan(col(s, "jacobian_norm")).all()  # 1.0: -30
    assert (col(s, "lipschitz_op_t0") == 0).all()
    ok = [SENSITIVITY_NAMES.index(n) for n in ("lipschitz_incr_t0", "curvature", "noise_share", "output_input_corr")]
    assert np.isfinite(s[:, ok]).all()


def test_zero_state_gives_nan_not_floor_values():
    """A zero state gets a zero perturbation: every Lipschitz ratio is 0/0 (1.0: -30 and 0)."""
    s = sensitivity_features(_operator(), _trajectory(0.0), root_seed=0, index=0).numpy()
    assert np.isnan(s[:, :7]).all()
    assert np.isfinite(col(s, "jacobian_norm")).all()  # the JVP step is floored at 1e-6, still defined


def test_overflow_is_nan_only_in_its_own_realization():
    op = _operator()
    with torch.no_grad():
        op.head.weight.mul_(1e10)
    traj = _trajectory()
    traj[1] *= 1e30  # O(u) overflows float32 in realization 1 only
    s = sensitivity_features(op, traj, root_seed=0, index=0).numpy()
    assert np.isfinite(s[0]).all()
    assert np.isnan(s[1]).all()  # 1.0: 0, 38.5 and a 0 correlation


def test_healthy_operator_is_finite_and_sentinel_free():
    s = sensitivity_features(_operator(), _trajectory(), root_seed=0, index=0).numpy()
    assert np.isfinite(s).all()
    logs = s[:, [0, 1, 2, 5, 8]]
    assert not np.isin(np.round(logs, 4), np.round(SENTINELS, 4)).any()


def test_sensitivity_nan_is_documented_but_never_excuses_a_constant(write_config):
    cfg = load_experiment(write_config(features={"summary": {"extract_operator_features": True}},
                                       simulation__num_timesteps=32))
    allowed = documented_nan(PATHS.SUMMARY_TRAJ, cfg)
    assert allowed[110:120].all() and not allowed[:110].any()
    assert documented_nan(PATHS.SUMMARY_AGG, cfg)[[110, 230, 350]].all()
    excused = documented_constant(PATHS.SUMMARY_TRAJ, cfg) | documented_constant(PATHS.SUMMARY_AGG, cfg)
    assert not excused & set(SENSITIVITY_NAMES)
    assert {n for n in excused if n in AGGREGATED_NAMES} == {"output_input_corr_std", "output_input_corr_cv"}
    assert not excused & set(SUMMARY_NAMES)
