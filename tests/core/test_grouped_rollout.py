"""Grouped rollouts (G operators per call) against each operator rolled out alone.

Tolerance: a grouped call computes every operator's convolutions with the same weights, inputs and
draws, but one ``conv2d(groups=G)`` may sum each output's C_in * k^2 products in another order
than G separate calls, and a batched FFT may order its butterflies differently. Each such
reordering moves a float32 result by a few units in the last place (eps = 2^-23 ~ 1.2e-7 of the
value); through a handful of layers and steps that stays far below 64 ulps of the operator's
field scale, the bound used here (measured: at most ~8 ulps). Any formula error (another
operator's noise, a dt or alpha of the wrong operator, a missing dropout scale) moves values by
percent, ~10^5 times more.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import yaml

from spinlock_core.config import ConfigError, load_experiment
from spinlock_core.config.batching import BatchingConfig
from spinlock_core.features.extract import RolloutFeatures
from spinlock_core.generation import ic_types_for, initial_conditions_for, sample_parameters, simulate_operators
from spinlock_core.generation.grouping import operator_bytes, plan_groups, resolve_group_size
from spinlock_core.operators import OperatorSpec, build_operator
from spinlock_core.operators.grouped import GroupedOperator, group_by_signature, signature
from spinlock_core.rng import NOISE, DrawKey, keep_mask, keep_mask_keys, unit_noise, unit_noise_keys
from spinlock_core.rollout import rollout, rollout_group
from spinlock_core.storage.fingerprints import code_version

from tests.conftest import tiny_dict

ULPS = 64
EPS32 = float(np.finfo(np.float32).eps)


def _close(a: torch.Tensor, b: torch.Tensor, scale: float | None = None) -> None:
    scale = float(a.abs().max()) if scale is None else scale
    err = float((a - b).abs().max())
    assert err <= ULPS * EPS32 * max(scale, 1.0), f"max |difference| {err:.3g} at field scale {scale:.3g}"


# per-operator settings that differ inside a group: dropout, noise (scale, type, schedule,
# correlation) and the policy's dt / alpha
VARIED = [
    dict(dropout_rate=0.1, noise_scale=0.05, noise_type="gaussian", noise_schedule="constant", spatial_correlation=0.1, dt=0.01, alpha=0.3),
    dict(dropout_rate=0.0, noise_scale=0.0, noise_type="laplace", noise_schedule="periodic", spatial_correlation=0.0, dt=0.05, alpha=0.5),
    dict(dropout_rate=0.25, noise_scale=0.5, noise_type="uniform", noise_schedule="annealing", spatial_correlation=0.0, dt=0.2, alpha=0.9),
    dict(dropout_rate=0.0, noise_scale=1e-3, noise_type="gaussian", noise_schedule="constant", spatial_correlation=0.25, dt=0.1, alpha=0.1),
    # noise_scale 1.0 with a constant schedule: an amplitude of exactly 1
    dict(dropout_rate=0.3, noise_scale=1.0, noise_type="laplace", noise_schedule="constant", spatial_correlation=0.05, dt=0.3, alpha=0.7),
]
ARCHS = [
    dict(num_layers=3, base_channels=4, kernel_size=3, activation="gelu", normalization="instance", padding_mode="circular", update_policy="residual"),
    dict(num_layers=4, base_channels=2, kernel_size=5, activation="tanh", normalization="layer", padding_mode="reflect", update_policy="convex"),
    dict(num_layers=2, base_channels=3, kernel_size=3, activation="relu", normalization="none", padding_mode="zeros", update_policy="autoregressive"),
]
INDICES = [3, 10, 11, 40, 977]


def _group(arch: dict, *, num_steps: int = 8, indices=INDICES, root: int = 5):
    specs = [OperatorSpec(**arch, **v, grid_size=16) for v in VARIED[: len(indices)]]
    ops = [build_operator(s, root_seed=root, index=i, num_steps=num_steps) for s, i in zip(specs, indices)]
    u0 = torch.randn(len(ops), 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return ops, u0


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a['update_policy']}-{a['normalization']}-{a['padding_mode']}")
@pytest.mark.parametrize("method", ["grouped_conv", "vmap"])
def test_group_equals_each_operator_alone(arch, method):
    """Every state of every operator of a group equals its own rollout (same noise, dropout,
    dt, alpha, schedule), for each policy, normalization and padding."""
    ops, u0 = _group(arch)
    group = GroupedOperator(ops, method=method)
    kw = dict(realizations=3, num_timesteps=9, root_seed=5, divergence_threshold=1e6)
    together = rollout_group(group, u0, indices=INDICES, **kw)
    for g, op in enumerate(ops):
        alone = rollout(op, u0[g], index=INDICES[g], **kw)
        assert not alone.diverged and not together[g].diverged
        assert together[g].valid_states == alone.valid_states == 9
        _close(alone.trajectory, together[g].trajectory)
        # the noise and dropout act: with another operator's keys the states are far apart
        assert float((alone.trajectory[:, -1] - together[(g + 1) % len(ops)].trajectory[:, -1]).abs().max()) > 1e-3


def test_one_application_equals_each_operator_and_keys_matter():
    """One grouped application against each operator's forward; swapping two operators' keys
    changes exactly their channels."""
    ops, _ = _group(ARCHS[0])
    group = GroupedOperator(ops)
    u = torch.randn(2, 3 * len(ops), 16, 16, generator=torch.Generator().manual_seed(2))
    keys = [DrawKey.for_operator(5, i, 2).at_step(4) for i in INDICES]
    with torch.inference_mode():
        out = group(u, 4, keys)
        for g, op in enumerate(ops):
            _close(op(u[:, 3 * g : 3 * g + 3], 4, keys[g]), out[:, 3 * g : 3 * g + 3])
        swapped = group(u, 4, [keys[1], keys[0], *keys[2:]])
        assert float((swapped[:, :6] - out[:, :6]).abs().max()) > 1e-3
        assert torch.equal(swapped[:, 6:], out[:, 6:])
        # deterministic: no key, no noise, no dropout
        det = group(u, 4, None)
        for g, op in enumerate(ops):
            _close(op(u[:, 3 * g : 3 * g + 3], 4, None), det[:, 3 * g : 3 * g + 3])
        # the default application step is 0 (it sets the periodic and annealing schedules)
        keys0 = [k.at_step(0) for k in keys]
        assert torch.equal(group(u, keys=keys0), group(u, 0, keys0))
        assert not torch.equal(group(u, keys=keys0), group(u, 5, keys0))
        with pytest.raises(ValueError, match=r"u must be \[M, 15, H, W\], got \(2, 12, 16, 16\)"):
            group(u[:, :12], 4, keys)
        with pytest.raises(ValueError, match=r"u must be \[M, 15, H, W\], got \(15, 16, 16\)"):
            group(u[0], 4, keys)
        with pytest.raises(ValueError, match="4 keys for a group of 5 operators"):
            group(u, 4, keys[:4])
        with pytest.raises(ValueError, match="key has 3 realizations for a batch of 2"):
            group(u, 4, [DrawKey.for_operator(5, i, 3) for i in INDICES])


def test_a_group_of_one_is_the_operator():
    ops, u0 = _group(ARCHS[1], indices=INDICES[:1])
    kw = dict(realizations=2, num_timesteps=5, root_seed=5, divergence_threshold=1e6)
    (together,) = rollout_group(GroupedOperator(ops), u0, indices=INDICES[:1], **kw)
    _close(rollout(ops[0], u0[0], index=INDICES[0], **kw).trajectory, together.trajectory)


def test_divergence_inside_a_group_matches_alone():
    """Operators that diverge at different steps stop (and repeat their last finite state)
    exactly as alone while the others go on."""
    ops, u0 = _group(ARCHS[2], num_steps=12)  # autoregressive, unnormalised: fields grow
    kw = dict(realizations=2, num_timesteps=13, root_seed=5)
    free = [rollout(op, u0[g], index=INDICES[g], divergence_threshold=1e30, **kw) for g, op in enumerate(ops)]
    peaks = sorted(float(r.trajectory[:, 1:].abs().max()) for r in free)  # the states after the IC
    threshold = 0.5 * (peaks[1] + peaks[2])  # three operators cross it, two never do
    alone = [rollout(op, u0[g], index=INDICES[g], divergence_threshold=threshold, **kw) for g, op in enumerate(ops)]
    together = rollout_group(GroupedOperator(ops), u0, indices=INDICES, divergence_threshold=threshold, **kw)
    assert sum(r.diverged for r in alone) >= 2 and not all(r.diverged for r in alone)
    for a, b in zip(alone, together):
        assert (a.diverged, a.valid_states) == (b.diverged, b.valid_states)
        _close(a.trajectory, b.trajectory)
        if a.diverged:  # the remaining states repeat the last finite one
            assert torch.equal(b.trajectory[:, a.valid_states:], b.trajectory[:, a.valid_states - 1 : a.valid_states].expand_as(b.trajectory[:, a.valid_states:]))
    # everyone diverges: the loop stops and fills
    low = rollout_group(GroupedOperator(ops), u0, indices=INDICES, divergence_threshold=1e-3, **kw)
    assert all(r.diverged and r.valid_states == 1 for r in low)
    assert torch.equal(low[0].trajectory[:, 5], u0[0].unsqueeze(0).expand(2, -1, -1, -1))


def test_batched_draws_are_each_keys_own():
    keys = [DrawKey.for_operator(7, i, 3).at_step(9) for i in (0, 5, 2**31)]
    for kind in ("gaussian", "uniform", "laplace"):
        for backend in ("torch", "numba"):
            got = unit_noise_keys(keys, NOISE, (2, 5, 7), kind, backend=backend)
            assert torch.equal(got, torch.stack([unit_noise(k, NOISE, (2, 5, 7), kind) for k in keys]))
    ps = [0.1, 0.0, 0.6]
    for backend in ("torch", "numba"):
        got = keep_mask_keys(keys, 4, (3, 8, 8), ps, backend=backend)
        assert torch.equal(got, torch.stack([keep_mask(k, 4, (3, 8, 8), p) for k, p in zip(keys, ps)]))
    with pytest.raises(ValueError, match="share realizations and step"):
        unit_noise_keys([keys[0], keys[1].at_step(3)], NOISE, (4,), "gaussian")
    with pytest.raises(ValueError, match="2 rates for 3 keys"):
        keep_mask_keys(keys, 1, (4,), [0.1, 0.2])
    with pytest.raises(ValueError, match="must not be empty"):
        unit_noise_keys([], NOISE, (4,), "gaussian")


def test_signature_grouping_and_memory_budget():
    a = OperatorSpec(num_layers=2, base_channels=4, grid_size=16)
    b = OperatorSpec(num_layers=2, base_channels=4, grid_size=16, noise_scale=0.3, dropout_rate=0.2, dt=0.2)  # same signature
    c = OperatorSpec(num_layers=2, base_channels=4, grid_size=16, update_policy="convex")
    d = OperatorSpec(num_layers=3, base_channels=4, grid_size=16)
    assert signature(a) == signature(b) != signature(c)
    assert group_by_signature([a, c, b, d, a, a, c], 2) == [[0, 2], [4, 5], [1, 6], [3]]
    assert group_by_signature([a, c, b], 1) == [[0], [2], [1]]  # by signature, then position
    with pytest.raises(ValueError, match="max_group must be >= 1"):
        group_by_signature([a], 0)
    # bytes: trajectory M*T*C*H*W*4 plus 10 activations of the widest layer (2b = 8 channels)
    assert operator_bytes(d, 5, 7) == 5 * 7 * 3 * 256 * 4 + 10 * 5 * 4 * 4 * 256 * 4
    cpu = torch.device("cpu")
    per = operator_bytes(a, 5, 7)
    assert resolve_group_size(BatchingConfig(), cpu, per) == 1  # auto on the CPU: the loop
    assert resolve_group_size(BatchingConfig(group_size=4), cpu, per) == 4
    budget = BatchingConfig(group_size=64, memory_budget_gb=10.5 * per / 2**30)
    assert resolve_group_size(budget, cpu, per) == 10  # capped by the budget
    assert resolve_group_size(BatchingConfig(group_size=8, memory_budget_gb=1e-9), cpu, per) == 1  # never below 1
    plan = plan_groups([a, c, b, d], BatchingConfig(group_size=8), cpu, realizations=5, num_timesteps=7)
    assert plan.group_size == 8 and plan.groups == [[0, 2], [1], [3]]
    with pytest.raises(ValueError, match="must share the signature"):
        GroupedOperator([build_operator(s, root_seed=0, index=i) for i, s in enumerate([a, c])])


def _grouping_config(tmp_path, group_size):
    d = tiny_dict(**{
        "parameter_space.architecture.num_layers": {"type": "choice", "choices": [2]},
        "parameter_space.architecture.base_channels": {"type": "choice", "choices": [3]},
        "parameter_space.architecture.kernel_size": {"type": "choice", "choices": [3]},
        "parameter_space.architecture.activation": {"type": "choice", "choices": ["gelu", "tanh"]},
        "simulation.num_timesteps": 8,
        "simulation.batching": {"group_size": group_size},
    })
    p = tmp_path / f"g{group_size}.yaml"
    p.write_text(yaml.safe_dump(d))
    return load_experiment(p)


def test_simulate_mixed_shard_grouped_equals_loop(tmp_path):
    """A shard of mixed signatures (activation x policy) in groups of at most 3: every stored array
    and every SUMMARY / TEMPORAL feature equals the one-at-a-time loop."""
    runs = {}
    for g in (1, 3):
        cfg = _grouping_config(tmp_path, g)
        idx = np.arange(16)
        unit, _ = sample_parameters(cfg)
        ics = initial_conditions_for(cfg, idx, ic_types_for(cfg, idx))
        fc = RolloutFeatures(cfg, 0, 16, {"summary", "temporal"})
        runs[g] = (simulate_operators(cfg, idx, unit[idx], ics, consumers=[fc], keep_trajectories=True,
                                      progress=lambda d, t: None), fc)
    (loop, f1), (grouped, f3) = runs[1], runs[3]
    sigs = {signature(s) for s in grouped.specs}
    assert len(sigs) >= 3, "the shard must mix signatures"
    assert grouped.timings["group_size"] == 3 and loop.timings["group_size"] == 1
    assert len(sigs) < grouped.timings["groups"] < 16  # real groups, split at 3
    np.testing.assert_array_equal(loop.diverged, grouped.diverged)
    np.testing.assert_array_equal(loop.valid_states, grouped.valid_states)
    assert loop.operator_steps == grouped.operator_steps
    for a, b in zip(loop.rollout_arrays().items(), grouped.rollout_arrays().items()):
        assert a[0] == b[0]
        if a[1].dtype.kind == "f":
            for i in range(16):
                _close(torch.from_numpy(a[1][i]), torch.from_numpy(b[1][i]))
        else:
            np.testing.assert_array_equal(a[1], b[1])
    assert f1.seen.all() and f3.seen.all()
    np.testing.assert_allclose(f3.temporal, f1.temporal, rtol=1e-4, atol=1e-5)
    # ill-conditioned columns (ratios of small spreads such as *_cv, differences of O(1)
    # correlations such as lag_asym_*) amplify the fields' ~1e-7 relative differences to ~1e-4
    # of the column's magnitude: bound 1e-3 of each column's largest value over the shard
    for got, want in ((f3.per_traj, f1.per_traj), (f3.aggregated, f1.aggregated)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        cols = want.reshape(-1, want.shape[-1])
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (documented NaN) columns
            scale = np.nan_to_num(np.nanmax(np.abs(cols), axis=0), nan=0.0)
        diff = np.nan_to_num(np.abs(got - want).reshape(-1, want.shape[-1]), nan=0.0)
        assert (diff <= 1e-3 * scale + 1e-6).all(), f"columns {np.nonzero((diff > 1e-3 * scale + 1e-6).any(0))[0]}"
    np.testing.assert_array_equal(np.isnan(f3.per_traj), np.isnan(f1.per_traj))


def test_batching_config_is_validated_and_not_part_of_the_data(tmp_path, write_config):
    for bad, msg in [({"group_size": 0}, "group_size"), ({"memory_budget_gb": -1}, "memory_budget_gb"),
                     ({"method": "loop"}, "method"), ({"compile": "yes"}, "compile"), ({"groups": 2}, "groups")]:
        with pytest.raises(ConfigError, match=msg):
            load_experiment(write_config(simulation__batching=bad))
    base = load_experiment(write_config())
    other = load_experiment(write_config(simulation__batching={"group_size": 32, "method": "vmap"}))
    assert code_version(base, "rollouts") == code_version(other, "rollouts")
    assert code_version(base, "features_summary") == code_version(other, "features_summary")


def test_compiled_group_matches_eager():
    """``simulation.batching.compile: torch_compile`` (inductor on the CPU) gives the eager
    group's states to float32 rounding."""
    # one hidden block: three compiled graphs (input block, block, head) keep the test short
    ops, u0 = _group({**ARCHS[0], "num_layers": 1}, indices=INDICES[:2])
    eager, compiled = GroupedOperator(ops), GroupedOperator(ops)
    compiled.compile("torch_compile")
    kw = dict(realizations=2, num_timesteps=4, root_seed=5, indices=INDICES[:2], divergence_threshold=1e6)
    for a, b in zip(rollout_group(eager, u0, **kw), rollout_group(compiled, u0, **kw)):
        _close(a.trajectory, b.trajectory)
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device"):
        GroupedOperator(ops).compile("cuda_graphs")


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
@pytest.mark.parametrize("arch", ARCHS[:2], ids=["residual-instance", "convex-layer"])
def test_cuda_group_equals_cpu_alone(arch):
    """On CUDA the group draws the CPU's bits; the fields agree with the CPU loop to the two
    devices' convolution rounding (TF32 off: simulation.precision float32)."""
    from spinlock_core.devices import resolve_dtype

    resolve_dtype("float32", torch.device("cuda"))
    ops, u0 = _group(arch)
    gpu_ops = [build_operator(op.spec, root_seed=5, index=i, num_steps=8, device="cuda") for op, i in zip(ops, INDICES)]
    kw = dict(realizations=3, num_timesteps=9, root_seed=5, divergence_threshold=1e6)
    together = rollout_group(GroupedOperator(gpu_ops), u0.cuda(), indices=INDICES, **kw)
    for g, op in enumerate(ops):
        alone = rollout(op, u0[g], index=INDICES[g], **kw)
        a, b = alone.trajectory, together[g].trajectory.cpu()
        assert float((a - b).abs().max()) <= 1e-4 * max(float(a.abs().max()), 1.0)


@cuda
def test_cuda_graphs_group_matches_eager():
    ops, u0 = _group(ARCHS[0])
    gpu_ops = [build_operator(op.spec, root_seed=5, index=i, num_steps=8, device="cuda") for op, i in zip(ops, INDICES)]
    eager, graphed = GroupedOperator(gpu_ops), GroupedOperator(gpu_ops)
    graphed.compile("cuda_graphs")
    kw = dict(realizations=3, num_timesteps=9, root_seed=5, indices=INDICES, divergence_threshold=1e6)
    for a, b in zip(rollout_group(eager, u0.cuda(), **kw), rollout_group(graphed, u0.cuda(), **kw)):
        assert float((a.trajectory - b.trajectory).abs().max()) <= 1e-4 * max(float(a.trajectory.abs().max()), 1.0)


@cuda
def test_cuda_auto_group_size_uses_the_budget():
    dev = torch.device("cuda")
    per = operator_bytes(OperatorSpec(num_layers=3, base_channels=32, kernel_size=5, grid_size=64), 5, 256)
    g = resolve_group_size(BatchingConfig(), dev, per)
    free, _ = torch.cuda.mem_get_info(dev)
    assert 1 <= g <= 128 and g == min(128, max(1, int(0.4 * free) // per))
