"""SUMMARY per-trajectory features on trajectories with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from spinlock_core.features.summary import SUMMARY_NAMES, per_trajectory_features


def smooth_fields(gen: torch.Generator, count: int, H: int, length: float = 0.12) -> torch.Tensor:
    """``count`` zero-mean, unit-std smooth periodic fields ``[count, H, H]`` (float64)."""
    noise = torch.randn(count, H, H, generator=gen, dtype=torch.float64)
    k = torch.fft.fftfreq(H, 1.0 / H, dtype=torch.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    f = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-((2 * math.pi * length) ** 2) * k2 / 2)).real
    f = f - f.mean((-2, -1), keepdim=True)
    return f / f.std(dim=(-2, -1), keepdim=True)


def col(features: torch.Tensor, name: str) -> torch.Tensor:
    return features[..., SUMMARY_NAMES.index(name)]


def tau(T: int) -> torch.Tensor:
    return torch.arange(T, dtype=torch.float64) / (T - 1)


def test_exponential_growth():
    gen = torch.Generator().manual_seed(0)
    T, r = 33, 1.5
    g = smooth_fields(gen, 6, 16).reshape(2, 3, 16, 16)  # [M, C, H, W]
    traj = (torch.exp(r * tau(T))[None, :, None, None, None] * g[:, None]).float()[None]
    f = per_trajectory_features(traj)[0]  # [M, 120]
    close = {
        "energy_growth": 2 * r,
        "variance_growth": 2 * r,
        "energy_curvature": 0.0,
        "std_ratio": r,
        "grad_energy_ratio": 2 * r,
        "divergence_rate": r,
        "l2_raw_ratio": r,
        "l2_low_ratio": r,
        "linf_raw_ratio": r,
        "tv_high_ratio": r,
        "dc_share_change": 0.0,
        "spectral_change": 0.0,
        "corr_length_slope": 0.0,
        "entropy_slope": 0.0,
    }
    for name, value in close.items():
        assert torch.allclose(col(f, name), torch.tensor(value), atol=2e-3), name
    # |I(t) - I(0)| = exp(r tau) - 1 reaches half its final value at tau = log((1 + e^r) / 2) / r
    expected_half = math.log((1 + math.exp(r)) / 2) / r
    assert torch.allclose(col(f, "l2_raw_half_time"), torch.tensor(expected_half), atol=0.02)
    assert (col(f, "l2_raw_monotonicity") == 1).all()
    assert (col(f, "linf_raw_monotonicity") == 1).all()
    assert (col(f, "trend_r2") > 0.85).all()
    # min-max normalised histograms do not see a global scale
    assert (col(f, "entropy_raw_ratio").abs() < 1e-2).all()


def test_monotone_decay():
    gen = torch.Generator().manual_seed(1)
    T = 24
    g = smooth_fields(gen, 3, 16)[None] + 0.5  # [1, C, H, W], nonzero mean
    traj = (torch.exp(-2.0 * tau(T))[:, None, None, None] * g).float()[None, None]
    f = per_trajectory_features(traj)[0, 0]
    for inv in ("l2", "linf", "tv"):
        for scale in ("raw", "low", "high"):
            assert col(f, f"{inv}_{scale}_monotonicity") == -1, (inv, scale)
            assert col(f, f"{inv}_{scale}_ratio") == pytest.approx(-2.0, abs=1e-3)
    assert col(f, "energy_growth") == pytest.approx(-4.0, abs=1e-3)


def test_constant_trajectory():
    gen = torch.Generator().manual_seed(2)
    g = smooth_fields(gen, 3, 16) + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)[:, None, None]
    traj = g.float()[None, None, None].expand(1, 2, 20, 3, 16, 16).contiguous()
    f = per_trajectory_features(traj)[0]
    assert torch.isfinite(f[:, :110]).all()
    zero = [
        "energy_growth", "energy_curvature", "variance_growth", "divergence_rate", "dc_share_change",
        "std_ratio", "grad_energy_ratio", "corr_length_slope", "centroid_slope", "spectral_change",
        "energy_sync", "phase_locking", "energy_share_std", "autocorr_time", "dominant_freq",
        "oscillation_strength", "trend_r2", "roughness", "regime_switches", "stationarity",
        "lag_asym_max_1", "granger_01", "transfer_entropy_max", "transfer_entropy_asym",
        "irreversibility", "flow_x", "flow_y",
    ]
    for name in zero:
        assert (col(f, name) == 0).all(), name
    inv = f[:, 62:110].reshape(2, 4, 3, 4)  # invariant, scale, metric
    assert (inv[..., 0] == 0).all()  # half_time
    assert (inv[..., 1] == 0).all()  # drift_std
    assert (inv[..., 2].abs() < 1e-6).all()  # ratio
    assert (inv[..., 3] == 0).all()  # monotonicity


def test_oscillating_energy():
    gen = torch.Generator().manual_seed(3)
    T, freq = 129, 0.125  # 16 cycles over the 128 steps of de
    g = smooth_fields(gen, 3, 16)
    amp = torch.sqrt(1 + 0.5 * torch.sin(2 * math.pi * freq * torch.arange(T, dtype=torch.float64)))
    traj = (amp[:, None, None, None] * g).float()[None, None]
    f = per_trajectory_features(traj)[0, 0]
    assert col(f, "dominant_freq") == pytest.approx(freq)
    assert col(f, "oscillation_strength") > 0.95
    assert abs(col(f, "energy_growth")) < 0.1


def channel_mean_trajectory(means: torch.Tensor, seed: int, shift_per_step: int = 0, H: int = 16):
    """Fixed smooth fields (optionally advected along x) plus channel means ``means [C, T]``."""
    gen = torch.Generator().manual_seed(seed)
    g = smooth_fields(gen, 3, H, length=0.08)
    T = means.shape[1]
    states = [g.roll(shift_per_step * t, dims=-1) for t in range(T)]
    traj = torch.stack(states) + means.T[:, :, None, None]
    return traj.float()[None, None]


def lagged_means(gen: torch.Generator, T: int, lag: int, walk: bool, coupled: bool = True):
    """Channel means: s_1(t) = s_0(t - lag) + small noise when coupled; s_2 independent."""
    steps = torch.randn(3, T + lag, generator=gen, dtype=torch.float64)
    base = steps.cumsum(-1) if walk else steps
    s0 = base[0, lag:]
    s1 = base[0, :T] if coupled else base[1, lag:]
    s1 = s1 + 0.05 * torch.randn(T, generator=gen, dtype=torch.float64)
    return torch.stack([s0, s1, base[2, lag:]])


def test_lead_lag_random_walk():
    gen = torch.Generator().manual_seed(4)
    T = 128
    f = per_trajectory_features(channel_mean_trajectory(lagged_means(gen, T, 1, True), 5))[0, 0]
    gen = torch.Generator().manual_seed(4)
    ind = per_trajectory_features(
        channel_mean_trajectory(lagged_means(gen, T, 1, True, coupled=False), 5)
    )[0, 0]
    assert col(f, "lag_asym_01") > 0
    assert col(f, "lag_asym_01") > max(abs(col(f, "lag_asym_02")), abs(col(f, "lag_asym_12")))
    assert col(f, "granger_01") > 0.9
    assert col(f, "granger_02") < 0.2 and col(f, "granger_12") < 0.2
    assert col(f, "transfer_entropy_max") > 0
    assert col(f, "transfer_entropy_max") > col(ind, "transfer_entropy_max") + 0.05
    assert col(f, "transfer_entropy_asym") > col(ind, "transfer_entropy_asym")
    assert col(ind, "granger_01") < 0.2


@pytest.mark.parametrize("lag", [1, 2, 3])
def test_lead_lag_recovers_lag(lag):
    gen = torch.Generator().manual_seed(6)
    means = lagged_means(gen, 160, lag, walk=False)
    f = per_trajectory_features(channel_mean_trajectory(means, 7))[0, 0]
    lag_max = torch.stack([col(f, f"lag_asym_max_{k}") for k in (1, 2, 3)])
    assert int(lag_max.argmax()) + 1 == lag
    assert lag_max[lag - 1] > 0.8
    # channel 1 follows channel 0: reversing the roles flips the sign
    g = per_trajectory_features(channel_mean_trajectory(means[[1, 0, 2]], 7))[0, 0]
    if lag == 1:
        assert col(f, "lag_asym_01") > 0.8 and col(g, "lag_asym_01") < -0.8


def test_time_reversal_flips_arrow_features():
    gen = torch.Generator().manual_seed(8)
    T = 64
    kicks = torch.empty(3, T, dtype=torch.float64).exponential_(1.0, generator=gen) - 1.0
    means = kicks.cumsum(-1)
    means[1, 1:] = means[0, :-1] + 0.05 * torch.randn(T - 1, generator=gen, dtype=torch.float64)
    traj = channel_mean_trajectory(means, 9, shift_per_step=1, H=32)
    f = per_trajectory_features(traj)[0, 0]
    r = per_trajectory_features(traj.flip(2))[0, 0]
    assert col(f, "irreversibility") > 0.5
    assert col(r, "irreversibility") == pytest.approx(-col(f, "irreversibility").item(), abs=1e-5)
    for name in ("lag_asym_01", "lag_asym_02", "lag_asym_12"):
        assert col(r, name) == pytest.approx(-col(f, name).item(), abs=1e-5), name
    assert col(f, "lag_asym_01") > 0.05
    # u moves +1 pixel along x per step: du ~ -dx u
    assert col(f, "flow_x") < -0.8 and col(r, "flow_x") > 0.8
    assert abs(col(f, "flow_y")) < 0.2
