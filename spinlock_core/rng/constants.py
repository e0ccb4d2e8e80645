"""The numbers that define the generator (``GENERATOR``): Philox4x32-10 multipliers and Weyl key
increments, the element layout, and the float64 constants of the exact transforms.

Every implementation (the numba CPU kernel, the torch ops, the numpy reference in the tests) uses
these values, and every float transform is a fixed sequence of correctly rounded IEEE operations
on them, so a change here changes every dataset: bump ``GENERATOR``'s version with it.

The polynomial coefficients are near-minimax (Chebyshev) fits, computed once with
``mpmath.chebyfit(f, [0, z_max], 5)`` at 50 digits and written out as the nearest doubles, as
fdlibm and Cephes do: five coefficients reach the accuracy of seven Taylor terms, which is what
keeps the draw cheap. Their accuracy against ``math.log``/``math.cos``/``math.sin`` is pinned by
``tests/core/test_rng.py``.
"""

from __future__ import annotations

import math

__all__ = [
    "MASK32",
    "CHUNK_BLOCKS",
    "PHILOX_M0",
    "PHILOX_M1",
    "PHILOX_W0",
    "PHILOX_W1",
    "PHILOX_ROUNDS",
    "SQRT2",
    "NEG2LN_COEFS",
    "NEG2LN2",
    "TWO_PI_2_32",
    "SIN_COEFS",
    "COS_COEFS",
    "SQRT3_2_32",
    "LAPLACE_SCALE",
    "FLOAT_CONSTANTS",
]

MASK32 = 0xFFFFFFFF

#: Element layout of one draw: element ``e`` of a realization lies in chunk ``e // (4 K)``,
#: quarter ``q = (e // K) % 4`` and lane ``j = e % K`` (``K = CHUNK_BLOCKS``), and uses word ``q``
#: of Philox block ``(e // (4 K)) * K + j``. A chunk's four quarters are four contiguous runs, so
#: the CPU kernel's loops vectorize; a value depends on ``e`` only, never on the draw's size.
CHUNK_BLOCKS = 1024

# Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11 (Random123).
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9  # golden ratio
PHILOX_W1 = 0xBB67AE85  # sqrt(3) - 1
PHILOX_ROUNDS = 10

#: A mantissa ``m`` in [1, 2) above it is halved, so ``m`` lies in [sqrt(1/2), sqrt(2)].
SQRT2 = math.sqrt(2.0)

#: -2 ln m = s (c0 + c1 z + ... + c4 z^4) with s = (m - 1)/(m + 1), z = s^2 in [0, (3 - 2 sqrt2)^2]
#: (-4 times a fit of atanh(s)/s; relative error 4.3e-12).
NEG2LN_COEFS = (-4.000000000016719, -1.3333333049497504, -0.8000076934475038, -0.5707010207563262,
                -0.4723271819829197)
NEG2LN2 = -1.3862943611198906  # -2 ln 2, correctly rounded

TWO_PI_2_32 = math.pi * 2.0**-31  # 2 pi / 2^32 (exact scaling of the double nearest pi)
#: sin phi = phi (s0 + s1 z + ... + s4 z^4), z = phi^2, |phi| <= pi/4 (relative error 4.3e-12).
SIN_COEFS = (0.9999999999956731, -0.16666666631591165, 0.00833332878245888, -0.000198392022122311,
             2.7173456841089953e-06)
#: cos phi = c0 + c1 z + ... + c4 z^4, z = phi^2, |phi| <= pi/4 (absolute error 4.8e-11).
COS_COEFS = (0.9999999999524894, -0.4999999961485761, 0.041666616692532826, -0.0013886617999647076,
             2.4379831251175367e-05)

SQRT3_2_32 = math.sqrt(3.0) * 2.0**-32  # U(-sqrt3, sqrt3) has unit variance
#: Laplace(scale 1/sqrt2) has unit variance: |x| = -ln(v) / sqrt2 = (-2 ln v) * sqrt(1/8). A product,
#: never a quotient: CUDA torch divides by a Python scalar via its reciprocal, CPU torch does not.
LAPLACE_SCALE = math.sqrt(0.125)

#: The float constants in the order the CPU kernel receives them (an argument, not a global, so
#: numba's on-disk cache can never hold stale values).
FLOAT_CONSTANTS = (*NEG2LN_COEFS, NEG2LN2, TWO_PI_2_32, *SIN_COEFS, *COS_COEFS, SQRT3_2_32, LAPLACE_SCALE,
                   SQRT2)
