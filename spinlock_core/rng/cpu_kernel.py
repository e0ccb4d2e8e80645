"""The generator compiled for the CPU with numba: Philox4x32-10 plus the transforms of
:mod:`.transforms`, written straight into preallocated output arrays.

Same integers and the same sequence of IEEE float64 operations as the torch implementation, so the
outputs are the same bits: ``fastmath=False`` keeps LLVM from reassociating or fusing
multiply-adds, and ``error_model="numpy"`` drops Python's division-by-zero branch (a zero divisor
cannot occur here), which is what lets LLVM vectorize the loops; indices are unsigned for the same
reason (numba wraps negative signed indices). Every tunable constant is an argument, never a
global, so numba's on-disk cache (keyed on this file only) cannot hold stale values.

Each output is a flat array ``[M * n_pad]`` (``n_pad`` a multiple of ``4 * chunk``): realization
``r`` fills ``[r * n_pad, (r + 1) * n_pad)`` in the element layout of
:data:`.constants.CHUNK_BLOCKS`. A job is one (realization, chunk) pair, job ``r * chunks + c``;
the ``fill_*`` functions run jobs ``[job0, job1)`` and release the GIL, so :mod:`.cpu_threads`
can split the jobs across threads.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .constants import CHUNK_BLOCKS, FLOAT_CONSTANTS, PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1
from .cpu_target import choose_cpu_target

choose_cpu_target()  # before the first @njit below: the code generator reads it once

__all__ = ["INT_CONSTANTS", "KIND_CODES", "default_args", "fill_words", "fill_floats", "fill_keep"]

#: Integer constants in the order the kernels receive them.
INT_CONSTANTS = tuple(np.uint64(v) for v in (PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1))
#: ``fill_floats`` kind codes.
KIND_CODES = {"gaussian": 0, "uniform": 1, "laplace": 2}

_U = np.uint64
_MASK = np.uint64(0xFFFFFFFF)  # the definition of uint32, not a tunable constant
_INLINE = dict(inline="always", fastmath=False, error_model="numpy", cache=True)
_LOOP = dict(fastmath=False, error_model="numpy", cache=True)
_DRIVER = dict(fastmath=False, error_model="numpy", cache=True, nogil=True)


@njit(**_INLINE)
def _philox(c0, c1, c2, c3, k0, k1, ic):
    # masks tell LLVM every operand fits in 32 bits: a 32x32-bit vector multiply suffices
    mask = _MASK
    m0, m1, w0, w1 = ic[0] & mask, ic[1] & mask, ic[2] & mask, ic[3] & mask
    c0, c1, c2, c3, k0, k1 = c0 & mask, c1 & mask, c2 & mask, c3 & mask, k0 & mask, k1 & mask
    s32 = _U(32)
    for _ in range(10):
        p0 = m0 * c0  # < 2^64: exact in uint64
        p1 = m1 * c2
        n0 = (p1 >> s32) ^ c1 ^ k0
        n2 = (p0 >> s32) ^ c3 ^ k1
        c1 = p1 & mask
        c3 = p0 & mask
        c0 = n0
        c2 = n2
        k0 = (k0 + w0) & mask
        k1 = (k1 + w1) & mask
    return c0, c1, c2, c3


@intrinsic
def _bits(typingctx, x):
    """The IEEE-754 bit pattern of a float64, as uint64."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.uint64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, x):
    """The float64 of an IEEE-754 bit pattern."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen


@njit(**_INLINE)
def _horner(z, c0, c1, c2, c3, c4):
    return (((c4 * z + c3) * z + c2) * z + c1) * z + c0


@njit(**_INLINE)
def _neg2ln(n, p, fc):
    bits = _bits(np.float64(n))  # exact: n < 2^53
    e = np.int64(bits >> _U(52)) - np.int64(1023)
    m = _from_bits((bits & _U((1 << 52) - 1)) | _U(1023 << 52))
    big = m > fc[19]
    m = m * 0.5 if big else m
    k = e - np.int64(p) + (np.int64(1) if big else np.int64(0))
    s = (m - 1.0) / (m + 1.0)
    return s * _horner(s * s, fc[0], fc[1], fc[2], fc[3], fc[4]) + np.float64(k) * fc[5]


@njit(**_INLINE)
def _cos_sin(b, fc):
    t = (b + _U(1 << 29)) & _MASK
    j = t >> _U(30)
    phi = np.float64(np.int64(t & _U((1 << 30) - 1)) - np.int64(1 << 29)) * fc[6]
    z = phi * phi
    sn = _horner(z, fc[7], fc[8], fc[9], fc[10], fc[11]) * phi
    cs = _horner(z, fc[12], fc[13], fc[14], fc[15], fc[16])
    swap = (j & _U(1)) != _U(0)
    a = sn if swap else cs
    c = cs if swap else sn
    return (-a if ((j + _U(1)) & _U(2)) != _U(0) else a), (-c if (j & _U(2)) != _U(0) else c)


@njit(**_INLINE)
def _radius(a, fc):
    return np.sqrt(_neg2ln(_U(2) * a + _U(1), 33, fc))


@njit(**_INLINE)
def _uniform(x, fc):
    return np.float32(np.float64(np.int64(_U(2) * x + _U(1)) - np.int64(1 << 32)) * fc[17])


@njit(**_INLINE)
def _laplace(x, fc):
    s = np.int64(_U(2) * x + _U(1)) - np.int64(1 << 32)
    v = _neg2ln(_U((1 << 32) - abs(s)), 32, fc) * fc[18]
    return np.float32(v if s > 0 else -v)


@njit(**_LOOP)
def _gaussian_chunk(out, base, block0, chunk, step, real, stream, k0, k1, ic, fc):
    q = _U(chunk)
    for j in range(chunk):
        x0, x1, x2, x3 = _philox(_U(block0 + j), step, real, stream, k0, k1, ic)
        r = _radius(x0, fc)
        c, s = _cos_sin(x1, fc)
        i = _U(base + j)
        out[i] = np.float32(r * c)
        out[i + q] = np.float32(r * s)
        r = _radius(x2, fc)
        c, s = _cos_sin(x3, fc)
        out[i + _U(2) * q] = np.float32(r * c)
        out[i + _U(3) * q] = np.float32(r * s)


@njit(**_LOOP)
def _uniform_chunk(out, base, block0, chunk, step, real, stream, k0, k1, ic, fc):
    q = _U(chunk)
    for j in range(chunk):
        x0, x1, x2, x3 = _philox(_U(block0 + j), step, real, stream, k0, k1, ic)
        i = _U(base + j)
        out[i] = _uniform(x0, fc)
        out[i + q] = _uniform(x1, fc)
        out[i + _U(2) * q] = _uniform(x2, fc)
        out[i + _U(3) * q] = _uniform(x3, fc)


@njit(**_LOOP)
def _laplace_chunk(out, base, block0, chunk, step, real, stream, k0, k1, ic, fc):
    q = _U(chunk)
    for j in range(chunk):
        x0, x1, x2, x3 = _philox(_U(block0 + j), step, real, stream, k0, k1, ic)
        i = _U(base + j)
        out[i] = _laplace(x0, fc)
        out[i + q] = _laplace(x1, fc)
        out[i + _U(2) * q] = _laplace(x2, fc)
        out[i + _U(3) * q] = _laplace(x3, fc)


@njit(**_LOOP)
def _words_chunk(out, base, block0, chunk, step, real, stream, k0, k1, ic):
    q = _U(chunk)
    for j in range(chunk):
        x0, x1, x2, x3 = _philox(_U(block0 + j), step, real, stream, k0, k1, ic)
        i = _U(base + j)
        out[i] = np.uint32(x0)
        out[i + q] = np.uint32(x1)
        out[i + _U(2) * q] = np.uint32(x2)
        out[i + _U(3) * q] = np.uint32(x3)


@njit(**_LOOP)
def _keep_chunk(out, base, block0, chunk, step, real, stream, k0, k1, ic, threshold):
    q = _U(chunk)
    for j in range(chunk):
        x0, x1, x2, x3 = _philox(_U(block0 + j), step, real, stream, k0, k1, ic)
        i = _U(base + j)
        out[i] = x0 >= threshold
        out[i + q] = x1 >= threshold
        out[i + _U(2) * q] = x2 >= threshold
        out[i + _U(3) * q] = x3 >= threshold


@njit(**_DRIVER)
def fill_floats(out, kind, realizations, step, stream, k0, k1, chunk, ic, fc, job0, job1):
    """Jobs ``[job0, job1)`` of float32 ``out [M * n_pad]``: ``kind`` (``KIND_CODES``) for
    ``realizations [M]`` (int64)."""
    chunks = out.size // realizations.size // (4 * chunk)
    for job in range(job0, job1):
        r = job // chunks
        c = job - r * chunks
        base = job * 4 * chunk
        real = _U(realizations[r])
        if kind == 0:
            _gaussian_chunk(out, base, c * chunk, chunk, step, real, stream, k0, k1, ic, fc)
        elif kind == 1:
            _uniform_chunk(out, base, c * chunk, chunk, step, real, stream, k0, k1, ic, fc)
        else:
            _laplace_chunk(out, base, c * chunk, chunk, step, real, stream, k0, k1, ic, fc)


@njit(**_DRIVER)
def fill_words(out, realizations, step, stream, k0, k1, chunk, ic, job0, job1):
    """Jobs ``[job0, job1)`` of uint32 ``out [M * n_pad]``: the raw Philox words."""
    chunks = out.size // realizations.size // (4 * chunk)
    for job in range(job0, job1):
        r = job // chunks
        c = job - r * chunks
        _words_chunk(out, job * 4 * chunk, c * chunk, chunk, step, _U(realizations[r]), stream, k0, k1, ic)


@njit(**_DRIVER)
def fill_keep(out, threshold, realizations, step, stream, k0, k1, chunk, ic, job0, job1):
    """Jobs ``[job0, job1)`` of bool ``out [M * n_pad]``: the dropout keep mask ``word >= threshold``."""
    chunks = out.size // realizations.size // (4 * chunk)
    for job in range(job0, job1):
        r = job // chunks
        c = job - r * chunks
        _keep_chunk(out, job * 4 * chunk, c * chunk, chunk, step, _U(realizations[r]), stream, k0, k1, ic, threshold)


def default_args() -> tuple:
    """``(chunk, int constants, float constants)`` as the kernels take them."""
    return CHUNK_BLOCKS, INT_CONSTANTS, FLOAT_CONSTANTS
