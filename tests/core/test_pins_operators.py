"""Pins of the operator building blocks, the single operator and the grouped operator (mutation
testing, issue #11): the exact initialisation formula, seeded dropout, the noise schedule's
amplitude at given steps with the operator's defaults, the spatial correlation against a numpy
reference (odd grids and any batch shape), the dtype and device of every draw, the grouped
operator's noise bit for bit against the single operator's, and the grouped operator following
its operators' own norm parameters."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from spinlock_core.operators import OperatorSpec, build_operator
from spinlock_core.operators.blocks import (
    ConvBlock,
    init_conv_,
    make_activation,
    make_norm,
    seeded_dropout,
)
from spinlock_core.operators.cnn import RandomCNNOperator
from spinlock_core.operators.grouped import METHODS, GroupedOperator
from spinlock_core.operators.noise import correlate, draw_noise, schedule_factor
from spinlock_core.rng import NOISE, DrawKey, keep_mask, unit_noise

META = torch.device("meta")
EPS32 = float(np.finfo(np.float32).eps)


def _close(a: torch.Tensor, b: torch.Tensor, ulps: int = 64) -> None:
    """Equal to float32 rounding: ``ulps`` float32 epsilons of the field scale (as
    tests/core/test_grouped_rollout.py)."""
    scale = max(float(a.abs().max()), 1.0)
    err = float((a.double() - b.double()).abs().max())
    assert err <= ulps * EPS32 * scale, f"max |difference| {err:.3g} at field scale {scale:.3g}"


class _DefaultDtype:
    def __init__(self, dtype):
        self.dtype = dtype

    def __enter__(self):
        self.old = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.old)


# ---- blocks.py ---------------------------------------------------------------------------------


def _uniform_draws(seed: int, *shapes, bound: float) -> list[torch.Tensor]:
    """U(-bound, bound) as float32 ``rand * 2 - 1`` times the bound, in order from one generator."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(s, generator=g, dtype=torch.float32) * 2 - 1) * bound for s in shapes]


def test_init_conv_is_the_uniform_fan_in_rule_drawn_from_the_generator():
    """weights, then bias, ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as float32 draws of ``generator``,
    fan_in = C_in / groups * kh * kw (a 3x5 kernel, 2 groups: 6/2*15 = 45), whatever torch's
    default dtype."""
    conv = nn.Conv2d(6, 4, (3, 5), groups=2, bias=True, dtype=torch.float32)
    with _DefaultDtype(torch.float64):
        init_conv_(conv, torch.Generator().manual_seed(123))
    bound = 1 / math.sqrt(45)
    w, b = _uniform_draws(123, (4, 3, 3, 5), (4,), bound=bound)
    assert conv.weight.dtype == conv.bias.dtype == torch.float32
    assert torch.equal(conv.weight.detach(), w) and torch.equal(conv.bias.detach(), b)
    # on a large layer the weights fill (-bound, bound) with the uniform's std bound / sqrt(3)
    big = nn.Conv2d(64, 64, 3, bias=False)
    init_conv_(big, torch.Generator().manual_seed(0))
    bound = 1 / math.sqrt(64 * 9)
    x = big.weight.detach().double()
    assert float(x.abs().max()) < bound and float(x.abs().max()) > 0.999 * bound
    # 36864 draws: the std estimate is within 1% of bound / sqrt(3) (its sd is ~0.3%)
    assert abs(float(x.std()) / (bound / math.sqrt(3)) - 1) < 0.01
    assert abs(float(x.mean())) < 0.02 * bound


def test_activation_and_norm_names_are_checked_with_the_known_list():
    with pytest.raises(ValueError, match=re.escape(
            "activation: unknown 'swish'; known: ['elu', 'gelu', 'leaky_relu', 'relu', 'sigmoid', 'silu', 'softplus', 'tanh']")):
        make_activation("swish")
    with pytest.raises(ValueError, match="^normalization: unknown 'batch'; known: instance, layer, none$"):
        make_norm("batch", 4)


def test_seeded_dropout_masks_with_the_blocks_stream_and_scales_the_kept():
    h = torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    key = DrawKey(3, 7, (4, 1), 2)
    out = seeded_dropout(h, 0.25, key, 3)
    keep = keep_mask(key, 4, (4, 5, 6), 0.25)  # block 3's stream: 1 + 3
    assert 0 < int(keep.sum()) < keep.numel()
    assert torch.equal(out, torch.where(keep, h * (4.0 / 3.0), torch.zeros(())))
    # p = 0 (or no key) is the identity itself, whatever the key
    wrong = DrawKey(3, 7, (0, 1, 2), 2)
    assert seeded_dropout(h, 0.0, wrong, 3) is h and seeded_dropout(h, 0.25, None, 3) is h
    with pytest.raises(ValueError, match="^dropout: key has 3 realizations for a batch of 2$"):
        seeded_dropout(h, 0.25, wrong, 3)
    # the mask is drawn where h lives
    assert seeded_dropout(torch.empty(2, 4, 5, 6, device=META), 0.25, key, 3).device == META


