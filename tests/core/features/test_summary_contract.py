"""SUMMARY features: names, aggregation, shapes, NaN policy, batch independence, degeneracy."""

from __future__ import annotations

import math

import pytest
import torch

from spinlock_core.features import summary
from spinlock_core.features.summary import (
    AGGREGATED_NAMES,
    SENSITIVITY_SLICE,
    SUMMARY_NAMES,
    aggregate,
    per_trajectory_features,
)

BLOCK_STARTS = {0: "std_final", 12: "centroid_final", 24: "corr_abs_final", 36: "energy_growth",
                48: "lag_asym_max_1", 62: "linf_raw_half_time", 110: "lipschitz_incr_t0"}


def synthetic_rollouts(seeds, M: int = 2, T: int = 40, H: int = 24) -> torch.Tensor:
    """Varied toy dynamics ``[len(seeds), M, T, 3, H, H]``: channel mixing, growth or decay,
    diffusion, advection, periodic forcing, optional saturation, smooth noise (own per
    realization). Realizations share the initial state, as in the real rollouts."""
    k = torch.fft.fftfreq(H, 1.0 / H, dtype=torch.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    out = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(1000 + seed)
        rand = lambda *s: torch.rand(*s, generator=gen, dtype=torch.float64)  # noqa: E731
        randn = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731

        def smooth(shape, length):
            filt = torch.exp(-((2 * math.pi * length) ** 2) * k2 / 2)
            f = torch.fft.ifft2(torch.fft.fft2(randn(*shape, H, H)) * filt).real
            return f / f.std(dim=(-2, -1), keepdim=True)

        length = 0.03 + 0.15 * rand(1).item()
        u0 = smooth((3,), length) * (0.3 + 2 * rand(3, 1, 1)) + randn(3, 1, 1)
        mix = torch.eye(3, dtype=torch.float64) + 0.15 * randn(3, 3)
        mix = mix / torch.linalg.eigvals(mix).abs().max()
        growth = 0.08 * (rand(1).item() - 0.5)
        diffusion = 0.08 * rand(1).item()  # stable: 4 pi^2 |f|^2 <= 20 for |f| <= 0.71
        shift = int(torch.randint(-1, 2, (1,), generator=gen))
        forcing = 0.3 * rand(1).item()
        omega = 2 * math.pi * (0.05 + 0.3 * rand(1).item())
        pattern = smooth((3,), 0.1)
        noise = 10 ** (-3 + 2 * rand(1).item())
        saturate = bool(rand(1).item() < 0.5)
        drift = 0.05 * randn(3, 1, 1)
        reals = []
        for _ in range(M):
            u, states = u0.clone(), [u0]
            for t in range(1, T):
                lap = torch.fft.ifft2(torch.fft.fft2(u) * (-4 * math.pi**2 * k2 / H**2)).real
                u = (1 + growth) * torch.einsum("ij,jhw->ihw", mix, u) + diffusion * lap
                u = u.roll(shift, dims=-1) + forcing * math.sin(omega * t) * pattern
                u = u + noise * (smooth((3,), 0.1) + drift + randn(3, 1, 1))
                if saturate:
                    u = 3 * torch.tanh(u / 3)
                states.append(u)
            reals.append(torch.stack(states))
        out.append(torch.stack(reals))
    return torch.stack(out).float()


@pytest.fixture(scope="module")
def rollouts():
    return synthetic_rollouts(range(16))


@pytest.fixture(scope="module")
def features(rollouts):
    return per_trajectory_features(rollouts)


def test_names_and_blocks():
    assert len(SUMMARY_NAMES) == 120 and len(set(SUMMARY_NAMES)) == 120
    assert len(AGGREGATED_NAMES) == 360 and len(set(AGGREGATED_NAMES)) == 360
    for start, name in BLOCK_STARTS.items():
        assert SUMMARY_NAMES[start] == name
    sizes = [len(block.NAMES) for block in summary.BLOCKS]
    assert sizes == [12, 12, 12, 12, 14, 48]
    assert SUMMARY_NAMES[109] == "tv_high_monotonicity"
    assert SUMMARY_NAMES[SENSITIVITY_SLICE][-1] == "output_input_corr"
    assert AGGREGATED_NAMES[0] == "std_final_mean"
    assert AGGREGATED_NAMES[120] == "std_final_std"
    assert AGGREGATED_NAMES[359] == "output_input_corr_cv"
    assert summary.VERSION == "1.1"


def test_aggregate_formulas():
    x = torch.tensor([[[1.0, -2.0, 0.0], [3.0, 2.0, 0.0], [5.0, 0.0, 0.0]]])  # [1, M=3, F=3]
    agg = aggregate(x)
    mean = torch.tensor([3.0, 0.0, 0.0])
    std = torch.tensor([2.0, 2.0, 0.0])
    cv = std / (torch.sqrt(mean**2 + std**2) + 1e-8)
    torch.testing.assert_close(agg[0], torch.cat([mean, std, cv]))
    assert 0 <= agg[0, 6:].min() and agg[0, 6:].max() <= 1  # < 1 before the float32 cast
    single = aggregate(x[:, :1])
    torch.testing.assert_close(single[0], torch.tensor([1.0, -2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))


def test_per_trajectory_shape_and_nan_policy(rollouts, features):
    assert features.shape == (16, 2, 120) and features.dtype == torch.float32
    assert torch.isfinite(features[..., :110]).all()
    assert torch.isnan(features[..., SENSITIVITY_SLICE]).all()
    agg = aggregate(features)
    assert agg.shape == (16, 360)
    nan_cols = torch.isnan(agg).any(0).nonzero().flatten().tolist()
    assert nan_cols == [*range(110, 120), *range(230, 240), *range(350, 360)]
    sens = torch.randn(2, 2, 10)
    with_sens = per_trajectory_features(rollouts[:2], sensitivity=sens)
    torch.testing.assert_close(with_sens[..., SENSITIVITY_SLICE], sens)
    assert torch.isfinite(aggregate(with_sens)).all()


def test_batch_independence(rollouts, features):
    for i in (0, 5):
        alone = per_trajectory_features(rollouts[i : i + 1])
        torch.testing.assert_close(alone[0, :, :110], features[i, :, :110], rtol=1e-4, atol=1e-5)
    batch = per_trajectory_features(rollouts[:8])
    torch.testing.assert_close(batch[..., :110], features[:8, :, :110], rtol=1e-4, atol=1e-5)


def test_precomputed_state_features_match(rollouts):
    from spinlock_core.features.temporal import state_features

    traj = rollouts[:2]
    states = state_features(traj.reshape(-1, *traj.shape[3:])).reshape(*traj.shape[:3], -1)
    torch.testing.assert_close(
        per_trajectory_features(traj, states), per_trajectory_features(traj), equal_nan=True
    )


def test_no_constant_column(features):
    per_operator = features.mean(1)[:, :110].double()
    spread = per_operator.std(0)
    scale = per_operator.abs().mean(0)
    constant = [SUMMARY_NAMES[j] for j in range(110) if spread[j] <= 1e-6 * (scale[j] + 1e-6)]
    assert not constant


# columns defined with a single state (FEATURES.md: everything needing two states is NaN)
SINGLE_STATE = {
    "std_final", "grad_energy_final", "corr_length_final", "skewness_final", "kurtosis_final",
    "std_mean", "grad_energy_mean", "corr_length_mean", "intermittency", "centroid_final",
    "slope_final", "entropy_final", "centroid_mean", "slope_mean", "entropy_mean",
    "low_frac_final", "high_frac_final", "corr_abs_final", "corr_abs_mean", "participation_final",
    "participation_mean", "mi_final", "mi_mean", "coherence_final", "coherence_mean",
}
NEEDS_3 = {"energy_curvature", "autocorr_time", "dominant_freq", "oscillation_strength",
           "roughness", "regime_switches", "stationarity", "divergence_rate", "lag_asym_max_1",
           "lag_asym_01", "lag_asym_02", "lag_asym_12"}
NEEDS_4 = {"lag_asym_max_2", "transfer_entropy_max", "transfer_entropy_asym"}
NEEDS_5 = {"lag_asym_max_3"}
NEEDS_8 = {"granger_01", "granger_02", "granger_12"}


@pytest.mark.parametrize("T", [1, 2, 3, 4, 7, 8])
def test_short_trajectories(rollouts, T):
    f = per_trajectory_features(rollouts[:2, :, :T])[..., :110]
    if T == 1:
        expected = {n for n in SUMMARY_NAMES[:110] if n not in SINGLE_STATE}
    else:
        expected = set()
        for need, names in ((3, NEEDS_3), (4, NEEDS_4), (5, NEEDS_5), (8, NEEDS_8)):
            if T < need:
                expected |= names
    nan = {SUMMARY_NAMES[j] for j in range(110) if torch.isnan(f[..., j]).any()}
    assert nan == expected
    assert not torch.isinf(f).any()
    agg = aggregate(per_trajectory_features(rollouts[:2, :, :T]))
    assert agg.shape == (2, 360)


def test_invalid_inputs(rollouts):
    with pytest.raises(ValueError, match=r"\[N, M, T, C, H, W\]"):
        per_trajectory_features(rollouts[0])
    with pytest.raises(ValueError, match="C = 3"):
        per_trajectory_features(rollouts[:1, :, :4, :2])
    with pytest.raises(ValueError, match="square"):
        per_trajectory_features(rollouts[:1, :, :4, :, :, :20])
    with pytest.raises(ValueError, match="state_feats"):
        per_trajectory_features(rollouts[:1, :, :4], torch.zeros(1, 2, 4, 62))
    with pytest.raises(ValueError, match="sensitivity"):
        per_trajectory_features(rollouts[:1, :, :4], sensitivity=torch.zeros(1, 2, 9))
    with pytest.raises(ValueError, match="per_traj"):
        aggregate(torch.zeros(2, 120))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(rollouts, features):
    gpu = per_trajectory_features(rollouts[:4].cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu()[..., :110], features[:4, :, :110], rtol=1e-3, atol=1e-4)


def test_diverged_neighbour_does_not_leak(rollouts):
    """A non-finite trajectory (a diverged rollout) neither crashes nor touches other rows."""
    traj = rollouts[:3, :, :16].clone()
    traj[1, :, 10:] = float("nan")
    traj[2, 0, 12:] = float("inf")
    states = torch.zeros(*traj.shape[:3], 63)  # TEMPORAL features are not under test here
    f = per_trajectory_features(traj, states)
    assert torch.isfinite(f[0, :, :110]).all()
    torch.testing.assert_close(f[:1], per_trajectory_features(traj[:1], states[:1]), equal_nan=True)
