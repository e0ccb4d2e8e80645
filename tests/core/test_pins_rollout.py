"""Pins of the time loop (``rollout`` / ``rollout_group``) and of the resolved operator spec that
no other test shows (gaps found by mutation testing).

- autocast: a rollout with ``autocast_dtype`` equals a loop written here under an explicit
  ``torch.autocast("cpu", dtype=...)`` (bit for bit: same ops, same draws) and differs from the
  float32 rollout; float16 as well as bfloat16, so the dtype itself (not the CPU default, which
  is bfloat16) is what is used;
- ``on_step(step, u_before, u_after)``: its arguments against the trajectory;
- the divergence test is ``peak <= threshold``: a threshold exactly at a state's peak keeps it;
- validation: each condition alone, with the message's interpolated values;
- device / dtype: buffers on the operator's device in float32 whatever the default device/dtype,
  and the operator receives the state on its device in float32;
- ``operator_spec`` coerces every typed key (int, float, str) and fills the defaults;
- ``conv_flops`` against the convolutions of the built operator.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import torch

from spinlock_core.operators import OperatorSpec, build_operator, operator_spec
from spinlock_core.operators.grouped import GroupedOperator
from spinlock_core.rng import DrawKey
from spinlock_core.rollout import rollout, rollout_group

META = torch.device("meta")
ROOT, INDEX, M, T = 7, 3, 2, 4
SPEC = OperatorSpec(num_layers=1, base_channels=2, grid_size=8, noise_scale=0.1, dropout_rate=0.2, dt=0.1)
BIG = 1e30


def _op(spec: OperatorSpec = SPEC, index: int = INDEX, device="cpu"):
    return build_operator(spec, root_seed=ROOT, index=index, num_steps=T, device=device)


def _u0(*shape, seed=0, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _kw(**over):
    kw = dict(realizations=M, num_timesteps=T, root_seed=ROOT, index=INDEX, divergence_threshold=BIG)
    kw.update(over)
    return kw


def _gkw(**over):
    kw = dict(realizations=M, num_timesteps=T, root_seed=ROOT, indices=[0, 1], divergence_threshold=BIG)
    kw.update(over)
    return kw


def _autocast_or_skip(dtype):
    """Skip where torch refuses (or silently disables) CPU autocast to ``dtype``."""
    try:
        with torch.autocast("cpu", dtype=dtype):
            ok = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == dtype
    except (RuntimeError, ValueError) as e:  # pragma: no cover - depends on the torch build
        pytest.skip(f"CPU autocast to {dtype} refused: {e}")
    if not ok:  # pragma: no cover
        pytest.skip(f"CPU autocast to {dtype} is disabled by this torch build")


# ---------------------------------------------------------------------------------- autocast


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rollout_autocast_is_the_loop_under_that_autocast(dtype):
    _autocast_or_skip(dtype)
    op, u0 = _op(), _u0(3, 8, 8)
    got = rollout(op, u0, autocast_dtype=dtype, **_kw()).trajectory
    # the residual policy written out, the operator under an explicit autocast of that dtype
    u = u0.unsqueeze(0).expand(M, 3, 8, 8).contiguous()
    want = [u]
    with torch.inference_mode():
        for t in range(1, T):
            with torch.autocast("cpu", dtype=dtype):
                ou = op(u, t - 1, DrawKey(ROOT, INDEX, tuple(range(M)), t - 1, "noise"))
            assert ou.dtype == dtype  # the convolutions did run in that dtype
            u = u + SPEC.dt * ou.float()
            want.append(u)
    want = torch.stack(want, 1)
    assert got.dtype == torch.float32
    assert torch.equal(got, want)
    fp32 = rollout(op, u0, **_kw()).trajectory
    assert torch.equal(fp32[:, 0], got[:, 0]) and not torch.equal(fp32[:, 1:], got[:, 1:])


def test_rollout_group_autocast_is_the_loop_under_that_autocast():
    dtype = torch.float16  # not the CPU autocast default (bfloat16)
    _autocast_or_skip(dtype)
    group = GroupedOperator([_op(index=0), _op(index=1)])
    u0 = _u0(2, 3, 8, 8)
    got = rollout_group(group, u0, autocast_dtype=dtype, **_gkw())
    u = u0.reshape(1, 6, 8, 8).expand(M, 6, 8, 8).contiguous()
    want = [u]
    with torch.inference_mode():
        for t in range(1, T):
            with torch.autocast("cpu", dtype=dtype):
                ou = group(u, t - 1, [DrawKey(ROOT, i, tuple(range(M)), t - 1, "noise") for i in (0, 1)])
            assert ou.dtype == dtype
            u = u + SPEC.dt * ou.float()
            want.append(u)
    want = torch.stack(want, 1).view(M, T, 2, 3, 8, 8)  # [M, T, G, C, H, W]
    fp32 = rollout_group(group, u0, **_gkw())
    for g in range(2):
        assert torch.equal(got[g].trajectory, want[:, :, g])
        assert not torch.equal(fp32[g].trajectory[:, 1:], got[g].trajectory[:, 1:])


# ---------------------------------------------------------------------------------- on_step


def test_on_step_gets_the_step_and_the_states_before_and_after():
    calls = []
    r = rollout(_op(), _u0(3, 8, 8), on_step=lambda s, a, b: calls.append((s, a.clone(), b.clone())), **_kw())
    assert [c[0] for c in calls] == list(range(T - 1))
    for s, before, after in calls:
        assert torch.equal(before, r.trajectory[:, s]) and torch.equal(after, r.trajectory[:, s + 1])


def test_on_step_is_not_called_for_the_diverging_step():
    op, u0 = _op(dataclasses.replace(SPEC, dt=1.0)), _u0(3, 8, 8)  # dt = 1: the peaks grow
    free = rollout(op, u0, **_kw()).trajectory
    # a threshold between the peak of state 1 and the (larger) peak of state 2
    p1, p2 = (float(free[:, t].abs().max()) for t in (1, 2))
    assert p2 > p1
    calls = []
    r = rollout(op, u0, on_step=lambda s, a, b: calls.append(s), **_kw(divergence_threshold=(p1 + p2) / 2))
    assert calls == [0] and r.diverged and r.valid_states == 2
    assert torch.equal(r.trajectory[:, :2], free[:, :2])
    assert torch.equal(r.trajectory[:, 2:], free[:, 1:2].expand(M, T - 2, 3, 8, 8))


# ---------------------------------------------------------------------------------- divergence


def test_rollout_threshold_equal_to_the_peak_does_not_diverge():
    op, u0 = _op(), _u0(3, 8, 8)
    free = rollout(op, u0, **_kw(num_timesteps=2)).trajectory
    peak = float(free[:, 1].abs().max())  # a float32 value, exact as a python float
    r = rollout(op, u0, **_kw(num_timesteps=2, divergence_threshold=peak))
    assert (r.diverged, r.valid_states) == (False, 2) and torch.equal(r.trajectory, free)
    below = float(np.nextafter(np.float32(peak), np.float32(0)))
    r = rollout(op, u0, **_kw(num_timesteps=2, divergence_threshold=below))
    assert (r.diverged, r.valid_states) == (True, 1)
    assert torch.equal(r.trajectory[:, 1], free[:, 0])


def test_rollout_group_threshold_equal_to_an_operators_peak_keeps_it():
    group = GroupedOperator([_op(index=0), _op(index=1)])
    u0 = _u0(2, 3, 8, 8)
    u0[1] *= 5.0  # operator 1's states are larger
    free = rollout_group(group, u0, **_gkw(num_timesteps=2))
    p0, p1 = (float(free[g].trajectory[:, 1].abs().max()) for g in range(2))
    assert p0 < p1
    for thr, want in ((p1, [False, False]), (p0, [False, True])):
        rs = rollout_group(group, u0, **_gkw(num_timesteps=2, divergence_threshold=thr))
        assert [r.diverged for r in rs] == want
        assert [r.valid_states for r in rs] == [1 if d else 2 for d in want]


# ---------------------------------------------------------------------------------- validation


def test_rollout_validation_messages():
    op, u0 = _op(), _u0(3, 8, 8)
    with pytest.raises(ValueError, match=re.escape("u0 must be [C, H, W], got shape (8, 8)")):
        rollout(op, u0[0], **_kw())
    with pytest.raises(ValueError, match="realizations and num_timesteps must be >= 1, got 0, 4"):
        rollout(op, u0, **_kw(realizations=0))
    with pytest.raises(ValueError, match="realizations and num_timesteps must be >= 1, got 2, 0"):
        rollout(op, u0, **_kw(num_timesteps=0))
    shape = (M, T, 3, 8, 8)
    bad = [
        torch.empty(M, T + 1, 3, 8, 8),  # the shape alone
        torch.empty(shape, dtype=torch.float64),  # the dtype alone
        torch.empty(shape, device=META),  # the device alone
    ]
    _assert_out_refused(lambda out: rollout(op, u0, out=out, **_kw()), shape, bad)


def _assert_out_refused(call, shape, outs) -> None:
    """Each ``out`` (wrong in one respect) is refused with the full message naming it."""
    for out in outs:
        msg = f"out must be a float32 {shape} tensor on cpu, got {tuple(out.shape)} {out.dtype} on {out.device}"
        with pytest.raises(ValueError, match=re.escape(msg)):
            call(out)


def test_rollout_group_validation_messages():
    group = GroupedOperator([_op(index=0), _op(index=1)])
    u0 = _u0(2, 3, 8, 8)
    with pytest.raises(ValueError, match="3 indices for a group of 2 operators"):
        rollout_group(group, u0, **_gkw(indices=[0, 1, 2]))
    for bad in (u0[:, 0], _u0(3, 3, 8, 8)):  # the ndim alone (shape[0] == G), the G alone
        with pytest.raises(ValueError, match=re.escape(f"u0 must be [G=2, C, H, W], got shape {tuple(bad.shape)}")):
            rollout_group(group, bad, **_gkw())
    with pytest.raises(ValueError, match="realizations and num_timesteps must be >= 1, got 0, 4"):
        rollout_group(group, u0, **_gkw(realizations=0))
    with pytest.raises(ValueError, match="realizations and num_timesteps must be >= 1, got 2, 0"):
        rollout_group(group, u0, **_gkw(num_timesteps=0))
    shape = (2, M, T, 3, 8, 8)
    _assert_out_refused(lambda out: rollout_group(group, u0, out=out, **_gkw()), shape,
                        (torch.empty(2, M, T, 3, 8, 9), torch.empty(shape, dtype=torch.float64), torch.empty(shape, device=META)))


def test_rollout_group_one_realization_and_one_state():
    """The smallest valid sizes: M = 1 (and T = 1: the initial condition alone)."""
    group = GroupedOperator([_op(index=0), _op(index=1)])
    u0 = _u0(2, 3, 8, 8)
    rs = rollout_group(group, u0, **_gkw(realizations=1, num_timesteps=1))
    for g, r in enumerate(rs):
        assert tuple(r.trajectory.shape) == (1, 1, 3, 8, 8) and (r.diverged, r.valid_states) == (False, 1)
        assert torch.equal(r.trajectory[0, 0], u0[g])
    one = rollout_group(group, u0, **_gkw(realizations=1))
    for g, r in enumerate(one):
        alone = rollout(_op(index=g), u0[g], **_kw(realizations=1, index=g)).trajectory
        assert float((r.trajectory - alone).abs().max()) <= 1e-5


# ---------------------------------------------------------------------------------- device / dtype


def test_trajectories_live_on_the_operators_device_whatever_the_default_device():
    op, u0 = _op(), _u0(3, 8, 8)
    want = rollout(op, u0, **_kw()).trajectory
    with torch.device(META):
        r = rollout(op, u0, **_kw())
    assert r.trajectory.device.type == "cpu" and torch.equal(r.trajectory, want)
    group = GroupedOperator([_op(index=0), _op(index=1)])
    g0 = _u0(2, 3, 8, 8)
    g0[0] *= 100.0  # operator 0 diverges at step 1, operator 1 goes on (the keep mask is used)
    free = rollout_group(group, g0, **_gkw())
    thr = 2.0 * float(free[1].trajectory.abs().max())
    assert float(free[0].trajectory[:, 1].abs().max()) > thr
    with torch.device(META):
        rs = rollout_group(group, g0, **_gkw(divergence_threshold=thr))
    assert [x.trajectory.device.type for x in rs] == ["cpu", "cpu"]
    assert (rs[0].diverged, rs[0].valid_states, rs[1].diverged) == (True, 1, False)
    assert torch.equal(rs[0].trajectory, free[0].trajectory[:, :1].expand(M, T, 3, 8, 8))
    assert torch.equal(rs[1].trajectory, free[1].trajectory)


def test_trajectories_are_float32_whatever_the_default_dtype():
    op, group = _op(), GroupedOperator([_op(index=0), _op(index=1)])  # float32 weights
    u0, g0 = _u0(3, 8, 8), _u0(2, 3, 8, 8)
    want, gwant = rollout(op, u0, **_kw()).trajectory, rollout_group(group, g0, **_gkw())
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        r = rollout(op, u0, **_kw())
        rs = rollout_group(group, g0, **_gkw())
    finally:
        torch.set_default_dtype(old)
    assert r.trajectory.dtype == torch.float32 and torch.equal(r.trajectory, want)
    assert [x.trajectory.dtype for x in rs] == [torch.float32, torch.float32]
    assert all(torch.equal(a.trajectory, b.trajectory) for a, b in zip(rs, gwant))


class _Seen(Exception):
    pass


def test_the_operator_gets_the_state_on_its_device_in_float32():
    """A float64 CPU initial condition reaches a (meta) operator on its device, as float32."""
    u0 = _u0(3, 8, 8).double()
    seen = []

    def record(module, args):
        seen.append((args[0].device, args[0].dtype))
        raise _Seen

    op = _op(device=META)
    op.register_forward_pre_hook(record)
    with pytest.raises(_Seen):
        rollout(op, u0, **_kw())
    assert seen == [(META, torch.float32)]
    group = GroupedOperator([_op(index=0, device=META), _op(index=1, device=META)])
    seen.clear()

    def step(u, step, keys):
        seen.append((u.device, u.dtype, tuple(u.shape), step))
        raise _Seen

    with pytest.raises(_Seen):
        rollout_group(group, _u0(2, 3, 8, 8).double(), step_fn=step, **_gkw())
    assert seen == [(META, torch.float32, (M, 6, 8, 8), 0)]


# ---------------------------------------------------------------------------------- operator_spec


def test_operator_spec_defaults_and_config_values():
    s = operator_spec({}, grid_size=16, channels=2, dt=0.05, alpha=0.25)
    assert s == OperatorSpec(grid_size=16, channels=2, dt=0.05, alpha=0.25)
    # sampled values win over the config's dt / alpha
    assert operator_spec({"dt": 0.2, "alpha": 0.75}, grid_size=16, channels=2, dt=0.05, alpha=0.25).dt == 0.2


INT_KEYS = ("num_layers", "base_channels", "kernel_size", "grid_size", "channels")
FLOAT_KEYS = ("dropout_rate", "noise_scale", "spatial_correlation", "dt", "alpha")
STR_KEYS = ("activation", "padding_mode", "normalization", "noise_type", "noise_schedule", "update_policy")


@pytest.mark.parametrize("key", INT_KEYS + FLOAT_KEYS + STR_KEYS)
def test_operator_spec_coerces_each_key(key):
    """Sampled values come as numpy scalars, floats for integers, or non-str choices: each key
    is stored as its field's python type."""
    raw = {k: np.float64(5.0) for k in INT_KEYS}
    raw.update({k: np.float32(0.25) for k in FLOAT_KEYS})
    raw.update({k: np.str_(f"v-{k}") for k in STR_KEYS})
    s = operator_spec({key: raw[key]}, grid_size=np.int64(12), channels=np.int32(4), dt=np.float32(0.5), alpha=1)
    v = getattr(s, key)
    if key in INT_KEYS:
        assert type(v) is int and v == 5
    elif key in FLOAT_KEYS:
        assert type(v) is float and v == 0.25
    else:
        assert type(v) is str and v == f"v-{key}"
    # the config's values are coerced too
    assert (type(s.grid_size), type(s.channels), type(s.dt), type(s.alpha)) == (int, int, float, float)
    assert s.as_dict() == {**dataclasses.asdict(OperatorSpec()), "grid_size": 12 if key != "grid_size" else 5,
                           "channels": 4 if key != "channels" else 5, "dt": 0.5 if key != "dt" else 0.25,
                           "alpha": 1.0 if key != "alpha" else 0.25, key: v}


