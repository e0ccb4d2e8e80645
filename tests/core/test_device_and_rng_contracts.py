"""Contracts the science relies on but no number shows (gaps found by mutation testing, issue #11):
draws and grouped operators stay on the requested device with the documented dtype (checked on
torch's ``meta`` device, which runs every op without data, so a dropped ``device=`` argument is
seen on a machine without a GPU); key validation names the bad word; the exact log transform at
the edges of its domain; the noise-regime boundaries; the CPU kernel's thread pool; the numba
tuning decision."""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pytest
import torch

from spinlock_core.operators import OperatorSpec, build_operator
from spinlock_core.operators.grouped import GroupedOperator
from spinlock_core.operators.spec import noise_regime
from spinlock_core.rng import NOISE, DrawKey, keep_mask, keep_mask_keys, unit_noise, unit_noise_keys, words
from spinlock_core.rng import transforms as T
from spinlock_core.rng.philox import philox4x32, round_keys
import rng_reference as ref

META = torch.device("meta")
KEYS = [DrawKey(1, 2, (0, 1), 3), DrawKey(1, 5, (0, 1), 3)]


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_draws_have_the_documented_dtype_shape_and_device(device):
    dev = torch.device(device)
    backend = "torch"
    cases = [
        (words(KEYS[0], 1, (2, 3), device=dev, backend=backend), torch.int64, (2, 2, 3)),
        (unit_noise(KEYS[0], NOISE, (2, 3), "uniform", device=dev, backend=backend), torch.float32, (2, 2, 3)),
        (keep_mask(KEYS[0], 1, (2, 3), 0.3, device=dev, backend=backend), torch.bool, (2, 2, 3)),
        (unit_noise_keys(KEYS, NOISE, (2, 3), "gaussian", device=dev, backend=backend), torch.float32, (2, 2, 2, 3)),
        (unit_noise_keys(KEYS, NOISE, (2, 3), "laplace", device=dev, backend=backend), torch.float32, (2, 2, 2, 3)),
        (keep_mask_keys(KEYS, 1, (2, 3), [0.1, 0.2], device=dev, backend=backend), torch.bool, (2, 2, 2, 3)),
    ]
    for out, dtype, shape in cases:
        assert (out.device.type, out.dtype, tuple(out.shape)) == (device, dtype, shape)
    if device == "cpu":  # the numba backend too
        assert unit_noise_keys(KEYS, NOISE, (3,), "gaussian").dtype == torch.float32
        assert keep_mask_keys(KEYS, 1, (3,), [0.5, 0.5]).dtype == torch.bool
        assert words(KEYS[0], 1, (3,)).dtype == torch.int64


@pytest.mark.parametrize("normalization", ["instance", "layer", "none"])
def test_grouped_operator_runs_where_its_operators_live(normalization):
    """Built from operators on a device, every stacked weight, the policy coefficients, the draws
    and the output are there (a weight left behind fails the first conv)."""
    spec = OperatorSpec(num_layers=2, base_channels=2, grid_size=8, dropout_rate=0.1, noise_scale=0.1,
                        spatial_correlation=0.1, normalization=normalization, update_policy="convex")
    ops = [build_operator(spec, root_seed=0, index=i, device=META) for i in range(2)]
    g = GroupedOperator(ops)
    u = torch.empty(2, 6, 8, 8, device=META)
    out = g(u, 0, [DrawKey(0, i, (0, 1), 0) for i in range(2)])
    assert out.device == META and tuple(out.shape) == (2, 6, 8, 8)
    assert g.apply_policy(u, out).device == META
    assert all(t.device == META for t in (g.dt, g.alpha, g.one_minus_alpha, g.head.weight))
    for blk in g.blocks:
        assert blk.conv.weight.device == META and blk.scales.device == META
        if normalization != "none":
            assert blk.norm_weight.device == META and blk.norm_bias.device == META


def test_key_words_are_validated_word_by_word():
    with pytest.raises(ValueError, match="Philox key words must be uint32, got -1, 0"):
        round_keys(-1, 0)
    with pytest.raises(ValueError, match="Philox key words must be uint32, got 0, 4294967296"):
        round_keys(0, 2**32)
    assert round_keys(2**32 - 1, 0, 2)[1] == ((2**32 - 1 + 0x9E3779B9) & 0xFFFFFFFF, 0xBB67AE85)
    c = torch.arange(4, dtype=torch.int64)
    for name, k0, k1 in (("k0", torch.tensor([1], dtype=torch.int32), torch.tensor([1])),
                         ("k1", torch.tensor([1]), torch.tensor([1.0]))):
        with pytest.raises(ValueError, match=f"key tensor {name} must be int64"):
            philox4x32(c, 0, c, 0, k0, k1)
    # tensor keys give the words of each key's int form
    kt = torch.tensor([[7], [2**32 - 1]], dtype=torch.int64)
    got = philox4x32(c, 3, c, 1, kt, kt + 0)
    for row, k in enumerate((7, 2**32 - 1)):
        want = philox4x32(c, 3, c, 1, k, k)
        assert all(torch.equal(g[row], w) for g, w in zip(got, want))


