"""INITIAL family [N, 42]: names, shared definitions with TEMPORAL, peak density."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinlock_core.features import spatial, spectral
from spinlock_core.features.initial import INITIAL_NAMES, STATISTICS, VERSION, initial_features

N = 32


def test_names_and_version():
    assert len(INITIAL_NAMES) == 42 and len(set(INITIAL_NAMES)) == 42
    assert len(STATISTICS) == 14
    assert INITIAL_NAMES[:3] == ("c0_mean", "c0_std", "c0_skewness")
    assert INITIAL_NAMES[14] == "c1_mean" and INITIAL_NAMES[-1] == "c2_peak_density"
    assert VERSION == "1.1"


def test_shares_the_temporal_definitions():
    rng = np.random.default_rng(0)
    ic = torch.from_numpy(rng.standard_normal((5, 3, N, N))).cumsum(-1).float()
    f = initial_features(ic)
    assert f.shape == (5, 42) and f.dtype == torch.float32
    for c in range(3):
        sp = spatial.spatial_features(ic[:, c])
        sc = spectral.spectral_features(ic[:, c])
        for stat in STATISTICS[:-1]:
            ref = sp[:, spatial.NAMES.index(stat)] if stat in spatial.NAMES else sc[:, spectral.NAMES.index(stat)]
            torch.testing.assert_close(f[:, INITIAL_NAMES.index(f"c{c}_{stat}")], ref, msg=stat)


def test_peak_density_counts_isolated_spikes_including_wrapped_ones():
    ic = torch.zeros(1, 3, N, N, dtype=torch.float64)
    spikes = [(0, 0), (5, 9), (20, 31), (31, 16), (12, 12)]
    for y, x in spikes:
        ic[0, 0, y, x] = 1.0
    ic[0, 1] = 1.0  # constant: no local maxima
    ic[0, 2, 4, 4] = ic[0, 2, 4, 5] = 1.0  # a plateau of two pixels is not a strict maximum
    f = initial_features(ic)
    density = [f[0, INITIAL_NAMES.index(f"c{c}_peak_density")].item() for c in range(3)]
    assert density[0] == pytest.approx(len(spikes) * 1000 / (N * N))
    assert density[1] == 0.0 and density[2] == 0.0


def test_peak_density_threshold():
    # smooth bumps of height 1 on a larger background of small noise: only bumps above mean + 2 std count
    rng = np.random.default_rng(1)
    y, x = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    u = np.zeros((N, N))
    for cy, cx in [(8, 8), (8, 24), (24, 8)]:
        u += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 4.0)
    low = u + 0.2 * np.exp(-((y - 24) ** 2 + (x - 24) ** 2) / 4.0)  # a fourth, too low bump
    ic = torch.from_numpy(np.stack([low, low, low])[None] + 1e-9 * rng.standard_normal((1, 3, N, N)))
    assert initial_features(ic)[0, INITIAL_NAMES.index("c0_peak_density")].item() == pytest.approx(3 * 1000 / N**2)


def test_constant_and_extreme_ic_are_finite():
    f = initial_features(torch.full((2, 3, N, N), 4.0))
    assert torch.isfinite(f).all()
    assert f[0, INITIAL_NAMES.index("c0_mean")].item() == 4.0
    assert f[0, INITIAL_NAMES.index("c1_corr_length")].item() == 0.5
    for stat in ("std", "skewness", "kurtosis", "grad_energy", "centroid", "slope", "entropy", "peak_density"):
        assert f[0, INITIAL_NAMES.index(f"c2_{stat}")].item() == 0.0
    assert torch.isfinite(initial_features(torch.randn(2, 3, N, N) * 1e6)).all()


def test_rows_are_independent_and_chunking_is_invisible():
    torch.manual_seed(0)
    ic = torch.randn(9, 3, N, N).cumsum(-2)
    ref = initial_features(ic)
    torch.testing.assert_close(initial_features(ic, chunk=2), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(initial_features(ic[4:5]), ref[4:5], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(2, 2, 8, 8), "C = 3"),
        (torch.zeros(2, 3, 8), r"\[B, C, H, W\]"),
        (torch.zeros(2, 3, 6, 6), "even and >= 8"),
    ],
)
def test_invalid_input_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        initial_features(bad)
