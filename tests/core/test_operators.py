"""Operators: structure, reproducible weights, and no inert parameter."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spinlock_core.operators import OperatorSpec, build_operator, correlate, noise_regime, schedule_factor
from spinlock_core.rollout import rollout

BASE = OperatorSpec(num_layers=2, base_channels=4, kernel_size=3, grid_size=16, noise_scale=0.05,
                    dropout_rate=0.1, spatial_correlation=0.1, dt=0.1)


def _ic(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 16, 16, generator=g)


def _run(spec, index=3, T=5, M=2):
    op = build_operator(spec, root_seed=11, index=index, num_steps=T - 1)
    return rollout(op, _ic(), realizations=M, num_timesteps=T, root_seed=11, index=index, divergence_threshold=1e6).trajectory


def test_structure_follows_spec():
    op = build_operator(dataclasses.replace(BASE, num_layers=5), root_seed=0, index=0)
    widths = [b.conv.out_channels for b in op.blocks]
    assert widths == [4, 8, 16, 16, 16]
    assert op.input_block.conv.in_channels == 3 and op.head.out_channels == 3 and op.head.kernel_size == (1, 1)
    assert [b.residual for b in op.blocks] == [True, False, False, True, True]
    assert isinstance(op.input_block.norm, torch.nn.InstanceNorm2d) and op.input_block.norm.affine
    assert op.input_block.conv.bias is None and op.input_block.conv.padding_mode == "circular"


def test_rebuilt_operator_has_identical_weights():
    a = build_operator(BASE, root_seed=5, index=42)
    b = build_operator(BASE, root_seed=5, index=42)
    c = build_operator(BASE, root_seed=5, index=43)
    for (na, pa), (_, pb), (_, pc) in zip(a.state_dict().items(), b.state_dict().items(), c.state_dict().items()):
        assert torch.equal(pa, pb), na
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))


def test_rollout_reproducible_and_realisations_differ():
    t1, t2 = _run(BASE), _run(BASE)
    assert torch.equal(t1, t2)
    assert not torch.allclose(t1[0, -1], t1[1, -1])
    assert torch.equal(t1[:, 0], _ic().expand(2, 3, 16, 16))


def test_realisation_independent_of_how_many():
    assert torch.equal(_run(BASE, M=2)[1], _run(BASE, M=4)[1])


VARIATIONS = {
    "num_layers": 3, "base_channels": 6, "kernel_size": 5, "activation": "tanh", "dropout_rate": 0.25,
    "padding_mode": "reflect", "normalization": "layer", "noise_type": "laplace", "noise_scale": 0.2,
    "noise_schedule": "periodic", "spatial_correlation": 0.25, "update_policy": "convex", "dt": 0.3, "alpha": 0.2,
}


@pytest.mark.parametrize("name", sorted(VARIATIONS))
def test_every_parameter_changes_the_trajectory(name):
    base = dataclasses.replace(BASE, update_policy="convex") if name == "alpha" else BASE
    changed = dataclasses.replace(base, **{name: VARIATIONS[name]})
    assert not torch.allclose(_run(base), _run(changed), atol=1e-6), f"{name} is inert"


def test_annealing_schedule_changes_trajectory():
    assert not torch.allclose(_run(BASE, T=8), _run(dataclasses.replace(BASE, noise_schedule="annealing"), T=8))


def test_dropout_alone_is_stochastic():
    spec = dataclasses.replace(BASE, noise_scale=0.0, dropout_rate=0.2)
    t = _run(spec)
    assert not torch.allclose(t[0, -1], t[1, -1])
    det = _run(dataclasses.replace(spec, dropout_rate=0.0))
    assert torch.equal(det[0], det[1])


def test_spatial_correlation_lengthens_noise_correlation():
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(8, 2, 64, 64, generator=g)

    def lag1(x):
        return float((x * torch.roll(x, 1, -1)).mean() / (x * x).mean())

    assert abs(lag1(eps)) < 0.05
    assert lag1(correlate(eps, 0.05)) > 0.5
    assert lag1(correlate(eps, 0.1)) > lag1(correlate(eps, 0.05))
    assert torch.allclose(correlate(eps, 0.1).std(dim=(-2, -1)), torch.ones(8, 2), atol=1e-3)


def test_schedules_and_regimes():
    assert schedule_factor("constant", 7, 10, 4) == 1.0
    assert schedule_factor("annealing", 0, 10, 4) == 1.0 and schedule_factor("annealing", 5, 10, 4) == 0.5
    assert schedule_factor("periodic", 2, 10, 4) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="noise_schedule: unknown 'sawtooth'"):
        schedule_factor("sawtooth", 0, 1, 2)
    assert [noise_regime(x) for x in (0.001, 0.05, 0.5)] == ["low", "medium", "high"]


def test_divergence_stops_without_crashing():
    spec = dataclasses.replace(BASE, update_policy="autoregressive")
    op = build_operator(spec, root_seed=1, index=0, num_steps=7)
    r = rollout(op, _ic() * 100, realizations=2, num_timesteps=8, root_seed=1, index=0, divergence_threshold=1e-3)
    assert r.diverged and r.valid_states == 1
    assert torch.isfinite(r.trajectory).all()
    assert torch.equal(r.trajectory[:, -1], r.trajectory[:, 0])


def test_nonfinite_initial_field_is_caught():
    op = build_operator(BASE, root_seed=1, index=0)
    ic = _ic()
    ic[0, 0, 0] = float("nan")
    r = rollout(op, ic, realizations=1, num_timesteps=3, root_seed=1, index=0, divergence_threshold=1e6)
    assert r.diverged


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_rollout_matches_cpu_statistics():
    from spinlock_core.devices import resolve_device, resolve_dtype

    assert resolve_device("auto").type == "cuda"
    assert resolve_dtype("float32", torch.device("cuda")) is None and not torch.backends.cudnn.allow_tf32
    spec = dataclasses.replace(BASE, noise_scale=0.0, dropout_rate=0.0)
    cpu = _run(spec)
    op = build_operator(spec, root_seed=11, index=3, num_steps=4, device="cuda")
    gpu = rollout(op, _ic(), realizations=2, num_timesteps=5, root_seed=11, index=3, divergence_threshold=1e6).trajectory
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_auto_device_falls_back_to_cpu():
    from spinlock_core.devices import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' requested but no CUDA device"):
            resolve_device("cuda")


def test_reduced_precision_needs_cuda_and_is_explicit(write_config, monkeypatch, caplog):
    from spinlock_core import devices
    from spinlock_core.config import ConfigError, load_experiment
    from spinlock_core.devices import resolve_dtype

    assert resolve_dtype("float32", torch.device("cpu")) is None
    for p in ("tf32", "float16"):
        with pytest.raises(ValueError, match=f"simulation.precision: {p} needs a CUDA device"):
            resolve_dtype(p, torch.device("cpu"))
        with pytest.raises(ConfigError, match=f"precision: {p} is only supported on CUDA"):
            load_experiment(write_config(simulation__precision=p))  # the tiny config pins device: cpu
    # bfloat16 on the CPU: only with bf16 instructions, and logged
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    with pytest.raises(ValueError, match="bfloat16 on the CPU needs bf16 instructions"):
        resolve_dtype("bfloat16", torch.device("cpu"))
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="spinlock_core.devices"):
        assert resolve_dtype("bfloat16", torch.device("cpu")) is torch.bfloat16
    assert "bfloat16 autocast on the CPU" in caplog.text
    assert load_experiment(write_config(simulation__precision="bfloat16")).simulation.precision == "bfloat16"