def _block(normalization: str, **kw) -> ConvBlock:
    args = {"padding_mode": "circular", "normalization": normalization, "activation": "tanh", "dropout": 0.0,
                "residual": False, "generator": torch.Generator().manual_seed(9)}
    args.update(kw)
    return ConvBlock(3, 4, 3, **args)


def test_conv_block_has_a_bias_exactly_when_unnormalised():
    bound = 1 / math.sqrt(3 * 9)
    w, b = _uniform_draws(9, (4, 3, 3, 3), (4,), bound=bound)
    plain = _block("none")
    assert plain.conv.bias is not None
    assert torch.equal(plain.conv.weight.detach(), w) and torch.equal(plain.conv.bias.detach(), b)
    for norm in ("instance", "layer"):
        blk = _block(norm)
        assert blk.conv.bias is None and torch.equal(blk.conv.weight.detach(), w)


def test_conv_block_dropout_defaults_to_block_zero():
    blk = ConvBlock(3, 3, 3, padding_mode="circular", normalization="instance", activation="gelu", dropout=0.3,
                    residual=True, generator=torch.Generator().manual_seed(1))
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    key = DrawKey(0, 4, (0, 1), 5)
    with torch.no_grad():
        out = blk(x, key)
        core = blk.act(blk.norm(blk.conv(x)))
        want = x + torch.where(keep_mask(key, 1, (3, 6, 6), 0.3), core * (1.0 / 0.7), torch.zeros(()))
        torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
        assert torch.equal(out, blk(x, key, 0)) and not torch.allclose(out, blk(x, key, 1))


# ---- cnn.py ------------------------------------------------------------------------------------


def test_residual_blocks_from_four_layers_and_the_hidden_width():
    """Residual where widths match and num_layers > 3; ``hidden`` is the last width b*min(2^(n-1), 4),
    the channels the noise is added to and the head reads."""
    want = {1: ([False], 2), 2: ([False, False], 4), 3: ([False] * 3, 8), 4: ([True, False, False, True], 8)}
    for n, (residual, hidden) in want.items():
        op = build_operator(OperatorSpec(num_layers=n, base_channels=2, grid_size=8), root_seed=0, index=0)
        assert [b.residual for b in op.blocks] == residual, n
        assert op.hidden == hidden == op.head.in_channels, n
        assert op.input_block.residual is False


def _spec(schedule: str, **kw) -> OperatorSpec:
    return OperatorSpec(num_layers=1, base_channels=2, grid_size=8, noise_scale=0.4, noise_schedule=schedule,
                        dropout_rate=0.0, **kw)


U = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
KEY = DrawKey(1, 0, (0, 1), 0)


def _responses(op, *steps) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """What the noise adds to O(u) at application step 0 and at ``steps`` (no dropout):
    head(h + a eps) - head(h), linear in the amplitude a."""
    with torch.no_grad():
        quiet = op(U, 0, None)
        return op(U, 0, KEY) - quiet, [op(U, s, KEY) - quiet for s in steps]


def _assert_factors(op, factors: dict[int, float]) -> None:
    d0, ds = _responses(op, *factors)
    assert float(d0.abs().max()) > 1e-3
    for (step, factor), d in zip(factors.items(), ds):
        if factor == 0.0:
            assert torch.equal(d, torch.zeros_like(d)), step
        else:
            assert float((d - factor * d0).abs().max()) <= 1e-4 * float(d0.abs().max()), (step, factor)


def test_noise_schedule_defaults_are_one_step_and_period_32():
    for make in (lambda s: build_operator(s, root_seed=2, index=5),
                 lambda s: RandomCNNOperator(s, torch.Generator().manual_seed(4)).eval()):
        annealing, periodic = make(_spec("annealing")), make(_spec("periodic"))
        _assert_factors(annealing, {1: 0.0})  # 1 - 1/1
        _assert_factors(periodic, {8: 0.5, 16: 0.0})  # (1 + cos(pi/2)) / 2, (1 + cos(pi)) / 2


