"""The counter-based generator: Random123 known answers, three implementations bit for bit (numba
CPU kernel, torch ops, the independent numpy reference in ``rng_reference.py``), transform
accuracy, distributions, keying, batch independence, and CPU == CUDA."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rng_reference as ref
import torch
from scipy import stats

from spinlock_core.rng import (
    DRAW_A,
    GENERATOR,
    NOISE,
    DrawKey,
    dropout_stream,
    keep_mask,
    philox4x32,
    philox_key,
    unit_noise,
    words,
)
from spinlock_core.rng import cpu_kernel as kernel
from spinlock_core.rng import transforms as T
from spinlock_core.rng.philox import mulhilo
from spinlock_core.rng.streams import MAX_BLOCKS

EDGE = 0xFFFFFFFF

# Random123's kat_vectors, as cut and pasted into DEShawResearch/Random123-Boost
# (libs/random/test/test_philox.cpp): counter[4], key[2] -> output[4].
KAT = {
    7: [
        ([0, 0, 0, 0], [0, 0], [0x5F6FB709, 0x0D893F64, 0x4F121F81, 0x4F730A48]),
        ([EDGE] * 4, [EDGE] * 2, [0x5207DDC2, 0x45165E59, 0x4D8EE751, 0x8C52F662]),
        ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
         [0x4DFCCABA, 0x190A87F0, 0xC47362BA, 0xB6B5242A]),
    ],
    10: [
        ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        ([EDGE] * 4, [EDGE] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
         [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
    ],
}
KAT_CASES = [(r, *case) for r, cases in KAT.items() for case in cases]


def _bits(x: torch.Tensor) -> np.ndarray:
    """The float32 bit patterns (so -0.0 != 0.0 and NaN payloads count)."""
    return x.contiguous().view(torch.int32).numpy()


@pytest.mark.parametrize("rounds, ctr, key, expected", KAT_CASES)
def test_philox_known_answers(rounds, ctr, key, expected):
    out = philox4x32(*(torch.tensor([c]) for c in ctr), *key, rounds=rounds)
    assert [int(x) for x in out] == expected
    assert [int(x[0]) for x in ref.philox([[c] for c in ctr], key, rounds)] == expected
    if rounds == 10:
        got = kernel._philox(*(np.uint64(c) for c in ctr), *(np.uint64(k) for k in key), kernel.INT_CONSTANTS)
        assert [int(x) for x in got] == expected


def test_mulhilo_is_exact_at_the_extremes():
    a = torch.tensor([0, 1, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, EDGE])
    for m in (0xD2511F53, 0xCD9E8D57, EDGE, 1):
        hi, lo = mulhilo(a, m)
        for x, h, l in zip(a.tolist(), hi.tolist(), lo.tolist()):
            assert (h << 32) | l == x * m


# keys, realizations, steps and streams including the edge values 0 and 2^32 - 1
KEYS = [(0, 0), (EDGE, EDGE), (0x12345678, 0x9ABCDEF0)]
COUNTERS = [((0, 1, EDGE), 0, 0), ((3,), EDGE, 5), ((EDGE, 7), 11, EDGE)]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("reals, step, stream", COUNTERS)
def test_cpu_kernel_words_equal_torch_and_numpy(key, reals, step, stream):
    n = 3 * 4096 + 17  # several chunks and a partial one
    n_pad = 4 * 4096
    k0, k1 = (np.uint64(k) for k in key)
    chunk, ic, _ = kernel.default_args()
    out = np.empty(len(reals) * n_pad, dtype=np.uint32)
    kernel.fill_words(out, np.asarray(reals, dtype=np.int64), np.uint64(step), np.uint64(stream), k0, k1, chunk, ic,
                      0, len(reals) * 4)
    got = out.reshape(len(reals), n_pad)[:, :n].astype(np.uint64)
    np.testing.assert_array_equal(got, ref.words(key, reals, step, stream, n))
    c0 = torch.arange(n_pad // 4)
    w = philox4x32(c0, step, torch.tensor(reals).unsqueeze(1), stream, *key)
    layout = torch.stack([x.reshape(len(reals), -1, 1024) for x in w], dim=2).reshape(len(reals), n_pad)[:, :n]
    np.testing.assert_array_equal(layout.numpy().astype(np.uint64), got)


DRAW_KEYS = [
    DrawKey(0, 0, (0, 1, EDGE), step=0),
    DrawKey(2**40 + 7, 123_456, (5,), step=EDGE, stage="sensitivity"),
    DrawKey(42, 17, (EDGE, 0), step=3),
]
SHAPES = [(2, 17, 11), (4, 16, 16), (1,)]


@pytest.mark.parametrize("key", DRAW_KEYS, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("stream", [0, 3, EDGE])
def test_three_implementations_agree_bit_for_bit(key, shape, stream):
    n = math.prod(shape)
    reals = key.realizations
    np.testing.assert_array_equal(words(key, stream, shape).numpy().reshape(len(reals), n),
                                  ref.words(key.key_words, reals, key.step, stream, n).astype(np.int64))
    np.testing.assert_array_equal(words(key, stream, shape, backend="torch"), words(key, stream, shape))
    for kind in ("gaussian", "uniform", "laplace"):
        cpu = unit_noise(key, stream, shape, kind)
        assert cpu.shape == (len(reals), *shape) and cpu.dtype == torch.float32
        np.testing.assert_array_equal(_bits(cpu), _bits(unit_noise(key, stream, shape, kind, backend="torch")), kind)
        expected = ref.noise(kind, key.key_words, reals, key.step, stream, n).view(np.int32)
        np.testing.assert_array_equal(_bits(cpu).reshape(len(reals), n), expected, kind)
    for p in (0.0, 0.1, 0.5):
        mask = keep_mask(key, stream, shape, p)
        assert mask.dtype == torch.bool
        assert torch.equal(mask, keep_mask(key, stream, shape, p, backend="torch"))
        expected = ref.keep(key.key_words, reals, key.step, stream, n, p)
        np.testing.assert_array_equal(mask.numpy().reshape(len(reals), n), expected)


# words that exercise every branch: 0, 1, the quadrant boundaries of the angle, 2^31, 2^32 - 1
SPECIAL = np.array([0, 1, 2, 2**29 - 1, 2**29, 2**29 + 1, 2**30, 3 * 2**29, 2**31 - 1, 2**31, 2**31 + 1,
                    3 * 2**30, 7 * 2**29, EDGE - 1, EDGE], dtype=np.int64)


def _sample_words(n=200_000, seed=0):
    x = np.random.default_rng(seed).integers(0, 2**32, n, dtype=np.int64)
    return np.concatenate([SPECIAL, x])


def test_log_matches_math_log():
    """neg2ln against math.log in float64: relative error < 1e-11, far below float32's 6e-8."""
    x = _sample_words()
    for n, p in ((2 * x + 1, 33), ((1 << 32) - np.abs(2 * x + 1 - (1 << 32)), 32)):
        ours = T.neg2ln(torch.from_numpy(n), p).numpy()
        exact = np.array([-2.0 * math.log(math.ldexp(v, -p)) for v in n.tolist()])
        rel = np.abs(ours - exact) / np.abs(exact)
        assert rel.max() < 1e-11, rel.max()
        np.testing.assert_array_equal(ours, ref.neg2ln(n, p))


