"""SUMMARY per-field reductions on analytic fields."""

from __future__ import annotations

import math

import pytest
import torch

from spinlock_core.features.summary import _fields

H = 32


def mode(kx: int, ky: int, amp: float = 1.0) -> torch.Tensor:
    j = torch.arange(H, dtype=torch.float64)
    return amp * torch.cos(2 * math.pi * (kx * j[None, :] + ky * j[:, None]) / H)


def test_radial_distribution_of_a_mode():
    p = _fields.radial_distribution(torch.stack([mode(3, 4), mode(5, 0)]).float())
    assert p.shape == (2, H // 2)
    assert p[0, 4] == pytest.approx(1.0, abs=1e-5)  # |k| = 5 for (3, 4)
    assert p[1, 4] == pytest.approx(1.0, abs=1e-5)
    assert (_fields.radial_distribution(torch.ones(1, H, H)) == 0).all()


def test_gaussian_blur_and_invariants_of_a_mode():
    k, amp = 4, 2.0
    inv = _fields.field_invariants((mode(k, 0, amp) + 0.5)[None].float())[0]  # [4, 3]
    sigma = H / 32
    gain = math.exp(-2 * math.pi**2 * sigma**2 * (k / H) ** 2)
    linf, l2, entropy, tv = range(4)
    raw, low, high = range(3)
    assert inv[linf, raw] == pytest.approx(2.5, rel=1e-5)
    assert inv[linf, high] == pytest.approx(amp * (1 - gain), rel=1e-4)
    assert inv[l2, raw] == pytest.approx(math.sqrt(0.25 + amp**2 / 2), rel=1e-5)
    assert inv[l2, low] == pytest.approx(math.sqrt(0.25 + (amp * gain) ** 2 / 2), rel=1e-4)
    # mean |forward difference| of A cos(2 pi k x / H) along x, nothing along y
    j = torch.arange(H, dtype=torch.float64)
    c = amp * torch.cos(2 * math.pi * k * j / H)
    expected_tv = 0.5 * (c.roll(-1) - c).abs().mean().item()
    assert inv[tv, raw] == pytest.approx(expected_tv, rel=1e-5)
    assert 0 < inv[entropy, raw] < math.log(32)


def test_histogram_entropy():
    ramp = torch.arange(H * H, dtype=torch.float32).reshape(1, H, H)
    inv = _fields.field_invariants(ramp)
    assert inv[0, 2, 0] == pytest.approx(math.log(32), rel=1e-6)
    const = _fields.field_invariants(torch.full((1, H, H), 3.0))
    assert (const[0, 2] == 0).all()


def test_flow_and_gradient_kurtosis():
    u = mode(1, 0).float()
    du = u.roll(1, -1) - u  # advected by +1 pixel along x
    gx, gy = _fields.central_gradients(u[None])
    r = _fields.flow_correlations(gx, gy, du[None])[0]
    assert r[0] < -0.99 and r[1] == 0  # dy u is zero: flat, guarded to 0
    assert _fields.gradient_kurtosis(*_fields.central_gradients(torch.ones(1, H, H)))[0] == 0


def test_central_gradients_match_rolls():
    u = torch.randn(2, 3, 8, 8)
    gx, gy = _fields.central_gradients(u)
    torch.testing.assert_close(gx, u.roll(-1, -1) - u.roll(1, -1))
    torch.testing.assert_close(gy, u.roll(-1, -2) - u.roll(1, -2))
    g = torch.sqrt(((gx / 2) ** 2 + (gy / 2) ** 2)).flatten(-2).double()
    d = g - g.mean(-1, keepdim=True)
    expected = (d**4).mean(-1) / (d**2).mean(-1) ** 2 - 3
    torch.testing.assert_close(_fields.gradient_kurtosis(gx, gy).double(), expected, rtol=1e-4, atol=1e-5)


def _reference_invariants(u: torch.Tensor) -> torch.Tensor:
    """Direct float64 formulas on the three materialised scales: ``[B, H, W] -> [B, 4, 3]``."""
    u = u.double()
    sigma = u.shape[-1] / 32
    f = torch.fft.fftfreq(u.shape[-1], dtype=torch.float64)
    g = torch.exp(-2 * math.pi**2 * sigma**2 * (f[:, None] ** 2 + f[None, :] ** 2))
    low = torch.fft.ifft2(torch.fft.fft2(u) * g).real
    out = []
    for x in (u, low, u - low):
        flat = x.flatten(-2)
        lo, hi = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
        bins = ((flat - lo) / (hi - lo) * 32).long().clamp(0, 31)
        p = torch.stack([(bins == b).double().mean(-1) for b in range(32)], -1)
        ent = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
        tv = 0.5 * ((x - x.roll(-1, -1)).abs().mean((-2, -1)) + (x - x.roll(-1, -2)).abs().mean((-2, -1)))
        out.append(torch.stack([flat.abs().amax(-1), flat.pow(2).mean(-1).sqrt(), ent, tv], -1))
    return torch.stack(out, -1)


@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_invariants_match_direct_formulas(offset):
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(4, 16, 16, generator=gen, dtype=torch.float64).cumsum(-1) + offset
    torch.testing.assert_close(_fields.field_invariants(u), _reference_invariants(u), rtol=1e-9, atol=1e-9)
    # float32 input with a large offset keeps its fluctuation-scale precision
    inv32 = _fields.field_invariants(u.float())
    torch.testing.assert_close(inv32[:, [0, 1, 3]], _reference_invariants(u.float())[:, [0, 1, 3]], rtol=1e-5, atol=1e-5)