def test_build_operator_passes_num_steps_and_noise_period():
    annealing = build_operator(_spec("annealing"), root_seed=2, index=5, num_steps=4)
    _assert_factors(annealing, {1: 0.75})  # 1 - 1/4
    periodic = build_operator(_spec("periodic"), root_seed=2, index=5, noise_period=8)
    _assert_factors(periodic, {2: 0.5, 4: 0.0})  # (1 + cos(pi/2)) / 2, (1 + cos(pi)) / 2


def test_forward_default_step_is_zero():
    op = build_operator(_spec("annealing"), root_seed=2, index=5, num_steps=4)
    with torch.no_grad():
        default, at0, at1 = op(U, key=KEY), op(U, 0, KEY), op(U, 1, KEY)
    assert torch.equal(default, at0) and float((default - at1).abs().max()) > 1e-3


def test_build_operator_moves_the_operator_to_the_device_in_eval_mode():
    op = build_operator(OperatorSpec(num_layers=2, base_channels=2, grid_size=8), root_seed=0, index=0, device="meta")
    assert all(p.device == META for p in op.parameters()) and not op.training


def test_a_noise_free_operator_never_evaluates_its_schedule():
    """noise_scale 0 adds nothing and never consults the schedule: even a degenerate periodic
    schedule (period 0) runs, alone and grouped, and equals the operator with period 32."""
    spec = OperatorSpec(num_layers=1, base_channels=2, grid_size=8, noise_scale=0.0, noise_schedule="periodic",
                        dropout_rate=0.2)
    zero = build_operator(spec, root_seed=0, index=0, noise_period=0)
    usual = build_operator(spec, root_seed=0, index=0, noise_period=32)
    key = DrawKey(0, 0, (0, 1), 3)
    with torch.no_grad():
        assert torch.equal(zero(U, 3, key), usual(U, 3, key))
        assert torch.equal(GroupedOperator([zero])(U, 3, [key]), GroupedOperator([usual])(U, 3, [key]))


def test_noise_is_added_in_the_operators_dtype():
    """A float64 operator adds amp * eps in float64 (eps the float32 draw, widened): exactly
    head(h + amp eps) with h the blocks' output."""
    op = build_operator(_spec("constant"), root_seed=2, index=5).double()
    u = U.double()
    with torch.no_grad():
        h = op.blocks[0](op.input_block(u))
        eps = unit_noise(KEY, NOISE, (op.hidden, 8, 8), "gaussian").double()
        assert torch.equal(op(u, 0, KEY), op.head(h + 0.4 * eps))


# ---- noise.py ----------------------------------------------------------------------------------


def _np_correlate(x: np.ndarray, rho: float) -> np.ndarray:
    """Periodic Gaussian filter of std rho * H pixels (Fourier transform exp(-2 pi^2 sigma^2 k^2)),
    on the full complex FFT in float64, then zero mean and unit (ddof 1) std per field."""
    h, w = x.shape[-2:]
    sigma = rho * h
    k2 = np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2
    out = np.fft.ifft2(np.fft.fft2(x.astype(np.float64)) * np.exp(-2 * np.pi**2 * sigma**2 * k2)).real
    out = out - out.mean(axis=(-2, -1), keepdims=True)
    return out / out.std(axis=(-2, -1), ddof=1, keepdims=True)


def test_correlate_matches_numpy_on_odd_grids_and_any_batch_shape():
    g = torch.Generator().manual_seed(5)
    for shape, rho in (((2, 3, 8, 9), 0.15), ((3, 8, 9), 0.2), ((3, 7, 8), 0.1)):
        eps = torch.randn(shape, generator=g)
        out = correlate(eps, rho)
        assert out.shape == eps.shape and out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), _np_correlate(eps.numpy(), rho), rtol=0, atol=2e-5)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    out = correlate(x, 0.1)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), _np_correlate(x.numpy(), 0.1), rtol=0, atol=2e-5)
    assert correlate(torch.empty(2, 3, 8, 8, device=META), 0.1).device == META


def test_draw_noise_dtype_device_values_and_names():
    key = DrawKey(4, 9, (0, 2), 1)
    raw = unit_noise(key, NOISE, (2, 8, 9), "laplace")
    flat = draw_noise((2, 8, 9), "laplace", 0.0, key, "cpu", torch.float64)
    assert flat.dtype == torch.float64 and torch.equal(flat, raw.double())
    smooth = draw_noise((2, 8, 9), "laplace", 0.2, key, "cpu", torch.float64)
    assert smooth.dtype == torch.float64
    np.testing.assert_allclose(smooth.numpy(), _np_correlate(raw.numpy(), 0.2), rtol=0, atol=2e-5)
    for rho in (0.0, 0.2):
        assert draw_noise((2, 8, 8), "gaussian", rho, key, META, torch.float32).device == META
    with pytest.raises(ValueError, match=re.escape("noise_type: unknown 'cauchy'; known: ('gaussian', 'laplace', 'uniform')")):
        draw_noise((2, 8, 8), "cauchy", 0.0, key, "cpu", torch.float32)


