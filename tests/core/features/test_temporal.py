"""TEMPORAL family: assembly, batch and chunk independence, precision, robustness, degeneracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinlock_core.features import cross_channel, spatial, spectral
from spinlock_core.features.temporal import TEMPORAL_NAMES, VERSION, state_features, temporal_features

N = 64
#: histogram and argmax-type columns may jump when a value crosses a bin edge or a tie flips
DISCRETE = {"mi_01", "mi_02", "mi_12", "ring_peaks", "rolloff_85", "peak_k", "peak_kx", "peak_ky", "peak_frac"}


def _grf(rng: np.random.Generator, n: int, ell: float, aniso: float = 1.0) -> np.ndarray:
    k = np.fft.fftfreq(n, 1.0 / n)
    kk = np.hypot(k[None, :] * aniso, k[:, None] / aniso)
    u = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * np.exp(-((2 * np.pi * kk * ell) ** 2) / 4)).real
    return u / (u.std() + 1e-12)


def _waves(rng: np.random.Generator, n: int) -> np.ndarray:
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    u = np.zeros((n, n))
    for _ in range(rng.integers(1, 5)):
        kx, ky = rng.integers(-n // 3, n // 3 + 1, size=2)
        u += rng.uniform(0.2, 2) * np.cos(2 * np.pi * (kx * x + ky * y) / n + rng.uniform(0, 2 * np.pi))
    return u


def _blobs(rng: np.random.Generator, n: int) -> np.ndarray:
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    u = np.zeros((n, n))
    for _ in range(rng.integers(1, 7)):
        cx, cy = rng.uniform(0, n, size=2)
        ddx = (x - cx + n / 2) % n - n / 2
        ddy = (y - cy + n / 2) % n - n / 2
        u += rng.normal() * np.exp(-(ddx**2 + ddy**2) / (2 * rng.uniform(1.5, 10) ** 2))
    return u


def varied_states(count: int = 64, n: int = N, seed: int = 0) -> torch.Tensor:
    """``[count, 3, n, n]`` smooth fields of several kinds, scales and channel couplings."""
    states = []
    for i in range(count):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
        kind = i % 4
        chans = []
        for _ in range(3):
            if kind == 0:
                chans.append(_grf(rng, n, np.exp(rng.uniform(np.log(0.01), np.log(0.25)))))
            elif kind == 1:
                chans.append(_grf(rng, n, rng.uniform(0.01, 0.1), aniso=np.exp(rng.uniform(-1, 1))))
            elif kind == 2:
                chans.append(_waves(rng, n))
            else:
                chans.append(_blobs(rng, n))
        c = np.stack(chans)
        coupling = rng.uniform(0, 1)  # mixes the channels to vary their correlations
        mixed = (rng.normal(size=(3, 3)) @ c.reshape(3, -1)).reshape(3, n, n)
        c = (1 - coupling) * c + coupling * mixed
        c = c * np.exp(rng.uniform(-3, 2)) + rng.normal(size=(3, 1, 1))
        states.append(c)
    return torch.from_numpy(np.stack(states)).float()


def test_names_and_version():
    assert len(TEMPORAL_NAMES) == 63 and len(set(TEMPORAL_NAMES)) == 63
    assert TEMPORAL_NAMES[:19] == spatial.NAMES
    assert TEMPORAL_NAMES[19:46] == spectral.NAMES
    assert TEMPORAL_NAMES[46:] == cross_channel.NAMES
    assert VERSION == "1.1"


def test_state_features_is_channel_mean_plus_cross_channel():
    x = varied_states(4, n=32)
    f = state_features(x)
    assert f.shape == (4, 63) and f.dtype == torch.float32
    flat = x.reshape(12, 32, 32)
    per_channel = torch.cat([spatial.spatial_features(flat), spectral.spectral_features(flat)], 1)
    torch.testing.assert_close(f[:, :46], per_channel.reshape(4, 3, 46).mean(1))
    torch.testing.assert_close(f[:, 46:], cross_channel.cross_channel_features(x))


def _assert_same(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> None:
    scale = torch.maximum(a.abs(), b.abs())
    assert ((a - b).abs() <= rtol * scale + 1e-6).all(), (a - b).abs().max()


def test_batch_independence():
    torch.manual_seed(0)
    x = varied_states(16, n=32)
    alone = state_features(x[5:6])
    others = torch.randn(16, 3, 32, 32) * 3
    others[5] = x[5]
    _assert_same(state_features(others)[5:6], alone)
    _assert_same(state_features(x)[5:6], alone)


def test_chunk_size_independence():
    x = varied_states(10, n=32)
    ref = state_features(x, chunk=256)
    for chunk in (1, 3, 7):
        _assert_same(state_features(x, chunk=chunk), ref)


def test_temporal_features_shape_and_realization_mean():
    torch.manual_seed(1)
    traj = torch.randn(2, 3, 4, 3, 16, 16).cumsum(2)
    f = temporal_features(traj)
    assert f.shape == (2, 4, 63) and f.dtype == torch.float32
    per_state = state_features(traj.reshape(-1, 3, 16, 16)).reshape(2, 3, 4, 63)
    torch.testing.assert_close(f, per_state.mean(1))
    # a non-contiguous trajectory gives the same numbers
    torch.testing.assert_close(temporal_features(traj.transpose(1, 2).contiguous().transpose(1, 2)), f)


def test_float64_and_float32_agree():
    x = varied_states(32)
    f32 = state_features(x)
    f64 = state_features(x.double())
    spread = f64.std(0) + 1e-6
    err = ((f32 - f64).abs() / spread).median(0).values
    for i, name in enumerate(TEMPORAL_NAMES):
        limit = 1e-2 if name in DISCRETE else 1e-3
        assert err[i] < limit, (name, err[i].item())


def test_no_nan_or_inf():
    torch.manual_seed(2)
    rand = torch.randn(4, 3, 32, 32)
    const = torch.full((2, 3, 32, 32), 7.0)
    zero = torch.zeros(1, 3, 32, 32)
    mixed = torch.randn(2, 3, 32, 32)
    mixed[:, 1] = -4.0
    extreme = varied_states(4, n=32) * 1e6
    spikes = torch.zeros(1, 3, 32, 32)
    spikes[..., 5, 7] = 1e6
    nyquist = torch.ones(1, 3, 32, 32)
    nyquist[..., ::2, :] = -1.0
    for x in (rand, const, zero, mixed, extreme, spikes, nyquist, rand.half(), rand.bfloat16(), rand.double()):
        f = state_features(x)
        assert torch.isfinite(f).all(), x.dtype


def test_columns_are_not_degenerate():
    """No TEMPORAL column is constant over varied smooth states."""
    f = state_features(varied_states(64))
    std = f.std(0)
    constant = [name for name, s in zip(TEMPORAL_NAMES, std.tolist()) if not s > 0]
    assert constant == []
    assert torch.isfinite(f).all()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: state_features(torch.zeros(2, 3, 16)), r"\[B, C, H, W\]"),
        (lambda: state_features(torch.zeros(2, 4, 16, 16)), "C = 3"),
        (lambda: state_features(torch.zeros(2, 3, 16, 16), chunk=0), "chunk"),
        (lambda: temporal_features(torch.zeros(2, 3, 16, 16)), r"\[N, M, T, C, H, W\]"),
        (lambda: temporal_features(torch.zeros(2, 0, 4, 3, 16, 16)), "M >= 1"),
    ],
)
def test_invalid_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = varied_states(16)
    cpu = state_features(x)
    gpu = state_features(x.cuda())
    assert gpu.device.type == "cuda"
    err = ((gpu.cpu() - cpu).abs() / (cpu.std(0) + 1e-6)).median(0).values
    for i, name in enumerate(TEMPORAL_NAMES):
        assert err[i] < (1e-2 if name in DISCRETE else 1e-3), name
