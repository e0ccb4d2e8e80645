"""Tests that pin the science (issue #11, first step): the evolution policies against hand-computed
values and through a real rollout with the configured ``dt`` and ``alpha``, and the noise streams
keyed by operator, realization and step. Each test fails for the defect it names (checked by
planting it: ``u + 2 dt O(u)``; noise that ignores the operator index)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinlock_core.operators import OperatorSpec, build_operator
from spinlock_core.operators.policies import apply_policy
from spinlock_core.rng import DrawKey
from spinlock_core.rollout import rollout


def test_policy_formulas_on_hand_computed_values():
    u, ou = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5])
    # residual u + dt O(u), dt = 0.25: 1 + 0.75, -2 + 0.125
    assert apply_policy("residual", u, ou, dt=0.25, alpha=0.9).tolist() == [1.75, -1.875]
    # convex alpha u + (1 - alpha) O(u), alpha = 0.25: 0.25 + 2.25, -0.5 + 0.375
    assert apply_policy("convex", u, ou, dt=0.9, alpha=0.25).tolist() == [2.5, -0.125]
    # autoregressive O(u)
    assert apply_policy("autoregressive", u, ou, dt=0.25, alpha=0.25).tolist() == [3.0, 0.5]
    with pytest.raises(ValueError, match="update_policy: unknown 'euler'"):
        apply_policy("euler", u, ou, dt=0.1, alpha=0.5)


def _expected(policy: str, u: np.ndarray, ou: np.ndarray, dt: float, alpha: float) -> np.ndarray:
    """The policy written out again in float64 (not through ``apply_policy``)."""
    return {"residual": u + dt * ou, "convex": alpha * u + (1 - alpha) * ou, "autoregressive": ou}[policy]


@pytest.mark.parametrize("policy", ["residual", "convex", "autoregressive"])
def test_rollout_steps_apply_the_policy_with_the_configured_dt_and_alpha(policy):
    """Every state of a real rollout is the policy applied to the previous state and the operator's
    output for that step's draws, with this operator's ``dt`` and ``alpha``."""
    spec = OperatorSpec(num_layers=2, base_channels=4, kernel_size=3, grid_size=8, noise_scale=0.05,
                        dropout_rate=0.1, update_policy=policy, dt=0.3, alpha=0.7)
    op = build_operator(spec, root_seed=11, index=4).eval()
    u0 = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.5
    res = rollout(op, u0, realizations=2, num_timesteps=4, root_seed=11, index=4, divergence_threshold=1e6)
    traj = res.trajectory
    assert not res.diverged and traj.shape == (2, 4, 3, 8, 8)
    key = DrawKey.for_operator(11, 4, 2, stage="noise")
    for t in range(1, 4):
        u = traj[:, t - 1]
        with torch.no_grad():
            ou = op(u, t - 1, key.at_step(t - 1)).double().numpy()
        want = _expected(policy, u.double().numpy(), ou, 0.3, 0.7)
        np.testing.assert_allclose(traj[:, t].double().numpy(), want, rtol=1e-5, atol=1e-6)
        assert not np.allclose(traj[:, t].numpy(), traj[:, t - 1].numpy())  # the state moves


def _rollout(index: int, *, noise: float = 0.2, dropout: float = 0.2, root: int = 5) -> torch.Tensor:
    # the same weights (built for index 1) rolled out under the noise key of ``index``
    spec = OperatorSpec(num_layers=1, base_channels=4, kernel_size=3, grid_size=8, noise_scale=noise,
                        dropout_rate=dropout, update_policy="residual", dt=0.5)
    op = build_operator(spec, root_seed=root, index=1).eval()
    u0 = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(2))
    return rollout(op, u0, realizations=3, num_timesteps=4, root_seed=root, index=index,
                   divergence_threshold=1e6).trajectory


def test_noise_streams_differ_between_operators_realizations_and_steps_and_repeat_for_the_same_key():
    a, again, other = _rollout(1), _rollout(1), _rollout(2)
    assert torch.equal(a, again)  # same (root, operator, realization, step): the same bits
    assert torch.equal(a[:, 0], other[:, 0])  # the shared initial condition
    for t in range(1, 4):  # another operator index: other draws at every step and realization
        assert not torch.allclose(a[:, t], other[:, t]), t
        for m in range(3):
            assert not torch.allclose(a[m, t], other[m, t]), (m, t)
    for t in range(1, 4):  # realizations differ from each other at every step
        assert not torch.allclose(a[0, t], a[1, t]) and not torch.allclose(a[1, t], a[2, t])
    assert not torch.equal(_rollout(1, root=6), a)  # and the root seed is part of the key
    # without noise and dropout every realization is the deterministic trajectory: the differences
    # above come from the draws alone
    quiet = _rollout(1, noise=0.0, dropout=0.0)
    assert torch.equal(quiet[0], quiet[1]) and torch.equal(quiet, _rollout(2, noise=0.0, dropout=0.0))
    # step-to-step: the draws of consecutive steps are not the same numbers
    key = DrawKey.for_operator(5, 1, 3, stage="noise")
    from spinlock_core.rng import unit_noise

    s0, s1 = unit_noise(key.at_step(0), 0, (3, 8, 8), "gaussian"), unit_noise(key.at_step(1), 0, (3, 8, 8), "gaussian")
    assert not torch.allclose(s0, s1)


PRODUCTION = "configs/experiments/100k_full_features.yaml"


def _production_trajectory(cfg, unit_row: np.ndarray, index: int, steps: int) -> torch.Tensor:
    from spinlock_core.generation import operator_specs

    spec = operator_specs(cfg, unit_row[None, :])[0]
    op = build_operator(spec, root_seed=cfg.root_seed, index=index, num_steps=cfg.simulation.num_timesteps - 1)
    u0 = torch.from_numpy(np.random.default_rng(0).standard_normal((3, cfg.grid_size, cfg.grid_size)).astype(np.float32))
    r = rollout(op, u0, realizations=2, num_timesteps=steps, root_seed=cfg.root_seed,
                index=index, divergence_threshold=cfg.simulation.divergence_threshold)
    return r.trajectory


def test_every_sampled_parameter_acts_on_the_trajectory_at_production_settings():
    """With the production config's grid (64x64), dt (0.01) and parameter space (M = 2 of its 5
    realizations, to keep it fast), moving any
    one sampled parameter from the bottom to the top of its range (the others mid-range, base
    width and kernel at their cheapest) changes the trajectory within 6 steps by far more than rounding: over
    256 float32 ulps of the field scale. The weakest is spatial_correlation (measured 8e-5 of the
    field scale, ~700 ulps: at dt = 0.01 and a mid noise scale of 3e-3 the noise is faint)."""
    from spinlock_core.config import load_experiment
    from tests.conftest import ROOT

    cfg = load_experiment(ROOT / PRODUCTION)
    names = [n for n, _ in cfg.parameter_space.ordered()]
    sampled = []
    for j, (name, spec) in enumerate(cfg.parameter_space.ordered()):
        choices = getattr(spec, "choices", None)
        if choices is not None and len(choices) == 1:
            continue  # a constant of the config, not a sampled parameter
        sampled.append((j, name))
    assert {n for _, n in sampled} == {"num_layers", "base_channels", "kernel_size", "dropout_rate", "noise_scale",
                                       "spatial_correlation", "update_policy"}, names
    mid = np.full(len(names), 0.5)
    mid[names.index("base_channels")] = 0.0
    mid[names.index("kernel_size")] = 0.0
    for j, name in sampled:
        lo, hi = mid.copy(), mid.copy()
        lo[j], hi[j] = 0.0, 0.999
        a = _production_trajectory(cfg, lo, 7, 7)
        b = _production_trajectory(cfg, hi, 7, 7)
        diff = float((a[:, 1:] - b[:, 1:]).abs().max())
        ulps = 256 * float(np.finfo(np.float32).eps) * float(a.abs().max())
        assert diff > ulps, f"{name} does not act at production settings: {diff:.3g} <= {ulps:.3g}"