def test_schedule_factor_by_hand():
    # annealing 1 - step / max(num_steps, 1)
    assert schedule_factor("annealing", 1, 1, 4) == 0.0
    assert schedule_factor("annealing", 0, 0, 4) == 1.0 and schedule_factor("annealing", 1, 0, 4) == 0.0
    assert schedule_factor("annealing", 1, 4, 4) == 0.75
    # periodic (1 + cos(2 pi step / period)) / 2
    assert schedule_factor("periodic", 0, 9, 6) == 1.0
    assert schedule_factor("periodic", 1, 9, 6) == pytest.approx(0.75, abs=1e-12)  # cos(pi/3) = 1/2
    assert schedule_factor("periodic", 3, 9, 12) == pytest.approx(0.5, abs=1e-12)  # cos(pi/2) = 0


# ---- grouped.py --------------------------------------------------------------------------------


def _ops(n: int, *, grid: int = 8, **kw) -> list:
    base = {"num_layers": 1, "base_channels": 2, "grid_size": grid}
    base.update(kw)
    return [build_operator(OperatorSpec(**base), root_seed=6, index=i, num_steps=4) for i in range(n)]


def _keys(n: int, step: int = 2) -> list[DrawKey]:
    return [DrawKey(6, i, (0, 1), step) for i in range(n)]


def _each_alone(ops, u, step, keys):
    c = ops[0].spec.channels
    with torch.no_grad():
        return [op(u[:, c * g : c * (g + 1)], step, None if keys is None else keys[g]) for g, op in enumerate(ops)]


def test_grouped_validation_messages_are_exact():
    with pytest.raises(ValueError, match="^GroupedOperator needs at least one operator$"):
        GroupedOperator([])
    with pytest.raises(ValueError, match="^simulation.batching.compile: unknown 'eager'; known: none, torch_compile, cuda_graphs$"):
        GroupedOperator(_ops(1)).compile("eager")


def test_every_layer_runs_with_the_chosen_method():
    ops = _ops(2, num_layers=2)
    u = torch.randn(2, 6, 8, 8, generator=torch.Generator().manual_seed(7))
    outs = []
    for method in METHODS:
        g = GroupedOperator(ops, method=method)
        assert [blk.conv.method for blk in g.blocks] + [g.head.method] == [method] * 4
        outs.append(g(u, 2, _keys(2)))
    _close(outs[0], outs[1])