def test_cos_sin_match_math():
    """cos_sin against math.cos/math.sin of 2 pi b / 2^32: error < 1e-10 (the polynomials), and
    the Gaussian outputs are the float32 roundings of the exact values but for rare 1-ulp flips
    where the exact value lies within 1e-10 of a rounding boundary."""
    b = _sample_words()
    c, s = (v.numpy() for v in T.cos_sin(torch.from_numpy(b)))
    theta = [2 * math.pi * math.ldexp(v, -32) for v in b.tolist()]
    assert np.abs(c - [math.cos(t) for t in theta]).max() < 1e-10
    assert np.abs(s - [math.sin(t) for t in theta]).max() < 1e-10
    c_ref, s_ref = ref.cos_sin(b)
    np.testing.assert_array_equal(c, c_ref)
    np.testing.assert_array_equal(s, s_ref)
    a = _sample_words(seed=1)
    z0, z1 = (v.numpy() for v in T.gaussian(torch.from_numpy(a), torch.from_numpy(b)))
    r = np.sqrt(-2.0 * np.log(np.ldexp(2 * a + 1.0, -33)))
    for z, trig in ((z0, np.cos(theta)), (z1, np.sin(theta))):
        exact32 = (r * trig).astype(np.float32)
        # near zeros of cos/sin (angles k pi/2) the float64 angle itself is off by ~1e-16
        tiny = np.abs(exact32) < 1e-6
        assert np.abs(z[tiny] - exact32[tiny]).max(initial=0) < 1e-9
        ulps = np.abs(z[~tiny].view(np.int32).astype(np.int64) - exact32[~tiny].view(np.int32).astype(np.int64))
        assert ulps.max() <= 1 and (ulps == 0).mean() > 0.999  # 4.8e-11 vs a float32 half-ulp of 3e-8


