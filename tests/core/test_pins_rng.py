"""Pins for the counter-based generator's edges that the contract tests left open (mutation
testing of ``spinlock_core/rng``): the torch path over several chunks and several block slices
(the slice size is a tuning constant, so the draws must not depend on it), the dropout threshold
is inclusive, zero-size and maximal draws, the default device/dtype never leak into a draw, mixed
int/tensor Philox keys, validation messages word for word, the normalisation of a ``DrawKey``'s
fields, and how the CPU kernel's jobs are split across threads.

Every draw is checked against the independent numpy reference ``rng_reference.py``.
"""

from __future__ import annotations

import logging
import math
import os
import threading

import numpy as np
import pytest
import rng_reference as ref
import torch

from spinlock_core.rng import (
    NOISE,
    DrawKey,
    dropout_stream,
    keep_mask,
    keep_mask_keys,
    philox_key,
    unit_noise,
    unit_noise_keys,
    words,
)
from spinlock_core.rng import draw as D
from spinlock_core.rng import transforms as T
from spinlock_core.rng.philox import philox4x32
from spinlock_core.rng.streams import MAX_BLOCKS

EDGE = 2**32 - 1
META = torch.device("meta")


def _bits(x: torch.Tensor) -> np.ndarray:
    return x.contiguous().view(torch.int32).numpy()


def _ref_noise(kind, key, stream, n):
    return ref.noise(kind, key.key_words, key.realizations, key.step, stream, n)


def _ref_keep(key, stream, n, p):
    return ref.keep(key.key_words, key.realizations, key.step, stream, n, p)


@pytest.fixture
def threads():
    """Set torch's thread count for a test (the CPU kernel splits its jobs by it), then restore it."""
    old = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(old)


# ---- the torch path over several chunks and block slices ------------------------------------