def test_exact_log_at_the_edges_of_its_domain():
    """neg2ln(n, p) = -2 ln(n 2^-p) for n up to 2^53 (odd n use the last mantissa bit) and at the
    one n whose mantissa is exactly sqrt(2)'s (the branch point)."""
    sqrt2_n = int(math.sqrt(2) * 2**52)
    assert float(sqrt2_n) / 2**52 == math.sqrt(2)
    n = np.array([1, 3, 2**52 + 1, 2**53 - 1, 2**52 + 12345, sqrt2_n, sqrt2_n - 1, sqrt2_n + 1], dtype=np.int64)
    ours = T.neg2ln(torch.from_numpy(n), 40).numpy()
    exact = np.array([-2.0 * (math.log(v) - 40 * math.log(2.0)) for v in n.tolist()])
    np.testing.assert_allclose(ours, exact, rtol=1e-11)  # the documented accuracy (test_rng)
    np.testing.assert_array_equal(ours, ref.neg2ln(n, 40))


def test_noise_regime_boundaries():
    assert [noise_regime(x) for x in (0.0, 0.0099, 0.01, 0.05, 0.0999, 0.1, 1.0)] == [
        "low", "low", "medium", "medium", "medium", "high", "high"]


def test_cpu_kernel_pool_is_reused_resized_and_named(monkeypatch):
    from spinlock_core.rng import cpu_threads as C

    a = C._executor(3)
    assert C._executor(3) is a and a._max_workers == 3
    b = C._executor(2)
    assert b is not a and b._max_workers == 2 and a._shutdown
    assert b._thread_name_prefix == "spinlock-rng"
    # a forked child (another pid) builds its own pool and leaves the parent's alone
    child = os.getpid() + 1
    monkeypatch.setattr(C.os, "getpid", lambda: child)
    c = C._executor(2)
    assert c is not b and not b._shutdown
    monkeypatch.undo()
    C._executor(2)


def test_numba_tuning_decision(monkeypatch, caplog):
    """The generator tunes numba for TUNING_CPU only on x86-64, when neither the user (either
    variable, or numba's config) nor an earlier compilation chose a target."""
    from numba.core import config, registry

    from spinlock_core.rng import cpu_target as CT

    monkeypatch.setattr(config, "CPU_NAME", None)
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    monkeypatch.delenv("NUMBA_CPU_NAME", raising=False)
    monkeypatch.delenv("NUMBA_CPU_FEATURES", raising=False)
    monkeypatch.delitem(registry.cpu_target.__dict__, "_toplevel_target_context", raising=False)
    for machine, ok in (("x86_64", True), ("AMD64", True), ("aarch64", False), ("arm64", False)):
        monkeypatch.setattr(CT.platform, "machine", lambda m=machine: m)
        monkeypatch.setattr(config, "CPU_NAME", None)
        assert CT.choose_cpu_target() is ok, machine
        assert config.CPU_NAME == (CT.TUNING_CPU if ok else None)
    monkeypatch.setattr(CT.platform, "machine", lambda: "x86_64")
    for var in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES"):
        monkeypatch.setattr(config, "CPU_NAME", None)
        monkeypatch.setenv(var, "generic")
        assert CT.choose_cpu_target() is False and config.CPU_NAME is None, var
        monkeypatch.delenv(var)
    for attr in ("CPU_NAME", "CPU_FEATURES"):
        monkeypatch.setattr(config, "CPU_NAME", None)
        monkeypatch.setattr(config, "CPU_FEATURES", None)
        monkeypatch.setattr(config, attr, "generic")
        assert CT.choose_cpu_target() is False, attr
    monkeypatch.setattr(config, "CPU_NAME", None)
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    monkeypatch.setitem(registry.cpu_target.__dict__, "_toplevel_target_context", object())
    with caplog.at_level(logging.DEBUG, logger=CT.__name__):
        assert CT.choose_cpu_target() is False and config.CPU_NAME is None
    assert "numba's CPU target is already initialised; the generator keeps its tuning" in caplog.text