def test_uniform_and_laplace_transforms_exact_values():
    x = torch.tensor([0, 2**31 - 1, 2**31, EDGE])
    u = T.uniform(x).tolist()
    assert u[0] == pytest.approx(-math.sqrt(3.0), abs=1e-6) and u[-1] == pytest.approx(math.sqrt(3.0), abs=1e-6)
    assert u[1] == -u[2] == np.float32(-math.sqrt(3.0) / 2**32)
    lap = T.laplace(x).tolist()
    assert lap[0] == -lap[-1] == pytest.approx(-32 * math.log(2.0) / math.sqrt(2.0), rel=1e-7)
    assert lap[1] == -lap[2] and abs(lap[2]) == pytest.approx(2.0**-32 / math.sqrt(2.0), rel=1e-6)


N_DIST = 100_000


@pytest.mark.parametrize("kind, dist", [
    ("gaussian", stats.norm()),
    ("laplace", stats.laplace(scale=1 / math.sqrt(2.0))),
    ("uniform", stats.uniform(-math.sqrt(3.0), 2 * math.sqrt(3.0))),
])
def test_distributions(kind, dist):
    x = unit_noise(DrawKey(7, 3, (0,), step=1), NOISE, (N_DIST,), kind)[0].double().numpy()
    assert abs(x.mean()) < 5 / math.sqrt(N_DIST)
    assert x.var() == pytest.approx(1.0, abs=0.02)  # unit variance for every kind
    assert stats.kstest(x, dist.cdf).pvalue > 1e-3


def test_gaussian_pairs_are_uncorrelated():
    x = unit_noise(DrawKey(1, 2, (0,)), NOISE, (4096 * 25,), "gaussian")[0].double().numpy().reshape(-1, 4, 1024)
    for q0, q1 in ((0, 1), (2, 3), (0, 2)):  # a pair's cos and sin outputs, and the two pairs
        assert abs(np.corrcoef(x[:, q0].ravel(), x[:, q1].ravel())[0, 1]) < 4 / math.sqrt(x[:, 0].size)
        assert abs(np.corrcoef(x[:, q0].ravel() ** 2, x[:, q1].ravel() ** 2)[0, 1]) < 4 / math.sqrt(x[:, 0].size)


def test_keep_rate():
    p = 0.3
    mask = keep_mask(DrawKey(1, 2, (0, 1)), dropout_stream(0), (N_DIST,), p)
    assert float(mask.float().mean()) == pytest.approx(1 - p, abs=0.005)
    assert bool(keep_mask(DrawKey(1, 2, (0,)), 1, (1000,), 0.0).all())
    assert T.dropout_threshold(0.25) == 2**30


def test_draws_depend_on_every_key_component_and_repeat():
    base = DrawKey(5, 9, (0, 1), step=2)
    x = unit_noise(base, NOISE, (3, 8, 8), "gaussian")
    assert torch.equal(x, unit_noise(DrawKey(5, 9, (0, 1), step=2), NOISE, (3, 8, 8), "gaussian"))
    others = [
        DrawKey(6, 9, (0, 1), step=2),  # root seed
        DrawKey(5, 10, (0, 1), step=2),  # operator
        DrawKey(5, 9, (2, 3), step=2),  # realizations
        base.at_step(3),  # step
        DrawKey(5, 9, (0, 1), step=2, stage="sensitivity"),  # stage
    ]
    for other in others:
        assert not torch.allclose(x, unit_noise(other, NOISE, (3, 8, 8), "gaussian")), other
    assert not torch.allclose(x, unit_noise(base, dropout_stream(0), (3, 8, 8), "gaussian"))  # stream
    assert not torch.allclose(x[0], x[1])  # realizations of one draw