def test_torch_draws_over_several_chunks_and_slices(monkeypatch):
    """Slices of 2 chunks (2048 blocks): a 5-chunk draw takes slices of 2, 2 and 1 chunks, each
    written at its own place; the result is the reference's, whatever the slice size."""
    monkeypatch.setattr(D, "_TORCH_SLICE", 2 * 1024)
    key = DrawKey(11, 3, (EDGE, 2), step=6)
    n = 4 * 4096 + 5  # 5 chunks, the last one partial
    np.testing.assert_array_equal(words(key, 9, (n,), backend="torch").numpy(),
                                  ref.words(key.key_words, key.realizations, key.step, 9, n).astype(np.int64))
    for kind in ("gaussian", "laplace"):
        got = unit_noise(key, 9, (n,), kind, backend="torch")
        np.testing.assert_array_equal(_bits(got), _ref_noise(kind, key, 9, n).view(np.int32), kind)
    np.testing.assert_array_equal(keep_mask(key, 9, (3, n // 3), 0.4, backend="torch").numpy().reshape(2, -1),
                                  _ref_keep(key, 9, n, 0.4))


@pytest.mark.parametrize("torch_slice", [4 * 1024, 1 << 18])
def test_keys_torch_draws_over_several_chunks_and_slices(monkeypatch, torch_slice):
    """unit_noise_keys/keep_mask_keys over 5 chunks: with a slice of 4096 blocks and G*M = 2 the
    evaluation takes 2048 blocks (2 chunks) at a time, 3 slices; with the real slice, one."""
    monkeypatch.setattr(D, "_TORCH_SLICE", torch_slice)
    keys = [DrawKey(4, 1, (0,), step=3), DrawKey(4, 8, (0,), step=3)]
    n = 4 * 4096 + 100
    for kind in ("gaussian", "uniform"):
        got = unit_noise_keys(keys, 2, (n,), kind, backend="torch")
        assert got.shape == (2, 1, n)
        for g, key in enumerate(keys):
            np.testing.assert_array_equal(_bits(got[g]), _ref_noise(kind, key, 2, n).view(np.int32), kind)
    mask = keep_mask_keys(keys, 2, (n,), [0.25, 0.7], backend="torch")
    for g, (key, p) in enumerate(zip(keys, (0.25, 0.7))):
        np.testing.assert_array_equal(mask[g].numpy(), _ref_keep(key, 2, n, p))


# ---- the dropout threshold is inclusive -------------------------------------------------------


def test_keep_threshold_is_inclusive():
    """A word equal to floor(p 2^32) keeps its element: p = w / 2^32 keeps element 0 (word w),
    p = (w + 1) / 2^32 drops it."""
    key = DrawKey(21, 5, (3,), step=1)
    w = int(ref.words(key.key_words, key.realizations, key.step, 1, 1)[0, 0])
    keys = [key, DrawKey(21, 6, (3,), step=1)]
    for p, kept in ((w / 2**32, True), ((w + 1) / 2**32, False)):
        assert T.dropout_threshold(p) == w + (not kept)
        for backend in ("numba", "torch"):
            assert bool(keep_mask(key, 1, (1,), p, backend=backend)[0, 0]) is kept, (p, backend)
            assert bool(keep_mask_keys(keys, 1, (1,), [p, 0.5], backend=backend)[0, 0, 0]) is kept, (p, backend)
        assert bool(T.keep(torch.tensor([w]), p)[0]) is kept
    # by hand: floor(0.25 * 2^32) = 2^30
    x = torch.tensor([0, 2**30 - 1, 2**30, EDGE])
    assert T.keep(x, 0.25).tolist() == [False, False, True, True]
    assert T.keep(x, 0.0).tolist() == [True] * 4


# ---- sizes -----------------------------------------------------------------------------------


def test_zero_size_draws_are_empty_not_errors():
    key = DrawKey(1, 1, (0, 4))
    keys = [key, DrawKey(1, 2, (0, 4))]
    for backend in ("numba", "torch"):
        assert words(key, 0, (0,), backend=backend).shape == (2, 0)
        for kind in ("gaussian", "uniform"):
            out = unit_noise(key, 0, (3, 0), kind, backend=backend)
            assert (out.shape, out.dtype) == ((2, 3, 0), torch.float32)
        assert keep_mask(key, 1, (0, 5), 0.5, backend=backend).shape == (2, 0, 5)
        assert unit_noise_keys(keys, 0, (0,), "laplace", backend=backend).shape == (2, 2, 0)
        assert keep_mask_keys(keys, 1, (4, 0), [0.1, 0.2], backend=backend).shape == (2, 2, 4, 0)


def test_largest_draw_is_2_pow_34_elements_per_realization():
    """The counter's block word holds 2^32 blocks of 4 words: 2^34 elements, no more."""
    assert D._size((2**34,)) == 2**34
    assert D._size((2**17, 2**17)) == 2**34
    with pytest.raises(ValueError, match=rf"^a draw holds at most 2\^34 elements per realization, got {2**34 + 1}$"):
        D._size((2**34 + 1,))


# ---- the default device and dtype never reach a draw ----------------------------------------


def test_torch_draws_ignore_the_default_device():
    """Under another default device (meta), a torch-backend draw asked for on the CPU is computed
    and returned on the CPU (every tensor it builds names its device)."""
    key = DrawKey(2, 7, (0, 5), step=4)
    keys = [key, DrawKey(2, 8, (0, 5), step=4)]
    n = 300
    with torch.device(META):
        w = words(key, 3, (n,), device="cpu", backend="torch")
        g = unit_noise(key, 3, (n,), "gaussian", device="cpu", backend="torch")
        k = keep_mask(key, 3, (n,), 0.3, device="cpu", backend="torch")
        gk = unit_noise_keys(keys, 3, (n,), "uniform", device="cpu", backend="torch")
    assert all(t.device.type == "cpu" for t in (w, g, k, gk))
    np.testing.assert_array_equal(w.numpy(), ref.words(key.key_words, key.realizations, 4, 3, n).astype(np.int64))
    np.testing.assert_array_equal(_bits(g), _ref_noise("gaussian", key, 3, n).view(np.int32))
    np.testing.assert_array_equal(k.numpy(), _ref_keep(key, 3, n, 0.3))
    for i, kk_ in enumerate(keys):
        np.testing.assert_array_equal(_bits(gk[i]), _ref_noise("uniform", kk_, 3, n).view(np.int32))


def test_torch_keep_mask_keys_ignores_the_default_device():
    """The per-key thresholds live on the draw's device, not the default one (a bug found here:
    they were built on the default device)."""
    keys = [DrawKey(2, 7, (0, 5), step=4), DrawKey(2, 8, (0, 5), step=4)]
    with torch.device(META):
        kk = keep_mask_keys(keys, 3, (300,), [0.3, 0.6], device="cpu", backend="torch")
    assert kk.device.type == "cpu"
    for i, (key, p) in enumerate(zip(keys, (0.3, 0.6))):
        np.testing.assert_array_equal(kk[i].numpy(), _ref_keep(key, 3, 300, p))


def test_torch_unit_noise_is_float32_whatever_the_default_dtype():
    key = DrawKey(2, 7, (0,))
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = {kind: unit_noise(key, 0, (50,), kind, backend="torch") for kind in ("gaussian", "uniform", "laplace")}
    finally:
        torch.set_default_dtype(old)
    for kind, x in out.items():
        assert x.dtype == torch.float32, kind
        np.testing.assert_array_equal(_bits(x), _ref_noise(kind, key, 0, 50).view(np.int32), kind)


# ---- Philox: argument checks and mixed key types --------------------------------------------


def _ref_philox(c0, c1, c2, c3, k0, k1):
    c0, c2 = np.broadcast_arrays(np.asarray(c0, np.uint64), np.asarray(c2, np.uint64))
    return [x.astype(np.int64) for x in ref.philox((c0, np.full(c0.shape, c1, np.uint64), c2,
                                                    np.full(c0.shape, c3, np.uint64)), (k0, k1))]


def test_philox_mixed_int_and_tensor_keys():
    """One key word a tensor (one key per row), the other an int: the words of each row's key,
    on the counters' device even when the default device is another."""
    c = torch.arange(6, dtype=torch.int64)
    k_rows = torch.tensor([[7], [EDGE]], dtype=torch.int64)
    with torch.device(META):
        by_k0 = philox4x32(c, 3, c, 1, k_rows, 0x1234)
        by_k1 = philox4x32(c, 3, c, 1, 0x1234, k_rows)
    for out in (by_k0, by_k1):
        assert all(t.device.type == "cpu" and t.shape == (2, 6) for t in out)
    for row, k in enumerate((7, EDGE)):
        for got, want in zip(by_k0, _ref_philox(np.arange(6), 3, np.arange(6), 1, k, 0x1234)):
            np.testing.assert_array_equal(got[row].numpy(), want)
        for got, want in zip(by_k1, _ref_philox(np.arange(6), 3, np.arange(6), 1, 0x1234, k)):
            np.testing.assert_array_equal(got[row].numpy(), want)


def test_philox_zero_rounds_is_the_counter_on_its_device():
    """Philox-0 applies no round: the counter itself, broadcast, on the counters' device."""
    c0 = torch.tensor([5, 6], dtype=torch.int64)
    c2 = torch.tensor([[1], [2], [3]], dtype=torch.int64)
    with torch.device(META):
        out = philox4x32(c0, 9, c2, 11, 1, 2, rounds=0)
    assert all(t.device.type == "cpu" and t.shape == (3, 2) for t in out)
    assert [t.tolist() for t in out] == [[[5, 6]] * 3, [[9, 9]] * 3, [[1, 1], [2, 2], [3, 3]], [[11, 11]] * 3]


def test_philox_counter_checks_name_the_problem():
    c = torch.arange(3, dtype=torch.int64)
    for c0, c2 in ((c, 0), (0, c)):
        with pytest.raises(ValueError, match=r"^philox4x32: c0 and c2 must be int64 tensors$"):
            philox4x32(c0, 0, c2, 0, 0, 0)
    c32 = c.to(torch.int32)
    with pytest.raises(ValueError, match=r"^philox4x32: counters must be int64 tensors, got torch.int64, torch.int32$"):
        philox4x32(c, 0, c32, 0, 0, 0)
    with pytest.raises(ValueError, match=r"^philox4x32: counters must be int64 tensors, got torch.int32, torch.int64$"):
        philox4x32(c32, 0, c, 0, 0, 0)


# ---- keys, streams, messages ------------------------------------------------------------------


def test_draw_key_normalises_its_fields():
    """Realizations become a tuple of Python ints and the step a Python int, whatever was given
    (a list, numpy integers): the key hashes, compares equal and draws as the plain one."""
    key = DrawKey(5, 2, [np.uint32(3), 1], step=np.int64(7))
    plain = DrawKey(5, 2, (3, 1), step=7)
    assert key.realizations == (3, 1) and all(type(r) is int for r in key.realizations)
    assert type(key.step) is int and key.step == 7
    assert key == plain and hash(key) == hash(plain)
    assert torch.equal(words(key, 0, (10,), backend="torch"), words(plain, 0, (10,), backend="torch"))


def test_draw_key_word_bounds():
    """Realization ids and steps are uint32: 2^32 - 1 is a valid value, 2^32 is not."""
    key = DrawKey(0, 0, (EDGE,), step=EDGE)
    assert (key.realizations, key.step) == ((EDGE,), EDGE)
    np.testing.assert_array_equal(words(key, 0, (4,)).numpy(),
                                  ref.words(key.key_words, (EDGE,), EDGE, 0, 4).astype(np.int64))
    with pytest.raises(ValueError, match=r"^DrawKey.step must lie in \[0, 2\^32\), got 4294967296$"):
        DrawKey(0, 0, (0,), step=2**32)
    with pytest.raises(ValueError, match=r"^DrawKey.realizations must not be empty$"):
        DrawKey(0, 0, ())


def test_for_operator_keeps_the_stage_and_starts_at_step_zero():
    from spinlock_core.seeding import seed_sequence

    key = DrawKey.for_operator(42, 17, 3, stage="sensitivity")
    assert (key.realizations, key.step, key.stage) == ((0, 1, 2), 0, "sensitivity")
    state = seed_sequence(42, "sensitivity", 17).generate_state(2, dtype=np.uint32)
    assert key.key_words == (int(state[0]), int(state[1])) == philox_key(42, "sensitivity", 17)
    assert DrawKey.for_operator(42, 17, 1).step == 0


def test_dropout_stream_bounds():
    assert dropout_stream(0) == 1 and dropout_stream(MAX_BLOCKS - 1) == MAX_BLOCKS
    with pytest.raises(ValueError, match=rf"^dropout block must lie in \[0, {MAX_BLOCKS}\), got {MAX_BLOCKS}$"):
        dropout_stream(MAX_BLOCKS)


def test_empty_key_list_message():
    with pytest.raises(ValueError, match=r"^keys must not be empty$"):
        unit_noise_keys([], NOISE, (4,), "gaussian")


def test_exact_log_keeps_the_last_mantissa_bit():
    """neg2ln(n, p) near zero (n close to 2^p) depends on n's last mantissa bit:
    -2 ln(n / 2^p) = -2 log1p((n - 2^p) / 2^p), by hand."""
    for v, p in ((2**52 + 1, 52), (2**52 + 3, 52), (2**53 - 1, 53), (2**53 - 3, 53)):
        got = float(T.neg2ln(torch.tensor([v]), p)[0])
        assert got == pytest.approx(-2.0 * math.log1p((v - 2**p) / 2**p), rel=1e-11, abs=0), (v, p)


# ---- the CPU kernel's threads and the numba tuning log ---------------------------------------


def test_run_jobs_slices(threads):
    """The jobs [0, jobs) are split into min(torch threads, jobs // 4) contiguous slices (at least
    one), bounds jobs * i // threads; the calling thread takes the first, a pool of threads - 1
    workers the others."""
    from spinlock_core.rng import cpu_threads as C

    threads(4)
    caller = threading.current_thread()
    lock = threading.Lock()

    def run(jobs):
        calls = []

        def fn(tag, j0, j1):
            assert tag == "x"
            with lock:
                calls.append((j0, j1, threading.current_thread() is caller))
        C.run_jobs(fn, jobs, "x")
        return sorted(calls)

    assert run(3) == [(0, 3, True)]  # 3 // 4 = 0 -> one thread
    assert run(6) == [(0, 6, True)]  # 6 // 4 = 1
    assert run(9) == [(0, 4, True), (4, 9, False)]  # 2 threads: 9 * 1 // 2 = 4
    assert run(40) == [(0, 10, True), (10, 20, False), (20, 30, False), (30, 40, False)]
    assert C._pool._max_workers == 3 and C._pool_key == (os.getpid(), 3)
    threads(1)
    assert run(40) == [(0, 40, True)]


def test_numba_draw_split_across_threads_matches_the_reference(threads):
    """2 realizations x 4 chunks = 8 jobs over min(4 threads, 8 // 4) = 2 threads."""
    threads(4)
    key = DrawKey(8, 9, (1, EDGE), step=2)
    n = 4 * 4096
    np.testing.assert_array_equal(words(key, 5, (n,), backend="numba").numpy(),
                                  ref.words(key.key_words, key.realizations, 2, 5, n).astype(np.int64))
    np.testing.assert_array_equal(_bits(unit_noise(key, 5, (n,), "laplace", backend="numba")),
                                  _ref_noise("laplace", key, 5, n).view(np.int32))


def test_resizing_the_pool_does_not_wait_for_the_old_one():
    """A new pool size replaces the pool at once, without waiting for the old pool's running jobs
    (another thread's draw may still be using it)."""
    from spinlock_core.rng import cpu_threads as C

    old = C._executor(3)
    release = threading.Event()
    busy = old.submit(release.wait, 10)
    replaced = threading.Event()
    t = threading.Thread(target=lambda: (C._executor(2), replaced.set()))
    t.start()
    try:
        assert replaced.wait(2.0), "the resize waited for the old pool's job"
        assert not busy.done() and old._shutdown
    finally:
        release.set()
        t.join(10)
    assert busy.result(10) is True


def test_numba_tuning_log_message(monkeypatch, caplog):
    from numba.core import config, registry

    from spinlock_core.rng import cpu_target as CT

    monkeypatch.setattr(config, "CPU_NAME", None)
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    monkeypatch.delenv("NUMBA_CPU_NAME", raising=False)
    monkeypatch.delenv("NUMBA_CPU_FEATURES", raising=False)
    monkeypatch.setattr(CT.platform, "machine", lambda: "x86_64")
    monkeypatch.setitem(registry.cpu_target.__dict__, "_toplevel_target_context", object())
    with caplog.at_level(logging.DEBUG, logger=CT.__name__):
        assert CT.choose_cpu_target() is False
    assert [r.getMessage() for r in caplog.records if r.name == CT.__name__] == [
        "numba's CPU target is already initialised; the generator keeps its tuning"]


# ---- CUDA: the batched draws under autocast ---------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_batched_draws_under_autocast_equal_the_cpu():
    keys = [DrawKey(3, 1, (0, 2), step=5), DrawKey(3, 2, (0, 2), step=5)]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        gk = unit_noise_keys(keys, NOISE, (4, 1000), "gaussian", device="cuda")
        kk = keep_mask_keys(keys, 1, (4, 1000), [0.2, 0.5], device="cuda")
    np.testing.assert_array_equal(_bits(gk.cpu()), _bits(unit_noise_keys(keys, NOISE, (4, 1000), "gaussian")))
    assert torch.equal(kk.cpu(), keep_mask_keys(keys, 1, (4, 1000), [0.2, 0.5]))


def test_auto_backend_is_the_numba_kernel_on_the_cpu_and_torch_elsewhere():
    """``backend="auto"`` resolves to the numba kernel on the CPU (the fast path the benchmarks
    measure) and to torch on every other device; ``"numba"`` off the CPU and unknown names are
    refused with messages that name the device or the known backends. The two backends give the
    same bits (tested above), so only this resolution tells which one runs."""
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda", 0), torch.device("mps")
    assert D._backend("auto", cpu) == "numba"
    assert D._backend("auto", cuda) == "torch" and D._backend("auto", mps) == "torch"
    assert D._backend("torch", cpu) == "torch" and D._backend("numba", cpu) == "numba"
    assert D._backend("torch", cuda) == "torch"
    with pytest.raises(ValueError, match=r"^backend 'numba' runs on the CPU only, not on cuda:0$"):
        D._backend("numba", cuda)
    with pytest.raises(ValueError, match=r"^backend: unknown 'gpu'; known: \('auto', 'numba', 'torch'\)$"):
        D._backend("gpu", cpu)


_KEY = DrawKey(3, 1, (0, 1), step=0)
_KEYS = [DrawKey(3, 1, (0, 1), step=0), DrawKey(3, 4, (0, 1), step=0)]
#: every public draw, called with the default backend ("auto") on the CPU
_PUBLIC = {
    "words": lambda: words(_KEY, 0, (4, 5)),
    "unit_noise": lambda: unit_noise(_KEY, 0, (4, 5), "gaussian"),
    "keep_mask": lambda: keep_mask(_KEY, 0, (4, 5), 0.25),
    "unit_noise_keys": lambda: unit_noise_keys(_KEYS, 0, (4, 5), "laplace"),
    "keep_mask_keys": lambda: keep_mask_keys(_KEYS, 0, (4, 5), [0.25, 0.5]),
}


@pytest.mark.parametrize("name", sorted(_PUBLIC))
def test_every_public_draw_runs_the_numba_kernel_by_default_on_the_cpu(name, monkeypatch):
    """The default backend of every public draw on the CPU is the numba kernel, never the torch
    path (which would give the same bits, only slower): a spy on the kernel sees each call, and
    the torch fills are made to fail."""
    calls = []
    real = D._numba_fill

    def spy(*a, **k):
        calls.append(a[3])
        return real(*a, **k)

    def no_torch(*a, **k):
        raise AssertionError("the torch path ran on the CPU under backend='auto'")

    monkeypatch.setattr(D, "_numba_fill", spy)
    monkeypatch.setattr(D, "_torch_fill", no_torch)
    monkeypatch.setattr(D, "_torch_fill_keys", no_torch)
    _PUBLIC[name]()
    what = {"words": "words", "keep_mask": "keep", "keep_mask_keys": "keep"}.get(name, "floats")
    assert calls == [what] * (2 if name.endswith("_keys") else 1)