def test_operator_spec_rejects_a_value_its_type_refuses():
    with pytest.raises(ValueError):
        operator_spec({"num_layers": "two"}, grid_size=8, channels=3, dt=0.1, alpha=0.5)
    with pytest.raises(TypeError):
        operator_spec({"dropout_rate": None}, grid_size=8, channels=3, dt=0.1, alpha=0.5)


def test_as_dict_lists_every_field():
    s = OperatorSpec(num_layers=3, activation="tanh", noise_scale=0.5)
    d = s.as_dict()
    assert list(d) == [f.name for f in dataclasses.fields(OperatorSpec)]
    assert d["num_layers"] == 3 and d["activation"] == "tanh" and d["noise_scale"] == 0.5 and d["grid_size"] == 64
    assert OperatorSpec(**d) == s


# ---------------------------------------------------------------------------------- conv_flops


def _flops_of_built_operator(spec: OperatorSpec, realizations: int) -> float:
    """2 x the multiply-adds of every Conv2d of the built operator on ``grid^2`` pixels."""
    op = build_operator(spec, root_seed=0, index=0)
    macs = sum(c.in_channels * c.out_channels * c.kernel_size[0] * c.kernel_size[1]
               for c in op.modules() if isinstance(c, torch.nn.Conv2d))
    return 2.0 * macs * spec.grid_size**2 * realizations


def test_conv_flops_counts_the_operators_convolutions():
    # distinct widths: C=2 -> b=3 -> 3, 6, 12, 12 -> 1x1 head to 2, k = 5, 6x6 grid, M = 7
    s = OperatorSpec(num_layers=4, base_channels=3, kernel_size=5, grid_size=6, channels=2)
    macs = 2 * 3 * 25 + (3 * 3 + 3 * 6 + 6 * 12 + 12 * 12) * 25 + 12 * 2
    assert s.conv_flops(7) == 2.0 * macs * 36 * 7 == _flops_of_built_operator(s, 7)
    # no hidden blocks: the input block and the head alone
    s0 = OperatorSpec(num_layers=0, base_channels=5, kernel_size=3, grid_size=4, channels=3)
    assert s0.widths() == []
    assert s0.conv_flops(2) == 2.0 * (3 * 5 * 9 + 5 * 3) * 16 * 2 == _flops_of_built_operator(s0, 2)
    assert math.isclose(OperatorSpec().conv_flops(1), _flops_of_built_operator(OperatorSpec(), 1))
