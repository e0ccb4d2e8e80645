"""An independent numpy implementation of the generator ``spinlock_core.rng.GENERATOR``.

Written from the published description (Philox4x32-R: Salmon, Moraes, Dror, Shaw, SC'11) and from
the transform definitions in ``spinlock_core/rng/transforms.py``'s docstring, sharing no code with
the package (only the polynomial coefficients, which are part of the generator's definition): full
64-bit products in uint64 (the package splits the multiplier in 16-bit halves in torch and relies
on LLVM's vector multiplies in numba), exponents from ``np.frexp`` (the package reads the IEEE bit
pattern), and element positions from the layout written out per element (the package reshapes
whole chunks).
"""

from __future__ import annotations

import math

import numpy as np

U64 = np.uint64
LOW32 = U64(0xFFFFFFFF)
K = 1024  # blocks per chunk: element e -> chunk e // 4096, quarter (e // 1024) % 4, lane e % 1024


def philox(ctr, key, rounds: int = 10):
    """Philox4x32-``rounds`` of uint64 arrays ``ctr = (c0, c1, c2, c3)`` (values < 2^32) under
    ``key = (k0, k1)``: four uint64 arrays of uint32 values."""
    c = [np.asarray(x, dtype=U64) for x in ctr]
    k0, k1 = int(key[0]), int(key[1])
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) % 2**32, (k1 + 0xBB67AE85) % 2**32
        p0 = U64(0xD2511F53) * c[0]  # < 2^64: exact
        p1 = U64(0xCD9E8D57) * c[2]
        c = [(p1 >> U64(32)) ^ c[1] ^ U64(k0), p1 & LOW32, (p0 >> U64(32)) ^ c[3] ^ U64(k1), p0 & LOW32]
    return c


def words(key, realizations, step: int, stream: int, n: int) -> np.ndarray:
    """Raw words ``[M, n]`` (uint64 holding uint32) of a draw of ``n`` elements per realization."""
    e = np.arange(n, dtype=np.int64)
    block = (e // (4 * K)) * K + e % K
    quarter = (e // K) % 4
    out = np.empty((len(realizations), n), dtype=U64)
    for i, r in enumerate(realizations):
        ctr = (block.astype(U64), np.full(n, step, U64), np.full(n, r, U64), np.full(n, stream, U64))
        w = np.stack(philox(ctr, key))  # [4, n]
        out[i] = w[quarter, e]
    return out


def _horner(z: np.ndarray, coefs: list[float]) -> np.ndarray:
    """``c0 + c1 z + ... + c4 z^4`` in Horner order, highest coefficient first."""
    p = np.full_like(z, coefs[-1])
    for c in coefs[-2::-1]:
        p = p * z + c
    return p


# The generator's near-minimax coefficients (lowest degree first), as published in its definition.
NEG2LN_C = [-4.000000000016719, -1.3333333049497504, -0.8000076934475038, -0.5707010207563262, -0.4723271819829197]
SIN_C = [0.9999999999956731, -0.16666666631591165, 0.00833332878245888, -0.000198392022122311, 2.7173456841089953e-06]
COS_C = [0.9999999999524894, -0.4999999961485761, 0.041666616692532826, -0.0013886617999647076, 2.4379831251175367e-05]


def neg2ln(n: np.ndarray, p: int) -> np.ndarray:
    """-2 ln(n 2^-p) for integers ``1 <= n < 2^53``, the generator's float64 sequence."""
    f, ex = np.frexp(n.astype(np.float64))  # n = f 2^ex, f in [1/2, 1): exact
    m, e = f * 2.0, ex.astype(np.int64) - 1
    big = m > math.sqrt(2.0)
    m = np.where(big, m * 0.5, m)
    k = e - p + big
    s = (m - 1.0) / (m + 1.0)
    return s * _horner(s * s, NEG2LN_C) + k.astype(np.float64) * (-2.0 * math.log(2.0))


def cos_sin(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of 2 pi b / 2^32 for uint32 ``b``, the generator's float64 sequence."""
    t = (b.astype(np.int64) + 2**29) % 2**32
    j = t // 2**30
    phi = (t % 2**30 - 2**29).astype(np.float64) * (math.pi / 2**31)
    z = phi * phi
    s, c = _horner(z, SIN_C) * phi, _horner(z, COS_C)
    cos = np.choose(j, [c, -s, -c, s])
    sin = np.choose(j, [s, c, -s, -c])
    return cos, sin


def gaussian_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.sqrt(neg2ln(2 * a.astype(np.int64) + 1, 33))
    cos, sin = cos_sin(b)
    return (r * cos).astype(np.float32), (r * sin).astype(np.float32)


def uniform(x: np.ndarray) -> np.ndarray:
    return ((2 * x.astype(np.int64) + 1 - 2**32).astype(np.float64) * (math.sqrt(3.0) / 2**32)).astype(np.float32)


def laplace(x: np.ndarray) -> np.ndarray:
    s = 2 * x.astype(np.int64) + 1 - 2**32
    v = neg2ln(2**32 - np.abs(s), 32) * math.sqrt(0.125)
    return np.where(s > 0, v, -v).astype(np.float32)


def noise(kind: str, key, realizations, step: int, stream: int, n: int) -> np.ndarray:
    """Unit-variance float32 noise ``[M, n]``; a Gaussian pairs quarters (0, 1) and (2, 3) of a chunk."""
    if kind != "gaussian":
        w = words(key, realizations, step, stream, n)
        return uniform(w) if kind == "uniform" else laplace(w)
    n_pad = -(-n // (4 * K)) * 4 * K
    w = words(key, realizations, step, stream, n_pad).reshape(len(realizations), -1, 4, K)
    g0, g1 = gaussian_pair(w[:, :, 0], w[:, :, 1])
    g2, g3 = gaussian_pair(w[:, :, 2], w[:, :, 3])
    return np.stack([g0, g1, g2, g3], axis=2).reshape(len(realizations), n_pad)[:, :n]


def keep(key, realizations, step: int, stream: int, n: int, p: float) -> np.ndarray:
    """Dropout keep mask ``[M, n]``: word >= floor(p 2^32)."""
    return words(key, realizations, step, stream, n) >= U64(int(p * 2**32))