def test_draws_do_not_depend_on_batch_composition_or_size():
    shape = (3, 16, 16)
    full = unit_noise(DrawKey(5, 9, (0, 1, 2, 3)), NOISE, shape, "gaussian")
    assert torch.equal(unit_noise(DrawKey(5, 9, (2,)), NOISE, shape, "gaussian")[0], full[2])
    assert torch.equal(unit_noise(DrawKey(5, 9, (3, 0)), NOISE, shape, "gaussian"), full[[3, 0]])
    # a larger draw extends a smaller one: an element's value depends on its position only
    flat = unit_noise(DrawKey(5, 9, (1,)), NOISE, (5000,), "laplace")[0]
    assert torch.equal(unit_noise(DrawKey(5, 9, (1,)), NOISE, (1500,), "laplace")[0], flat[:1500])


def test_key_derivation():
    from spinlock_core.seeding import seed_sequence

    state = seed_sequence(42, "noise", 17).generate_state(2, dtype=np.uint32)
    assert DrawKey(42, 17, (0,)).key_words == philox_key(42, "noise", 17) == (int(state[0]), int(state[1]))
    assert philox_key(42, "sensitivity", 17) != philox_key(42, "noise", 17)
    assert DrawKey.for_operator(42, 17, 3).realizations == (0, 1, 2)


def test_generator_name():
    assert GENERATOR == "philox4x32-10+box-muller-exact/1"


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="DrawKey.realizations must not be empty"):
        DrawKey(0, 0, ())
    with pytest.raises(ValueError, match=r"DrawKey.step must lie in \[0, 2\^32\), got -1"):
        DrawKey(0, 0, (0,), step=-1)
    with pytest.raises(ValueError, match=r"DrawKey.realizations must lie in \[0, 2\^32\), got 4294967296"):
        DrawKey(0, 0, (2**32,))
    with pytest.raises(ValueError, match="unknown seeding stage 'nois'"):
        DrawKey(0, 0, (0,), stage="nois")
    with pytest.raises(ValueError, match="realizations must be >= 1, got 0"):
        DrawKey.for_operator(0, 0, 0)
    key = DrawKey(0, 0, (0,))
    with pytest.raises(ValueError, match="noise_type: unknown 'cauchy'"):
        unit_noise(key, NOISE, (4,), "cauchy")
    with pytest.raises(ValueError, match="backend: unknown 'cuda'"):
        unit_noise(key, NOISE, (4,), "gaussian", backend="cuda")
    with pytest.raises(ValueError, match="backend 'numba' runs on the CPU only, not on meta"):
        unit_noise(key, NOISE, (4,), "gaussian", device="meta", backend="numba")
    with pytest.raises(ValueError, match=r"stream must lie in \[0, 2\^32\), got -1"):
        words(key, -1, (4,))
    with pytest.raises(ValueError, match=r"dropout probability must lie in \[0, 1\), got 1.0"):
        keep_mask(key, 1, (4,), 1.0)
    with pytest.raises(ValueError, match=rf"dropout block must lie in \[0, {MAX_BLOCKS}\), got -1"):
        dropout_stream(-1)
    with pytest.raises(ValueError, match=r"shape must have non-negative sizes, got \(-1,\)"):
        words(key, 0, (-1,))


def test_operator_draws_and_deterministic_operator():
    """The operator draws through its key: the same key gives the same output, ``key=None`` is the
    deterministic O (no noise, no dropout), and a key for the wrong batch size is refused."""
    from spinlock_core.operators import OperatorSpec, build_operator

    spec = OperatorSpec(num_layers=2, base_channels=4, kernel_size=3, grid_size=16, noise_scale=0.1, dropout_rate=0.2)
    op = build_operator(spec, root_seed=3, index=1)
    u = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)).expand(2, 3, 16, 16)
    key = DrawKey.for_operator(3, 1, 2).at_step(4)
    with torch.no_grad():
        a, b = op(u, 4, key), op(u, 4, key)
        det = op(u, 4, None)
    assert torch.equal(a, b) and not torch.allclose(a[0], a[1])
    assert torch.equal(det[0], det[1]) and not torch.allclose(det, a)
    with pytest.raises(ValueError, match="key has 3 realizations for a batch of 2"):
        op(u, 0, DrawKey.for_operator(3, 1, 3))


