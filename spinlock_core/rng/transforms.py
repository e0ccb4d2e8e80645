"""uint32 words -> unit-variance floats, bit-identical on every device (torch implementation).

Only integer operations and correctly rounded IEEE float64 operations (+, -, *, /, sqrt), each a
separate operation in the order written below, then one rounding to float32. No fused
multiply-add, no library transcendental (whose last bit differs between CPU libm/SLEEF and CUDA),
no division by a Python scalar (CUDA torch turns it into a product with the reciprocal). The CPU
kernel (:mod:`.cpu_kernel`) and the numpy reference in the tests follow the same sequence.

Definitions, for uint32 words ``x``, ``a``, ``b`` (constants in :mod:`.constants`;
``horner(z, c) = (((c4 z + c3) z + c2) z + c1) z + c0``):

``neg2ln(n, P)`` = -2 ln(n 2^-P) for an integer ``1 <= n < 2^53``:
    v = float64(n) (exact);  e = exponent field of v - 1023     (the bit length of n, minus one)
    m = v with its exponent field set to 1023                    (m = n / 2^e in [1, 2), exact)
    big = m > SQRT2;  m = m * 0.5 if big;  k = e - P + big       (m in [sqrt(1/2), sqrt 2])
    s = (m - 1) / (m + 1);  z = s * s
    result = s * horner(z, NEG2LN_COEFS) + k * NEG2LN2
``cos_sin(b)`` = cos and sin of theta = 2 pi b / 2^32:
    t = (b + 2^29) mod 2^32;  j = t >> 30;  y = (t & (2^30 - 1)) - 2^29   (theta = j pi/2 + phi)
    phi = y * TWO_PI_2_32;  z = phi * phi                                  (|phi| <= pi/4)
    s = horner(z, SIN_COEFS) * phi;  c = horner(z, COS_COEFS)
    (cos theta, sin theta) = (c, s), (-s, c), (-c, -s), (s, -c) for j = 0, 1, 2, 3
``gaussian(a, b)`` (Box-Muller, two outputs):
    r = sqrt(neg2ln(2a + 1, 33))                    (u = (a + 1/2) / 2^32 in (0, 1))
    (float32(r * cos theta), float32(r * sin theta)) with (cos theta, sin theta) = cos_sin(b)
``uniform(x)`` = float32((2x + 1 - 2^32) * SQRT3_2_32)       U(-sqrt3, sqrt3), unit variance
``laplace(x)`` (inverse CDF, scale 1/sqrt2, unit variance):
    s = 2x + 1 - 2^32;  v = neg2ln(2^32 - |s|, 32) * LAPLACE_SCALE;  float32(v if s > 0 else -v)
``keep(x, p)`` = x >= floor(p 2^32)                             (dropout keep mask, P = 1 - p)
"""

from __future__ import annotations

import math

import torch

from .constants import (
    COS_COEFS,
    LAPLACE_SCALE,
    MASK32,
    NEG2LN2,
    NEG2LN_COEFS,
    SIN_COEFS,
    SQRT2,
    SQRT3_2_32,
    TWO_PI_2_32,
)

__all__ = ["neg2ln", "cos_sin", "gaussian", "uniform", "laplace", "keep", "dropout_threshold"]


def _horner(z: torch.Tensor, coefs: tuple[float, ...]) -> torch.Tensor:
    """``((c_n z + c_{n-1}) z + ... ) z + c_0`` as separate multiplies and adds."""
    p = torch.full_like(z, coefs[-1])
    for c in reversed(coefs[:-1]):
        p = p * z + c
    return p


def neg2ln(n: torch.Tensor, p: int) -> torch.Tensor:
    """-2 ln(n 2^-p) in float64 for int64 ``n`` in ``[1, 2^53)`` (module docstring)."""
    bits = n.double().view(torch.int64)  # exact conversion; the IEEE-754 bit pattern
    e = (bits >> 52) - 1023
    m = ((bits & ((1 << 52) - 1)) | (1023 << 52)).view(torch.float64)
    big = m > SQRT2
    m = torch.where(big, m * 0.5, m)
    k = e - p + big.long()
    s = (m - 1.0) / (m + 1.0)
    return s * _horner(s * s, NEG2LN_COEFS) + k.double() * NEG2LN2


def cos_sin(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of ``2 pi b / 2^32`` in float64 for uint32 words ``b`` (module docstring)."""
    t = (b + (1 << 29)) & MASK32
    j = t >> 30
    phi = ((t & ((1 << 30) - 1)) - (1 << 29)).double() * TWO_PI_2_32
    z = phi * phi
    sn = _horner(z, SIN_COEFS) * phi
    cs = _horner(z, COS_COEFS)
    swap = (j & 1) == 1
    a, c = torch.where(swap, sn, cs), torch.where(swap, cs, sn)
    return torch.where(((j + 1) & 2) == 2, -a, a), torch.where((j & 2) == 2, -c, c)


def gaussian(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent standard normals (float32) from uint32 words ``a`` (radius), ``b`` (angle)."""
    r = torch.sqrt(neg2ln(2 * a + 1, 33))
    c, s = cos_sin(b)
    return (r * c).float(), (r * s).float()


def uniform(x: torch.Tensor) -> torch.Tensor:
    """U(-sqrt3, sqrt3) (unit variance), float32, from uint32 words ``x``."""
    return ((2 * x + 1 - (1 << 32)).double() * SQRT3_2_32).float()


def laplace(x: torch.Tensor) -> torch.Tensor:
    """Laplace with scale 1/sqrt2 (unit variance), float32, from uint32 words ``x``."""
    s = 2 * x + 1 - (1 << 32)
    v = neg2ln((1 << 32) - s.abs(), 32) * LAPLACE_SCALE
    return torch.where(s > 0, v, -v).float()


def dropout_threshold(p: float) -> int:
    """``floor(p 2^32)``: a word below it drops its element (probability ``p`` up to 2^-32).

    Raises:
        ValueError: ``p`` outside ``[0, 1)``.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
    return math.floor(p * 2.0**32)


def keep(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout keep mask (bool) of uint32 words ``x``: ``x >= floor(p 2^32)``."""
    return x >= dropout_threshold(p)