def test_grouped_rollout_is_float32_whatever_the_default_dtype():
    """A notebook that sets torch's default dtype to float64 still gets float32 fields equal to
    the single-operator rollout (every buffer's dtype is explicit)."""
    from spinlock_core.rollout import rollout, rollout_group

    spec = OperatorSpec(num_layers=2, base_channels=2, grid_size=8, dropout_rate=0.2, noise_scale=0.3,
                        spatial_correlation=0.2, update_policy="convex", alpha=0.3)
    ops = [build_operator(spec, root_seed=0, index=i) for i in range(2)]
    u0 = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    kw = dict(realizations=2, num_timesteps=4, root_seed=0, divergence_threshold=1e6)
    alone = [rollout(op, u0[i], index=i, **kw).trajectory for i, op in enumerate(ops)]
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        group = GroupedOperator(ops)
        assert all(t.dtype == torch.float32 for t in (group.dt, group.alpha, group.one_minus_alpha))
        assert all(blk.scales.dtype == torch.float32 for blk in group.blocks)
        together = rollout_group(group, u0, indices=[0, 1], **kw)
        keys = [DrawKey(0, i, (0, 1), 0) for i in range(2)]
        assert keep_mask_keys(keys, 1, (4,), [0.2, 0.4], backend="torch").dtype == torch.bool
        assert unit_noise_keys(keys, NOISE, (4,), "gaussian", backend="torch").dtype == torch.float32
    finally:
        torch.set_default_dtype(old)
    for a, b in zip(alone, together):
        assert b.trajectory.dtype == torch.float32
        assert float((a - b.trajectory).abs().max()) <= 64 * 1.2e-7 * max(float(a.abs().max()), 1.0)


def test_grouped_operator_validation_names_the_problem():
    spec = OperatorSpec(num_layers=2, base_channels=2, grid_size=8)
    ops = [build_operator(spec, root_seed=0, index=i) for i in range(2)]
    with pytest.raises(ValueError, match="GroupedOperator needs at least one operator"):
        GroupedOperator([])
    with pytest.raises(ValueError, match=r"simulation.batching.method: unknown 'loop'; known: \('grouped_conv', 'vmap'\)"):
        GroupedOperator(ops, method="loop")
    bad = build_operator(spec, root_seed=0, index=2)
    object.__setattr__(bad, "spec", OperatorSpec(num_layers=2, base_channels=2, grid_size=8, noise_type="cauchy"))
    with pytest.raises(ValueError, match="noise_type: unknown 'cauchy'; known:"):
        GroupedOperator([ops[0], bad])
    for field, value, msg in (("update_policy", "euler", "update_policy: unknown 'euler'"),
                              ("noise_schedule", "cosine", "noise_schedule: unknown 'cosine'")):
        odd = build_operator(spec, root_seed=0, index=3)
        odd.spec = OperatorSpec(num_layers=2, base_channels=2, grid_size=8, **{field: value})
        with pytest.raises(ValueError, match=msg):
            GroupedOperator([odd])
    g = GroupedOperator(ops)
    assert g.ops == ops and g.g == 2 and g.channels == 3
    with pytest.raises(ValueError, match="keys must not be empty"):
        unit_noise_keys([], NOISE, (4,), "gaussian")
    with pytest.raises(ValueError, match=r"keys of one batched draw must share realizations and step, got \(0, 1\)@0 and \(0,\)@0"):
        keep_mask_keys([DrawKey(0, 0, (0, 1), 0), DrawKey(0, 1, (0,), 0)], 1, (4,), [0.1, 0.1])
    with pytest.raises(ValueError, match=r"noise_type: unknown 'cauchy'; known: \('gaussian', 'uniform', 'laplace'\)"):
        unit_noise_keys(KEYS, NOISE, (4,), "cauchy")


def test_conv_flops_by_hand():
    """2 FLOPs per multiply-add of every convolution of one step: C->b, b->b, b->2b (k = 3), then
    the 1x1 head 2b->C, on a 16x16 grid with M realizations."""
    spec = OperatorSpec(num_layers=2, base_channels=4, kernel_size=3, grid_size=16)
    macs = (3 * 4 * 9 + 4 * 4 * 9 + 4 * 8 * 9 + 8 * 3) * 256
    assert spec.conv_flops(5) == 2 * macs * 5
    assert OperatorSpec(num_layers=1, base_channels=2, kernel_size=5, grid_size=8).conv_flops(1) == 2 * (3 * 2 * 25 + 2 * 2 * 25 + 2 * 3) * 64