def test_odd_grid_correlated_noise_without_dropout_equals_each_operator():
    """A group whose operators have no dropout (the dropout step is skipped) on a 7 x 9 grid with
    spatially correlated noise: every operator's channels equal it alone."""
    ops = [build_operator(OperatorSpec(num_layers=1, base_channels=2, grid_size=8, noise_scale=s, spatial_correlation=r),
                          root_seed=6, index=i) for i, (s, r) in enumerate(((0.3, 0.2), (0.5, 0.1)))]
    u = torch.randn(2, 6, 7, 9, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        out = GroupedOperator(ops)(u, 2, _keys(2))
    for g, alone in enumerate(_each_alone(ops, u, 2, _keys(2))):
        _close(alone, out[:, 3 * g : 3 * g + 3])
    assert float((out[:, :3] - _each_alone(ops, u, 2, None)[0]).abs().max()) > 1e-2  # the noise acts


def test_float64_group_with_dropout_and_noise_stays_float64():
    ops = [op.double() for op in _ops(2, num_layers=2, dropout_rate=0.2, noise_scale=0.3)]
    u = torch.randn(2, 6, 8, 8, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    with torch.no_grad():
        out = GroupedOperator(ops)(u, 2, _keys(2))
    assert out.dtype == torch.float64
    for g, alone in enumerate(_each_alone(ops, u, 2, _keys(2))):
        _close(alone, out[:, 3 * g : 3 * g + 3])  # the group rounds dropout and noise through float32


@pytest.mark.parametrize("normalization", ["instance", "layer"])
def test_group_follows_its_operators_norm_parameters(normalization):
    """Operators whose norm weights, biases and eps were changed (a loaded state, a perturbation):
    the group normalises with exactly those."""
    ops = _ops(2, num_layers=2, normalization=normalization)
    gen = torch.Generator().manual_seed(10)
    with torch.no_grad():
        for op in ops:
            for blk in (op.input_block, *op.blocks):
                blk.norm.weight.copy_(0.5 + torch.rand(blk.norm.weight.shape, generator=gen))
                blk.norm.bias.copy_(torch.rand(blk.norm.bias.shape, generator=gen) - 0.5)
                blk.norm.eps = 0.5
    u = torch.randn(2, 6, 8, 8, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        out = GroupedOperator(ops)(u, 2, None)
    for g, alone in enumerate(_each_alone(ops, u, 2, None)):
        _close(alone, out[:, 3 * g : 3 * g + 3])


def _noise_group(**kw):
    specs = [OperatorSpec(num_layers=1, base_channels=2, grid_size=8, noise_scale=s, noise_type=k, **kw)
             for s, k in ((0.3, "gaussian"), (0.7, "laplace"), (0.0, "uniform"))]
    return [build_operator(s, root_seed=6, index=i) for i, s in enumerate(specs)]


def _assert_noise_as_alone(group: GroupedOperator, h: torch.Tensor) -> None:
    keys = _keys(3, 1)
    out = group._add_noise(h, 1, keys)
    assert out.dtype == h.dtype
    for g, s in enumerate(group.specs):
        hg = h[:, 2 * g : 2 * g + 2]
        want = hg + s.noise_scale * draw_noise((2, 8, 8), s.noise_type, s.spatial_correlation, keys[g], "cpu", h.dtype)
        assert torch.equal(out[:, 2 * g : 2 * g + 2], want), (g, h.dtype)


def test_grouped_noise_is_each_operators_noise_bit_for_bit():
    """h + amp_g eps_g with eps_g in h's dtype as draw_noise gives it and the product rounded once:
    float32, bfloat16 (the draw rounded before the filter, as draw_noise does) and under a
    float64 default dtype (the filter coefficient in the grid's dtype), correlated or not."""
    h = torch.randn(2, 6, 8, 8, generator=torch.Generator().manual_seed(12))
    for group in (_noise_group(spatial_correlation=0.15), _noise_group()):
        _assert_noise_as_alone(GroupedOperator(group), h)
        _assert_noise_as_alone(GroupedOperator(group), h.bfloat16())
        with _DefaultDtype(torch.float64):
            _assert_noise_as_alone(GroupedOperator(group), h)


@pytest.mark.parametrize("normalization", ["instance", "layer", "none"])
def test_grouped_block_to_moves_every_tensor(normalization):
    g = GroupedOperator(_ops(2, normalization=normalization, dropout_rate=0.1))
    for blk in g.blocks:
        assert blk.to(META) is blk
        tensors = [blk.conv.weight, blk.scales]
        tensors += [blk.conv.bias] if normalization == "none" else [blk.norm_weight, blk.norm_bias]
        assert all(t is not None and t.device == META for t in tensors)


class _CompileSpy:
    """Stands in for ``torch.compile`` (inductor takes tens of seconds on the CPU, and CUDA graphs
    need a GPU; ``test_grouped_rollout.py`` runs the real thing): records the options and returns
    a function that gives one static output buffer, as a CUDA-graph replay does."""

    def __init__(self):
        self.calls = []

    def __call__(self, fn, **opts):
        self.calls.append(opts)
        buf = {}

        def compiled(x):
            out = fn(x)
            if "t" not in buf:
                buf["t"] = out
            buf["t"].copy_(out)  # every replay writes the same memory
            return buf["t"]

        compiled.original, compiled.buffer = fn, buf
        return compiled


def test_compile_options_and_cuda_graph_outputs_cloned(monkeypatch):
    spy = _CompileSpy()
    monkeypatch.setattr(torch, "compile", spy)
    ops = _ops(2, num_layers=2)
    eager = GroupedOperator(ops)
    g = GroupedOperator(ops)
    cores, head = [b.core for b in g.blocks], g.head
    g.compile("torch_compile")
    # static shapes, inductor's default mode, the compiled functions used as they are
    assert spy.calls == [{"dynamic": False, "mode": "default"}] * (len(cores) + 1)
    assert [b.core.original for b in g.blocks] == cores and g.head.original is head
    spy.calls.clear()
    graphed = GroupedOperator(ops)
    graphed.device = torch.device("cuda")  # the device check only reads the type
    cores = [b.core for b in graphed.blocks]
    graphed.compile("cuda_graphs")
    assert spy.calls == [{"dynamic": False, "mode": "reduce-overhead"}] * (len(cores) + 1)
    u = torch.randn(2, 6, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = eager(u)
        got = graphed(u)
        again = graphed(2 * u)
    # each output is a copy of the replay buffer, so the next replay does not overwrite it
    assert torch.equal(got, want) and not torch.equal(got, again)
    assert got.data_ptr() != again.data_ptr()