def test_rollout_noise_independent_of_batch_size(tiny_config, write_config):
    """An operator's rollout is the same bits whether it is simulated alone or in batches of 4."""
    from spinlock_core.config import load_experiment
    from spinlock_core.generation import ic_types_for, initial_conditions_for, sample_parameters, simulate_operators

    unit, _ = sample_parameters(tiny_config)
    idx = np.arange(8)
    ics = initial_conditions_for(tiny_config, idx, ic_types_for(tiny_config, idx))
    batched = simulate_operators(tiny_config, idx, unit[idx], ics, keep_trajectories=True, progress=lambda *a: None)
    single = load_experiment(write_config("single.yaml", sampling__batch_size=1))
    for j in (0, 5):
        alone = simulate_operators(single, idx[j:j + 1], unit[idx[j:j + 1]], ics[j:j + 1], keep_trajectories=True,
                                   progress=lambda *a: None)
        np.testing.assert_array_equal(alone.trajectories[0], batched.trajectories[j])
    assert not np.array_equal(batched.trajectories[:, 0, -1], batched.trajectories[:, 1, -1])  # noise is on


def test_sensitivity_draws_are_fixed_counters():
    """The sensitivity features' fixed draw replays exactly: F_a is a pure function of u."""
    import spinlock_core.features.sensitivity as S
    from spinlock_core.operators import OperatorSpec, build_operator

    spec = OperatorSpec(num_layers=1, base_channels=4, kernel_size=3, grid_size=8, noise_scale=0.1, dropout_rate=0.2)
    op = build_operator(spec, root_seed=0, index=2)
    u = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    fa = S._StepMap(op, 0, DrawKey.for_operator(0, 2, 2, stage="sensitivity").at_step(DRAW_A))
    with torch.no_grad():
        assert torch.equal(fa.F(u), fa.F(u))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_and_cuda_draws_identical():
    for key in DRAW_KEYS:
        for shape in SHAPES + [(128, 64, 64)]:
            for stream in (0, 3, EDGE):
                assert torch.equal(words(key, stream, shape, device="cuda").cpu(), words(key, stream, shape))
                for kind in ("gaussian", "uniform", "laplace"):
                    gpu = unit_noise(key, stream, shape, kind, device="cuda")
                    assert gpu.device.type == "cuda"
                    np.testing.assert_array_equal(_bits(gpu.cpu()), _bits(unit_noise(key, stream, shape, kind)), kind)
                for p in (0.1, 0.5):
                    gpu = keep_mask(key, stream, shape, p, device="cuda")
                    assert torch.equal(gpu.cpu(), keep_mask(key, stream, shape, p))
    # a rollout at reduced precision draws under autocast: the float64 sequence must not change
    key = DRAW_KEYS[0]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        gpu = unit_noise(key, NOISE, (128, 64, 64), "gaussian", device="cuda")
    np.testing.assert_array_equal(_bits(gpu.cpu()), _bits(unit_noise(key, NOISE, (128, 64, 64), "gaussian")))


def test_package_docstring_example_runs():
    import spinlock_core.rng as rng

    snippet = rng.__doc__.split("Example::")[1]
    scope = {"DrawKey": DrawKey, "unit_noise": unit_noise, "NOISE": NOISE}
    exec("\n".join(line[4:] for line in snippet.strip("\n").splitlines()), scope)
    assert scope["eps"].shape == (5, 128, 64, 64) and scope["eps"].dtype == torch.float32


def test_cpu_target_choice_respects_the_user_and_an_initialised_numba(monkeypatch):
    """The tuning choice is made once, before numba compiles anything, and never over a user's."""
    from spinlock_core.rng.cpu_target import choose_cpu_target

    unit_noise(DrawKey(0, 0, (0,)), NOISE, (4,), "gaussian")  # numba has compiled (or loaded) the kernels
    assert choose_cpu_target() is False
    monkeypatch.setenv("NUMBA_CPU_NAME", "generic")
    assert choose_cpu_target() is False
