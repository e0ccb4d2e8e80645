"""Draws for a :class:`~.key.DrawKey` and a stream: raw words, unit-variance noise, dropout masks.

On the CPU the compiled kernel (:mod:`.cpu_kernel`) writes straight into the memory the returned
tensor shares (split across threads by :mod:`.cpu_threads`); on any other device the torch
implementation (:mod:`.philox`, :mod:`.transforms`) runs there. Both give the same bits (pinned by
the tests against an independent numpy reference), so the device never changes a draw.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from . import transforms
from .constants import CHUNK_BLOCKS, MASK32
from .key import DrawKey
from .philox import philox4x32

__all__ = ["KINDS", "BACKENDS", "words", "unit_noise", "keep_mask", "unit_noise_keys", "keep_mask_keys"]

KINDS = ("gaussian", "uniform", "laplace")
BACKENDS = ("auto", "numba", "torch")
_CHUNK_ELEMENTS = 4 * CHUNK_BLOCKS
#: blocks per torch evaluation (a multiple of CHUNK_BLOCKS): bounds the int64 temporaries
_TORCH_SLICE = 1 << 18
assert _TORCH_SLICE % CHUNK_BLOCKS == 0


def _size(shape: tuple[int, ...]) -> int:
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must have non-negative sizes, got {shape}")
    n = math.prod(shape)
    if n > (MASK32 + 1) * 4:
        raise ValueError(f"a draw holds at most 2^34 elements per realization, got {n}")
    return n


def _backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown {backend!r}; known: {BACKENDS}")
    if backend == "auto":
        return "numba" if device.type == "cpu" else "torch"
    if backend == "numba" and device.type != "cpu":
        raise ValueError(f"backend 'numba' runs on the CPU only, not on {device}")
    return backend


def _check_stream(stream: int) -> int:
    if not 0 <= int(stream) <= MASK32:
        raise ValueError(f"stream must lie in [0, 2^32), got {stream}")
    return int(stream)


def _padded(n: int) -> int:
    return -(-n // _CHUNK_ELEMENTS) * _CHUNK_ELEMENTS


def _finish(buf: torch.Tensor, n: int, shape: tuple[int, ...]) -> torch.Tensor:
    """``buf [M, n_pad]`` -> ``[M, *shape]`` (a view when no padding was needed)."""
    out = buf if buf.shape[1] == n else buf[:, :n].contiguous()
    return out.reshape(buf.shape[0], *shape)


def _torch_words(key: DrawKey, stream: int, device: torch.device, b0: int, b1: int):
    """The four Philox words of blocks ``[b0, b1)`` for every realization: 4 x ``[M, b1 - b0]``."""
    k0, k1 = key.key_words
    blocks = torch.arange(b0, b1, device=device, dtype=torch.int64)
    reals = torch.tensor(key.realizations, device=device, dtype=torch.int64).unsqueeze(1)
    return philox4x32(blocks, key.step, reals, stream, k0, k1)


def _torch_fill(key: DrawKey, stream: int, n: int, device: torch.device, fn, dtype: torch.dtype) -> torch.Tensor:
    """``[M, n_pad]``: ``fn(w0, w1, w2, w3)`` gives the four quarters of each chunk."""
    n_pad = _padded(n)
    blocks = n_pad // 4
    out = torch.empty(len(key.realizations), n_pad, device=device, dtype=dtype)
    # the float64 sequence must run as written, whatever autocast the caller (a rollout) enabled
    no_autocast = torch.autocast(device.type, enabled=False) if device.type == "cuda" else contextlib.nullcontext()
    with no_autocast:
        for b0 in range(0, blocks, _TORCH_SLICE):
            b1 = min(b0 + _TORCH_SLICE, blocks)
            quarters = fn(*_torch_words(key, stream, device, b0, b1))  # 4 x [M, b1 - b0]
            q = torch.stack([x.reshape(x.shape[0], -1, CHUNK_BLOCKS) for x in quarters], dim=2)  # [M, chunks, 4, K]
            out[:, 4 * b0 : 4 * b1] = q.reshape(q.shape[0], -1)
    return out


def _numba_fill(key: DrawKey, stream: int, n: int, what: str, arg=None) -> torch.Tensor:
    """``[M, n_pad]`` from the CPU kernel: ``words`` (int64), ``floats`` of kind ``arg`` (float32)
    or ``keep`` with threshold ``arg`` (bool)."""
    from . import cpu_kernel as K
    from .cpu_threads import run_jobs

    n_pad = _padded(n)
    m = len(key.realizations)
    # numpy owns the memory and the returned tensor shares it (torch.from_numpy): no copy, and no
    # factory call that torch.func transforms (the sensitivity features' vjp) would wrap
    flat = np.empty(m * n_pad, dtype={"words": np.uint32, "floats": np.float32, "keep": np.bool_}[what])
    if n_pad:
        reals = np.asarray(key.realizations, dtype=np.int64)
        k0, k1 = (np.uint64(w) for w in key.key_words)
        chunk, ic, fc = K.default_args()
        common = (reals, np.uint64(key.step), np.uint64(stream), k0, k1, chunk, ic)
        jobs = m * n_pad // _CHUNK_ELEMENTS
        if what == "words":
            run_jobs(K.fill_words, jobs, flat, *common)
        elif what == "floats":
            run_jobs(K.fill_floats, jobs, flat, K.KIND_CODES[arg], *common, fc)
        else:
            run_jobs(K.fill_keep, jobs, flat, np.uint64(arg), *common)
    if what == "words":
        flat = flat.astype(np.int64)
    return torch.from_numpy(flat).reshape(m, n_pad)


def words(key: DrawKey, stream: int, shape: tuple[int, ...], *, device="cpu", backend: str = "auto") -> torch.Tensor:
    """Raw Philox words ``[M, *shape]`` (int64 holding uint32) of ``stream`` for ``key``."""
    device = torch.device(device)
    stream, n = _check_stream(stream), _size(shape)
    if _backend(backend, device) == "numba":
        return _finish(_numba_fill(key, stream, n, "words"), n, tuple(shape))
    return _finish(_torch_fill(key, stream, n, device, lambda *w: w, torch.int64), n, tuple(shape))


def unit_noise(
    key: DrawKey, stream: int, shape: tuple[int, ...], kind: str, *, device="cpu", backend: str = "auto"
) -> torch.Tensor:
    """Unit-variance noise ``[M, *shape]`` float32: ``kind`` gaussian (Box-Muller), uniform
    (U(-sqrt3, sqrt3)) or laplace (scale 1/sqrt2); row ``i`` is realization ``key.realizations[i]``.

    Raises:
        ValueError: unknown ``kind`` or ``backend``, a stream outside ``[0, 2^32)``.
    """
    if kind not in KINDS:
        raise ValueError(f"noise_type: unknown {kind!r}; known: {KINDS}")
    device = torch.device(device)
    stream, n = _check_stream(stream), _size(shape)
    if _backend(backend, device) == "numba":
        return _finish(_numba_fill(key, stream, n, "floats", kind), n, tuple(shape))
    if kind == "gaussian":
        def fn(w0, w1, w2, w3):
            return (*transforms.gaussian(w0, w1), *transforms.gaussian(w2, w3))
    else:
        f = transforms.uniform if kind == "uniform" else transforms.laplace

        def fn(*w):
            return tuple(f(x) for x in w)
    return _finish(_torch_fill(key, stream, n, device, fn, torch.float32), n, tuple(shape))


def keep_mask(
    key: DrawKey, stream: int, shape: tuple[int, ...], p: float, *, device="cpu", backend: str = "auto"
) -> torch.Tensor:
    """Dropout keep mask ``[M, *shape]`` (bool): a word ``>= floor(p 2^32)`` keeps its element.

    Raises:
        ValueError: ``p`` outside ``[0, 1)``, unknown ``backend``, a stream outside ``[0, 2^32)``.
    """
    threshold = transforms.dropout_threshold(p)
    device = torch.device(device)
    stream, n = _check_stream(stream), _size(shape)
    if _backend(backend, device) == "numba":
        return _finish(_numba_fill(key, stream, n, "keep", threshold), n, tuple(shape))
    fill = _torch_fill(key, stream, n, device, lambda *w: tuple(x >= threshold for x in w), torch.bool)
    return _finish(fill, n, tuple(shape))


# ---- many keys at once: the draws of G operators in one evaluation (a grouped rollout) -------


def _check_keys(keys) -> tuple:
    keys = tuple(keys)
    if not keys:
        raise ValueError("keys must not be empty")
    first = keys[0]
    for k in keys[1:]:
        if k.realizations != first.realizations or k.step != first.step:
            raise ValueError(
                "keys of one batched draw must share realizations and step, got "
                f"{first.realizations}@{first.step} and {k.realizations}@{k.step}"
            )
    return keys


def _torch_fill_keys(keys: tuple, stream: int, n: int, device: torch.device, fn, dtype: torch.dtype, per_key=None):
    """``[G, M, n_pad]``: :func:`_torch_fill` for every key in one evaluation per block slice.

    ``fn(w0, w1, w2, w3, extra)`` receives ``extra``, ``per_key`` as a ``[G, 1, 1]`` tensor (or None).
    """
    n_pad = _padded(n)
    blocks = n_pad // 4
    g, m = len(keys), len(keys[0].realizations)
    out = torch.empty(g, m, n_pad, device=device, dtype=dtype)
    kw = torch.tensor([k.key_words for k in keys], device=device, dtype=torch.int64)
    k0, k1 = kw[:, 0].view(g, 1, 1), kw[:, 1].view(g, 1, 1)
    reals = torch.tensor(keys[0].realizations, device=device, dtype=torch.int64).view(1, m, 1)
    extra = None if per_key is None else per_key.to(device).view(g, 1, 1)
    # the same int64 temporaries per evaluation as one key's _TORCH_SLICE blocks
    step_blocks = max(CHUNK_BLOCKS, (_TORCH_SLICE // (g * m)) // CHUNK_BLOCKS * CHUNK_BLOCKS)
    no_autocast = torch.autocast(device.type, enabled=False) if device.type == "cuda" else contextlib.nullcontext()
    with no_autocast:
        for b0 in range(0, blocks, step_blocks):
            b1 = min(b0 + step_blocks, blocks)
            bl = torch.arange(b0, b1, device=device, dtype=torch.int64)
            quarters = fn(*philox4x32(bl, keys[0].step, reals, stream, k0, k1), extra)  # 4 x [G, M, nb]
            q = torch.stack([x.reshape(g, m, -1, CHUNK_BLOCKS) for x in quarters], dim=3)  # [G, M, chunks, 4, K]
            out[:, :, 4 * b0 : 4 * b1] = q.reshape(g, m, -1)
    return out


def _finish_keys(buf: torch.Tensor, n: int, shape: tuple[int, ...]) -> torch.Tensor:
    out = buf if buf.shape[2] == n else buf[:, :, :n].contiguous()
    return out.reshape(buf.shape[0], buf.shape[1], *shape)


def unit_noise_keys(
    keys, stream: int, shape: tuple[int, ...], kind: str, *, device="cpu", backend: str = "auto"
) -> torch.Tensor:
    """:func:`unit_noise` for many keys: ``[G, M, *shape]``, row ``g`` bit-identical to
    ``unit_noise(keys[g], ...)``. The keys must share realizations and step (one rollout step of
    G operators); the torch backend evaluates all of them in one pass (no per-operator launches).

    Raises:
        ValueError: no keys, keys with different realizations or steps, and as :func:`unit_noise`.
    """
    keys = _check_keys(keys)
    if kind not in KINDS:
        raise ValueError(f"noise_type: unknown {kind!r}; known: {KINDS}")
    device = torch.device(device)
    stream, n = _check_stream(stream), _size(shape)
    if _backend(backend, device) == "numba":
        return torch.stack([unit_noise(k, stream, shape, kind, device=device, backend="numba") for k in keys])
    if kind == "gaussian":
        def fn(w0, w1, w2, w3, _):
            return (*transforms.gaussian(w0, w1), *transforms.gaussian(w2, w3))
    else:
        f = transforms.uniform if kind == "uniform" else transforms.laplace

        def fn(w0, w1, w2, w3, _):
            return tuple(f(x) for x in (w0, w1, w2, w3))
    return _finish_keys(_torch_fill_keys(keys, stream, n, device, fn, torch.float32), n, tuple(shape))


def keep_mask_keys(
    keys, stream: int, shape: tuple[int, ...], ps, *, device="cpu", backend: str = "auto"
) -> torch.Tensor:
    """:func:`keep_mask` for many keys with one dropout rate each (``ps[g]`` for ``keys[g]``):
    ``[G, M, *shape]`` bool, row ``g`` bit-identical to ``keep_mask(keys[g], stream, shape, ps[g])``.

    Raises:
        ValueError: as :func:`unit_noise_keys`; ``len(ps) != len(keys)``; a rate outside ``[0, 1)``.
    """
    keys = _check_keys(keys)
    ps = [float(p) for p in ps]
    if len(ps) != len(keys):
        raise ValueError(f"keep_mask_keys: {len(ps)} rates for {len(keys)} keys")
    thresholds = [transforms.dropout_threshold(p) for p in ps]
    device = torch.device(device)
    stream, n = _check_stream(stream), _size(shape)
    if _backend(backend, device) == "numba":
        return torch.stack([keep_mask(k, stream, shape, p, device=device, backend="numba") for k, p in zip(keys, ps)])
    thr = torch.tensor(thresholds, dtype=torch.int64, device=device)

    def fn(w0, w1, w2, w3, t):
        return tuple(x >= t for x in (w0, w1, w2, w3))

    return _finish_keys(_torch_fill_keys(keys, stream, n, device, fn, torch.bool, per_key=thr), n, tuple(shape))
