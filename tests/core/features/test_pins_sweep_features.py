"""Per-state feature helpers and the shard accumulator pinned against hand computations and
numpy references: ``RolloutFeatures`` (rows, chunking of the SUMMARY calls, the sensitivity
arguments, the timing counters, the staged arrays), the ARCHITECTURE and INITIAL wrappers, the
spectral / spatial / cross-channel columns at their thresholds, the shared ``_common`` helpers
(on non-square grids where the axes could be confused) and the SUMMARY time-series helpers.
"""

from __future__ import annotations

import dataclasses
import math
import re
from types import SimpleNamespace

import numpy as np
import scipy.signal
import pytest
import torch

from spinlock_core.config.parameters import ParameterSpace
from spinlock_core.features import extract as _extract
from spinlock_core.features import spectral as _spectral
from spinlock_core.features import summary as _summary
from spinlock_core.features import temporal as _temporal
from spinlock_core.features._common import (
    STD_FLOOR,
    band_edges_sq,
    dx,
    dy,
    laplacian,
    ls_slope,
    pearson,
    prepare,
    quantiles_sorted,
    sort_last,
    standardized_moments,
    validate_fields,
    validate_states,
    working_dtype,
)
from spinlock_core.features.cross_channel import NAMES as CROSS_NAMES
from spinlock_core.features.cross_channel import (
    cross_channel_features,
    cross_channel_from,
)
from spinlock_core.features.extract import (
    RolloutFeatures,
    architecture_features,
    initial_family,
)
from spinlock_core.features.initial import initial_features
from spinlock_core.features.spatial import NAMES as SPATIAL_NAMES
from spinlock_core.features.spatial import spatial_features
from spinlock_core.features.spectral import NAMES as SPECTRAL_NAMES
from spinlock_core.features.spectral import (
    _dynamic_range,
    masked_slope,
    spectral_features,
    spectral_from,
)
from spinlock_core.features.summary import _series
from spinlock_core.features.summary._inputs import build_inputs


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (conftest.py)


# --------------------------------------------------------------------------- RolloutFeatures
B, M, T, H = 5, 2, 3, 8


def _cfg(sensitivity: bool = False, root_seed: int = 11):
    return SimpleNamespace(
        simulation=SimpleNamespace(num_realizations=M, num_timesteps=T),
        features=SimpleNamespace(summary=SimpleNamespace(extract_operator_features=sensitivity)),
        root_seed=root_seed,
    )


def _rollout(seed: int = 3) -> torch.Tensor:
    """Trajectories ``[B, M, T, 3, H, W]`` float32 with an operator-dependent scale and offset."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, M, T, 3, H, H, generator=g)
    scale = torch.arange(1, B + 1, dtype=torch.float32).view(B, 1, 1, 1, 1, 1)
    x = x * scale + 0.3 * scale
    x[:, :, 1:] += 0.5 * x[:, :, :-1].clone()
    return x


class _Clock:
    """A fake ``time`` module: perf_counter returns 1, 3, 7, 15, ... (differences all distinct)."""

    def __init__(self):
        self.calls = 0

    def perf_counter(self) -> float:
        self.calls += 1
        return float(2**self.calls - 1)


def _shifted_state_features(monkeypatch):
    """Make the TEMPORAL state features ``extract`` computes differ from the ones SUMMARY would
    compute on its own (a constant offset): SUMMARY must be fed the ones computed in the loop."""
    real = _temporal.state_features

    def shifted(x):
        return real(x) + 0.25

    monkeypatch.setattr(_extract, "_temporal", SimpleNamespace(state_features=shifted, TEMPORAL_NAMES=_temporal.TEMPORAL_NAMES))
    return shifted


def _fake_sensitivity(op, traj, *, root_seed, index):
    """``[M, 10]``: depends on the operator, the trajectory, root_seed and index."""
    m = traj.shape[0]
    base = traj.double().mean((1, 2, 3, 4))[:, None]  # [M, 1]
    cols = torch.arange(10, dtype=torch.float64)[None, :]
    return (base + op * 100.0 + root_seed * 1000.0 + index * 10.0 + cols).float().reshape(m, 10)


@pytest.mark.parametrize("chunk", [1, 2, 3, B])
def test_rollout_features_do_not_depend_on_the_summary_chunk(monkeypatch, chunk):
    """[B, M, T, 3, H, W] with B = 5 not divisible by 2 or 3: every operator's SUMMARY rows and
    aggregate equal those of a call on that operator alone with the loop's state features, and
    its TEMPORAL rows are the realization mean of its state features; rows follow the indices."""
    shifted = _shifted_state_features(monkeypatch)
    monkeypatch.setattr(_extract, "sensitivity_features", _fake_sensitivity)
    monkeypatch.setattr(RolloutFeatures, "summary_chunk", chunk)
    start = 20
    traj = _rollout()
    indices = np.array([23, 20, 24, 21, 22])
    ops = [1.0, 2.0, 3.0, 4.0, 5.0]
    fc = RolloutFeatures(_cfg(sensitivity=True, root_seed=11), start, B, {"summary", "temporal"})
    fc(indices, traj, ops, [None] * B)
    assert fc.seen.all()
    sf = shifted(traj.reshape(B * M * T, 3, H, H)).reshape(B, M, T, -1)
    for i, idx in enumerate(indices):
        row = idx - start
        sens = _fake_sensitivity(ops[i], traj[i], root_seed=11, index=int(idx))
        want = _summary.per_trajectory_features(traj[i : i + 1], sf[i : i + 1], sens[None])
        np.testing.assert_allclose(fc.per_traj[row], want[0].numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(fc.aggregated[row], _summary.aggregate(want)[0].numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(fc.temporal[row], sf[i].mean(0).numpy(), rtol=1e-6, atol=1e-6)
        # the sensitivity block holds the fake's values (its arguments: op, traj[i], seed, index)
        np.testing.assert_allclose(fc.per_traj[row][:, 110:], sens.numpy(), rtol=1e-6)


@pytest.mark.parametrize(("chunk", "sizes"), [(1, [1, 1, 1, 1, 1]), (2, [2, 2, 1]), (3, [3, 2]), (8, [5])])
def test_rollout_features_call_summary_chunk_operators_at_a_time(monkeypatch, chunk, sizes):
    """summary_chunk is the number of operators per SUMMARY call: B = 5 operators go in
    consecutive slices of at most ``chunk``, each operator exactly once, in order."""
    calls = []
    real = _summary.per_trajectory_features

    def recording(traj, sf, sens):
        calls.append((traj[:, 0, 0, 0, 0, 0].tolist(), sf.shape[0]))
        return real(traj, sf, sens)

    monkeypatch.setattr(_summary, "per_trajectory_features", recording)
    monkeypatch.setattr(RolloutFeatures, "summary_chunk", chunk)
    traj = _rollout(8)
    fc = RolloutFeatures(_cfg(), 0, B, {"summary"})
    fc(np.arange(B), traj, [None] * B, [None] * B)
    assert [n for _, n in calls] == sizes
    firsts = [v for vals, _ in calls for v in vals]
    assert firsts == traj[:, 0, 0, 0, 0, 0].tolist()


def test_rollout_features_without_sensitivity_leave_its_columns_nan(monkeypatch):
    """extract_operator_features False: the sensitivity columns are NaN and nothing else is;
    a second batch fills the remaining rows."""
    def boom(*a, **k):
        raise AssertionError("sensitivity must not be computed")

    monkeypatch.setattr(_extract, "sensitivity_features", boom)
    traj = _rollout(5)
    fc = RolloutFeatures(_cfg(sensitivity=False), 0, B, {"summary"})
    fc(np.array([0, 1, 2]), traj[:3], [None] * 3, [None] * 3)
    assert fc.seen.tolist() == [True, True, True, False, False]
    assert np.isnan(fc.per_traj[3:]).all()
    fc(np.array([4, 3]), traj[3:], [None] * 2, [None] * 2)
    assert np.isnan(fc.per_traj[..., 110:]).all()
    want = _summary.per_trajectory_features(traj).numpy()
    np.testing.assert_allclose(fc.per_traj[[0, 1, 2, 4, 3]], want, rtol=1e-5, atol=1e-5)
    assert np.isfinite(fc.per_traj[..., :12]).all()
    staged = fc.stage_arrays()
    assert list(staged) == ["features_summary"]
    assert set(staged["features_summary"]) == {
        "features/summary/aggregated/features", "features/summary/per_trajectory/features"}
    assert staged["features_summary"]["features/summary/aggregated/features"] is fc.aggregated
    assert staged["features_summary"]["features/summary/per_trajectory/features"] is fc.per_traj


def test_rollout_features_temporal_only_and_staged_arrays():
    """Only TEMPORAL: the staged dict holds exactly the temporal array under its stage and path."""
    traj = _rollout(6)[:2]
    fc = RolloutFeatures(_cfg(), 4, 2, {"temporal"})
    fc(np.array([5, 4]), traj, [None, None], [None, None])
    sf = _temporal.state_features(traj.reshape(2 * M * T, 3, H, H)).reshape(2, M, T, -1)
    np.testing.assert_allclose(fc.temporal[1], sf[0].mean(0).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fc.temporal[0], sf[1].mean(0).numpy(), rtol=1e-6, atol=1e-6)
    staged = fc.stage_arrays()
    assert list(staged) == ["features_temporal"]
    assert list(staged["features_temporal"]) == ["features/temporal/features"]
    assert staged["features_temporal"]["features/temporal/features"] is fc.temporal


def test_rollout_features_timing_counters_accumulate(monkeypatch):
    """Fake clock 1, 3, 7, 15, 31 per call (t0, t1, t2, t3, end): each counter adds its own
    difference, and a second call adds again."""
    clock = _Clock()
    monkeypatch.setattr(_extract, "time", clock)
    traj = _rollout(7)[:1, :, :2]
    cfg = SimpleNamespace(simulation=SimpleNamespace(num_realizations=M, num_timesteps=2),
                          features=SimpleNamespace(summary=SimpleNamespace(extract_operator_features=False)),
                          root_seed=0)
    fc = RolloutFeatures(cfg, 0, 1, {"summary", "temporal"})
    fc(np.array([0]), traj, [None], [None])
    # t0 = 1, t1 = 3, t2 = 7, t3 = 15, end = 31
    assert fc.seconds == {"state_features": 2.0, "temporal": 4.0, "summary": 16.0, "sensitivity": 8.0}
    fc(np.array([0]), traj, [None], [None])
    # t0 = 63, t1 = 127, t2 = 255, t3 = 511, end = 1023
    assert fc.seconds == {"state_features": 66.0, "temporal": 132.0, "summary": 528.0, "sensitivity": 264.0}


@pytest.mark.parametrize("indices", [[2, 3], [6, 7], [4, 8]])
def test_rollout_features_reject_operators_outside_the_shard(indices):
    """Shard [3, 8): an index below 3 or at / above 8 is rejected with the shard's bounds."""
    fc = RolloutFeatures(_cfg(), 3, 5, {"temporal"})
    idx = np.array(indices)
    if indices == [6, 7]:
        fc(idx, _rollout()[:2], [None, None], [None, None])  # inside: accepted
        assert fc.seen.tolist() == [False, False, False, True, True]
        return
    with pytest.raises(ValueError, match="^" + re.escape(f"operators {indices} outside this shard [3, 8)") + "$"):
        fc(idx, _rollout()[:2], [None, None], [None, None])


def test_stage_arrays_names_the_first_ten_missing_operators():
    """Missing rows are reported as operator indices (start added), at most ten of them."""
    fc = RolloutFeatures(_cfg(), 100, 14, {"temporal"})
    fc.seen[[0, 2]] = True
    want = [101, *range(103, 112)]
    with pytest.raises(ValueError, match="^" + re.escape(f"features missing for operators {want}...") + "$"):
        fc.stage_arrays()


def test_architecture_features_normalise_the_unit_draws():
    """Continuous parameters: the normalised value is the unit draw itself (lin and log scale)."""
    space = ParameterSpace(architecture={
        "dropout_rate": {"type": "continuous", "bounds": [0.0, 0.3]},
        "noise_scale": {"type": "continuous", "bounds": [0.001, 0.5], "log_scale": True},
    })
    unit = [[0.25, 0.5], [1.0, 0.0]]  # a list: converted to float64
    got = architecture_features(SimpleNamespace(parameter_space=space), unit)
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got, np.array(unit), rtol=1e-12, atol=1e-12)


def test_initial_family_of_a_non_contiguous_array():
    """INITIAL [n, 42] from a non-contiguous float64 view: equal to initial_features of a copy."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((2, 3, 8, 8))
    ics = base.transpose(0, 1, 3, 2)  # non-contiguous view
    got = initial_family(ics)
    want = initial_features(torch.from_numpy(np.ascontiguousarray(ics))).numpy()
    assert isinstance(got, np.ndarray) and got.shape == (2, 42)
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- spectral
def _spec_col(f: torch.Tensor, name: str) -> torch.Tensor:
    return f[:, SPECTRAL_NAMES.index(name)]


def _with_radial(n: int, radial: list[list[float]]) -> torch.Tensor:
    """Spectral columns of white-noise fields ``[B, n, n]`` whose radial spectrum is replaced by
    ``radial [B, n/2]`` (the columns decided by S alone then follow the given S)."""
    u = torch.randn(len(radial), n, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    p = prepare(validate_fields(u))
    return spectral_from(dataclasses.replace(p, radial=torch.tensor(radial, dtype=torch.float64)))


def test_rolloff_of_the_corner_mode_is_the_last_bin():
    """A checkerboard ``(-1)^(x + y)`` [1, 8, 8] holds all its power in the corner bin
    (kN, kN), the last one by |k|: 85 % of the power is reached only there, rolloff = sqrt(2)."""
    n = 8
    i = torch.arange(n, dtype=torch.float64)
    u = ((-1.0) ** (i[:, None] + i[None, :]))[None]
    f = spectral_features(u)
    assert _spec_col(f, "rolloff_85").item() == pytest.approx(math.sqrt(2.0), rel=1e-12)
    assert _spec_col(f, "peak_k").item() == pytest.approx(math.sqrt(2.0), rel=1e-12)
    # no ring holds power (|k| > kN): no slope, no dynamic range, no ring peak
    for name in ("dynamic_range", "slope", "slope_high", "ring_peaks"):
        assert _spec_col(f, name).item() == 0.0


def test_rolloff_index_counts_bins_strictly_below_85_percent():
    """Shares [1, Nh] on the 8 x 8 half plane: 0.85 on the last |k| = 1 bin (sorted position 3)
    and 0.15 on a |k| = 2 bin. The cumulative share reaches 0.85 exactly at |k| = 1, so the
    rolloff is 1 / kN (the first bin where 85 % is reached, not the one after it)."""
    u = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    p = prepare(validate_fields(u))
    order = p.grid.order
    assert p.grid.kmag_sorted[:7].tolist() == [0.0, 1.0, 1.0, 1.0, math.sqrt(2.0), math.sqrt(2.0), 2.0]
    share = torch.zeros_like(p.share)
    share[0, order[3]] = 0.85
    share[0, order[6]] = 0.15
    f = spectral_from(dataclasses.replace(p, share=share))
    assert _spec_col(f, "rolloff_85").item() == 0.25
    # just below 0.85 at |k| = 1: 85 % is reached only at |k| = 2
    share[0, order[3]] = 0.84
    share[0, order[6]] = 0.16
    f = spectral_from(dataclasses.replace(p, share=share))
    assert _spec_col(f, "rolloff_85").item() == 0.5


def test_ring_peaks_threshold_is_strict():
    """S = [1, 0, 0.1, 0] [B, 4]: ring 3 is a local maximum at exactly 0.1 max S: not counted;
    slightly above, counted; the noise floor 1e-10 / (n^2 - 1) decides for tiny spectra."""
    floor = 1e-10 / 63
    f = _with_radial(8, [
        [1.0, 0.0, 0.1, 0.0],
        [1.0, 0.0, 0.10000001, 0.0],
        [0.0, 1e-11, 0.0, 0.0],  # 0.1 max below the floor, the peak above it: counted
        [0.0, 0.5 * floor, 0.0, 0.0],  # below the floor: not counted
    ])
    np.testing.assert_array_equal(_spec_col(f, "ring_peaks").numpy(), [0.0, 1.0, 1.0, 0.0])
    # a local maximum must exceed both neighbours strictly (a plateau is no peak)
    f = _with_radial(8, [[0.2, 1.0, 1.0, 0.2], [0.2, 1.0, 0.3, 0.2], [0.3, 0.2, 1.0, 0.5]])
    np.testing.assert_array_equal(_spec_col(f, "ring_peaks").numpy(), [0.0, 1.0, 1.0])


def test_energetic_rings_include_the_thresholds():
    """A ring with S exactly 1e-6 max S (or exactly the 1e-12 noise share) carries energy."""
    rel, noise = _spectral.ENERGY_REL, _spectral.RING_NOISE_SHARE
    f = _with_radial(8, [
        [1.0, rel, 0.0, 0.0],
        [1.0, 0.5 * rel, 0.0, 0.0],
        [1e-6, 0.0, noise, 0.0],  # 1e-12 = 1e-6 max: both thresholds exactly
    ])
    dyn = _spec_col(f, "dynamic_range").numpy()
    slope = _spec_col(f, "slope").numpy()
    # two energetic rings: median = mean of the two, slope through both points
    want_dyn = [math.log10(1.0 / (0.5 * (1.0 + rel))), 0.0, math.log10(1e-6 / (0.5 * (1e-6 + noise)))]
    want_slope = [math.log(rel) / math.log(2.0), 0.0, (math.log(noise) - math.log(1e-6)) / math.log(3.0)]
    np.testing.assert_allclose(dyn, want_dyn, rtol=1e-10)
    np.testing.assert_allclose(slope, want_slope, rtol=1e-10)


def test_slope_high_uses_the_rings_from_kn_over_4():
    """n = 16 (kN = 8, first high ring k = 2): S = k^-2 on rings 1..8 except ring 1 raised,
    slope_high fits rings 2..8 only (exactly -2), slope all eight."""
    k = np.arange(1, 9, dtype=np.float64)
    S = k**-2.0
    S[0] = 50.0
    f = _with_radial(16, [S.tolist()])
    assert _spec_col(f, "slope_high").item() == pytest.approx(-2.0, rel=1e-12)
    want = np.polyfit(np.log(k), np.log(S), 1)[0]
    assert _spec_col(f, "slope").item() == pytest.approx(want, rel=1e-12)
    # and with kN = 4 (n = 8) the high rings start at k = 1: slope_high == slope
    S4 = np.array([3.0, 0.5, 0.2, 0.01])
    f = _with_radial(8, [S4.tolist()])
    want4 = np.polyfit(np.log(np.arange(1, 5)), np.log(S4), 1)[0]
    assert _spec_col(f, "slope_high").item() == pytest.approx(want4, rel=1e-12)


def _dyn_reference(S: np.ndarray, mask: np.ndarray) -> float:
    if mask.sum() < 2:
        return 0.0
    return math.log10(S.max() / np.median(S[mask]))


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_dynamic_range_matches_the_median_definition(n):
    """[3, n] spectra with random masks: log10(max S / median over the mask), 0 below two rings
    (the median of an even count is the mean of the middle two; max is over every ring)."""
    rng = np.random.default_rng(n)
    for trial in range(6):
        S = rng.random((3, n)) + 0.01
        mask = rng.random((3, n)) < 0.6
        mask[trial % 3] = True  # one row with every ring
        got = _dynamic_range(torch.from_numpy(S), torch.from_numpy(mask))
        want = [_dyn_reference(S[b], mask[b]) for b in range(3)]
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-15)


def test_dynamic_range_by_hand():
    """[1, 2]: median of (1, 4) is 2.5 and max 4; [1, 3] masked to (2, 8): median 5, max 9."""
    got = _dynamic_range(torch.tensor([[1.0, 4.0]], dtype=torch.float64), torch.tensor([[True, True]]))
    assert got.item() == pytest.approx(math.log10(4.0 / 2.5), rel=1e-14)
    got = _dynamic_range(torch.tensor([[9.0, 2.0, 8.0]], dtype=torch.float64), torch.tensor([[False, True, True]]))
    assert got.item() == pytest.approx(math.log10(9.0 / 5.0), rel=1e-14)


def _slope_reference(y, x, m) -> float:
    if m.sum() < 2 or np.ptp(x[m]) == 0:
        return 0.0
    return float(np.polyfit(x[m], y[m], 1)[0])


def test_masked_slope_matches_polyfit():
    """[4, 6] rows against x [6] with a small spread (sum of squares < 1): slope over the masked
    entries; rows with 2 entries fit exactly, 1 or 0 entries or equal x give 0."""
    rng = np.random.default_rng(3)
    x = np.array([0.0, 0.05, 0.1, 0.1, 0.2, 0.3])
    y = rng.standard_normal((5, 6)) * 3.0 + 10.0
    mask = np.array([
        [True, True, True, False, True, True],
        [False, True, False, False, True, False],  # two entries
        [False, False, True, False, False, False],  # one entry
        [False, False, True, True, False, False],  # two entries with the same x
        [False] * 6,
    ])
    got = masked_slope(torch.from_numpy(y), torch.from_numpy(x), torch.from_numpy(mask))
    want = [_slope_reference(y[b], x, mask[b]) for b in range(5)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    assert got[1].item() == pytest.approx((y[1, 4] - y[1, 1]) / 0.15, rel=1e-10)
    assert got[2].item() == 0.0 and got[3].item() == 0.0 and got[4].item() == 0.0


# --------------------------------------------------------------------------- _common: validation
@pytest.mark.parametrize(("dtype", "want"), [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                             (torch.float16, torch.float32), (torch.bfloat16, torch.float32)])
def test_working_dtype_and_the_validated_copy(dtype, want):
    """float64 stays float64, every other floating dtype works in float32."""
    assert working_dtype(dtype) == want
    u = torch.ones(2, 8, 8, dtype=dtype)
    assert validate_fields(u).dtype == want
    assert validate_states(torch.ones(1, 3, 8, 8, dtype=dtype)).dtype == want
    # convert=False: the tensor comes back in its own dtype
    assert validate_states(torch.ones(1, 3, 8, 8, dtype=dtype), convert=False).dtype == dtype


@pytest.mark.parametrize("n", [8, 10, 14])
def test_valid_grids_pass(n):
    """Even square grids from 8 up are accepted (fields [3, n, n], states [2, 3, n, n])."""
    assert validate_fields(torch.zeros(3, n, n)).shape == (3, n, n)
    assert validate_states(torch.zeros(2, 3, n, n)).shape == (2, 3, n, n)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((3, 8, 10), "field must hold square fields (H = W), got H=8, W=10"),
        ((3, 10, 8), "field must hold square fields (H = W), got H=10, W=8"),
        ((5, 6, 6), "field grid size must be even and >= 8, got 6"),
        ((5, 7, 7), "field grid size must be even and >= 8, got 7"),
        ((5, 9, 9), "field grid size must be even and >= 8, got 9"),
        ((5, 15, 15), "field grid size must be even and >= 8, got 15"),
        ((8, 8), "field must be [B, H, W], got shape (8, 8)"),
        ((1, 1, 8, 8), "field must be [B, H, W], got shape (1, 1, 8, 8)"),
    ],
)
def test_validate_fields_messages(shape, message):
    """The message names the argument and the offending sizes."""
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        validate_fields(torch.zeros(shape), name="field")


def test_validate_fields_rejects_non_tensors_and_integers():
    """A non-tensor and an integer tensor are rejected with the type / dtype received."""
    with pytest.raises(ValueError, match="^" + re.escape("u must be a torch.Tensor, got ndarray") + "$"):
        validate_fields(np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="^" + re.escape("u must be a floating tensor, got torch.int64") + "$"):
        validate_fields(torch.zeros(1, 8, 8, dtype=torch.int64))


@pytest.mark.parametrize(
    ("shape", "dtype", "message"),
    [
        ((2, 3, 8), torch.float32, "s must be [B, C, H, W], got shape (2, 3, 8)"),
        ((2, 2, 8, 8), torch.float32, "s must have C = 3 channels, got 2"),
        ((2, 3, 8, 8), torch.int32, "s must be a floating tensor, got torch.int32"),
        ((4, 3, 8, 10), torch.float32, "s must hold square fields (H = W), got H=8, W=10"),
        ((4, 3, 6, 6), torch.float32, "s grid size must be even and >= 8, got 6"),
    ],
)
def test_validate_states_messages(shape, dtype, message):
    """States [B, C, H, W]: rank, channel count, dtype and grid are checked, named by argument."""
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        validate_states(torch.zeros(shape, dtype=dtype), name="s")


def test_validate_states_other_channel_counts_and_non_tensors():
    """``channels`` sets the expected C; a list is no tensor."""
    assert validate_states(torch.zeros(1, 2, 8, 8), channels=2).shape == (1, 2, 8, 8)
    with pytest.raises(ValueError, match="^" + re.escape("x must have C = 2 channels, got 3") + "$"):
        validate_states(torch.zeros(1, 3, 8, 8), channels=2)
    with pytest.raises(ValueError, match="^" + re.escape("x must be a torch.Tensor, got list") + "$"):
        validate_states([[0.0]])


def test_validated_copies_are_detached():
    """The returned tensors never require grad (also with convert=False)."""
    u = torch.ones(1, 8, 8, requires_grad=True)
    assert not validate_fields(u).requires_grad
    assert not validate_states(torch.ones(1, 3, 8, 8, requires_grad=True), convert=False).requires_grad


# --------------------------------------------------------------------------- _common: derivatives
def test_derivatives_on_a_non_square_grid():
    """[2, 4, 6]: dx along the last axis (W = 6), dy along rows (H = 4), 5-point Laplacian."""
    rng = np.random.default_rng(0)
    u = rng.standard_normal((2, 4, 6))
    t = torch.from_numpy(u)
    np.testing.assert_allclose(dx(t).numpy(), 0.5 * (np.roll(u, -1, 2) - np.roll(u, 1, 2)), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(dy(t).numpy(), 0.5 * (np.roll(u, -1, 1) - np.roll(u, 1, 1)), rtol=1e-14, atol=1e-15)
    lap = np.roll(u, -1, 2) + np.roll(u, 1, 2) + np.roll(u, -1, 1) + np.roll(u, 1, 1) - 4 * u
    np.testing.assert_allclose(laplacian(t).numpy(), lap, rtol=1e-13, atol=1e-14)
    # [1, 2, 4, 6] (an extra leading axis): the same per field
    np.testing.assert_allclose(laplacian(t[None]).numpy()[0], lap, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(dy(t[None]).numpy()[0], dy(t).numpy(), rtol=0, atol=0)


def test_laplacian_by_hand():
    """A single 1 at (1, 2) of a [1, 3, 5] grid: -4 there, 1 at its four periodic neighbours."""
    u = torch.zeros(1, 3, 5, dtype=torch.float64)
    u[0, 1, 2] = 1.0
    want = np.zeros((3, 5))
    want[1, 2] = -4.0
    want[0, 2] = want[2, 2] = want[1, 1] = want[1, 3] = 1.0
    np.testing.assert_array_equal(laplacian(u)[0].numpy(), want)
    gx = np.zeros((3, 5))
    gx[1, 1], gx[1, 3] = 0.5, -0.5
    np.testing.assert_array_equal(dx(u)[0].numpy(), gx)
    gy = np.zeros((3, 5))
    gy[0, 2], gy[2, 2] = 0.5, -0.5
    np.testing.assert_array_equal(dy(u)[0].numpy(), gy)


# --------------------------------------------------------------------------- _common: statistics
def test_standardized_moments_match_numpy_on_3d_input():
    """[2, 3, 7]: mean, population std, skewness and excess kurtosis along the last axis."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 3, 7)) ** 3 + 2.0
    mean, std, skew, kurt = standardized_moments(torch.from_numpy(a))
    m = a.mean(-1)
    c = a - m[..., None]
    s = np.sqrt((c**2).mean(-1))
    np.testing.assert_allclose(mean.numpy(), m, rtol=1e-13)
    np.testing.assert_allclose(std.numpy(), s, rtol=1e-13)
    np.testing.assert_allclose(skew.numpy(), (c**3).mean(-1) / s**3, rtol=1e-12)
    np.testing.assert_allclose(kurt.numpy(), (c**4).mean(-1) / s**4 - 3.0, rtol=1e-12)


def test_standardized_moments_std_floor_is_inclusive():
    """±1e-6 exactly (std == STD_FLOOR): moments computed (kurtosis 1 - 3 = -2); half of it: 0."""
    a = torch.tensor([[1.0, -1.0, 1.0, -1.0], [0.5, -0.5, 0.5, -0.5], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64) * STD_FLOOR
    _, std, skew, kurt = standardized_moments(a)
    assert std[0].item() == STD_FLOOR
    np.testing.assert_array_equal(kurt.numpy(), [-2.0, 0.0, 0.0])
    np.testing.assert_array_equal(skew.numpy(), [0.0, 0.0, 0.0])


def test_sort_and_quantiles_match_numpy():
    """[2, 3, 5] rows sorted along the last axis; quantiles as numpy's linear default."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((2, 3, 5))
    s = sort_last(torch.from_numpy(a))
    np.testing.assert_array_equal(s.numpy(), np.sort(a, axis=-1))
    qs = (0.0, 0.05, 0.3, 0.5, 0.9, 1.0)
    got = quantiles_sorted(s, qs)
    assert got.shape == (2, 3, len(qs))
    np.testing.assert_allclose(got.numpy(), np.moveaxis(np.quantile(a, qs, axis=-1), 0, -1), rtol=1e-13, atol=1e-14)
    # float32 stays float32; a single value is every quantile of itself
    s32 = sort_last(torch.from_numpy(a.astype(np.float32)))
    assert quantiles_sorted(s32, (0.5,)).dtype == torch.float32
    one = quantiles_sorted(torch.tensor([[4.0]], dtype=torch.float64), (0.0, 0.5, 1.0))
    np.testing.assert_array_equal(one.numpy(), [[4.0, 4.0, 4.0]])
    # by hand: [0, 10, 20, 40], q = 0.75 -> position 2.25 -> 20 + 0.25 * 20 = 25
    by_hand = quantiles_sorted(torch.tensor([0.0, 10.0, 20.0, 40.0], dtype=torch.float64), (0.75, 0.1))
    np.testing.assert_allclose(by_hand.numpy(), [25.0, 3.0], rtol=1e-14)


def test_ls_slope_matches_polyfit():
    """[2, 3, 6] rows against an uneven x [6]."""
    rng = np.random.default_rng(3)
    x = np.array([0.0, 1.0, 1.5, 4.0, 4.5, 7.0])
    y = rng.standard_normal((2, 3, 6)) + 2.0 * x
    got = ls_slope(torch.from_numpy(y), torch.from_numpy(x))
    want = np.array([[np.polyfit(x, y[i, j], 1)[0] for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_pearson_matches_corrcoef_with_an_inclusive_floor():
    """[2, 3, 8] pairs; a std exactly 1e-6 still correlates, below it gives 0, |r| <= 1."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((2, 3, 8))
    b = 0.5 * a + rng.standard_normal((2, 3, 8))
    got = pearson(torch.from_numpy(a), torch.from_numpy(b))
    want = np.array([[np.corrcoef(a[i, j], b[i, j])[0, 1] for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    alt = np.array([1.0, -1.0] * 4)
    x = torch.tensor(np.stack([alt, alt, 0.5 * alt, alt]) * STD_FLOOR)
    y = torch.tensor(np.stack([alt, -alt, alt, 0.5 * alt]) * 3.0)
    r = pearson(x, y)
    np.testing.assert_array_equal(r.numpy(), [1.0, -1.0, 0.0, 1.0])
    r = pearson(y, x)  # the floor applies to the second operand too
    np.testing.assert_array_equal(r.numpy(), [1.0, -1.0, 0.0, 1.0])
    # anti-proportional around a large mean [1, 16] (seed 1): raw r = -1 - 2.2e-16, clamped to -1
    a = torch.randn(1, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1e-3 + 100.0
    assert pearson(a, -2.0 * a + 400.0).item() == -1.0


def _band_reference(n: int) -> np.ndarray:
    kn = n // 2
    k1 = np.fft.fftfreq(n, 1.0 / n)
    k2 = np.unique(np.add.outer(k1**2, k1**2).round().astype(int))
    k2 = k2[k2 > 0]
    nominal = kn ** (np.arange(9) / 4.0)
    lower = [1.0]
    for i in range(1, 8):
        a = k2[k2 >= lower[-1] - 1e-9].min()
        lower.append(nominal[i] if a < nominal[i] - 1e-9 else a + 1.0)
    return np.array(lower)


@pytest.mark.parametrize("n", [8, 10, 12, 16, 24])
def test_band_edges_follow_the_widening_rule(n):
    """Lower band edges [8]: nominal kN^(i/4) squared edges, an empty band widened to the next k^2."""
    got = band_edges_sq(n)
    np.testing.assert_allclose(got, _band_reference(n), rtol=1e-12)
    if n == 8:  # bands k2 = 1 | 2 | 4 | 5 | 8 | 9 | 10 | >= 11 (FEATURES.md deviation)
        k2 = np.array([1, 2, 4, 5, 8, 9, 10, 13, 16, 20, 32])
        band = (k2[:, None] >= got[None, :]).sum(1) - 1
        np.testing.assert_array_equal(band, [0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7])
    if n == 16:  # nominal: kN^(i / 4)
        np.testing.assert_allclose(got, 8.0 ** (np.arange(8) / 4.0), rtol=1e-12)


# --------------------------------------------------------------------------- cross-channel
def _cross_col(f, name):
    return f[:, CROSS_NAMES.index(name)]


def _cross_reference(x: np.ndarray) -> dict[str, float]:
    """Full-plane numpy version of FEATURES.md "Cross-channel" for one state [3, n, n]."""
    n = x.shape[-1]
    kn = n // 2
    pairs = ((0, 1), (0, 2), (1, 2))
    flat = x.reshape(3, -1)
    v = flat - flat.mean(1, keepdims=True)
    cov = v @ v.T / v.shape[1]
    sd = np.sqrt(np.diag(cov))
    r = cov / np.outer(sd, sd)
    out = {f"corr_{i}{j}": r[i, j] for i, j in pairs}
    rs = np.array([r[i, j] for i, j in pairs])
    out["corr_abs_mean"] = np.abs(rs).mean()
    out["corr_mean"] = rs.mean()
    eig = np.linalg.eigvalsh(r)
    out["eig_2"] = eig[1]
    out["participation_ratio"] = eig.sum() ** 2 / (eig**2).sum()
    X = np.fft.fft2(x - x.mean((1, 2), keepdims=True))
    k1 = np.fft.fftfreq(n, 1.0 / n)
    ky, kx = np.meshgrid(k1, k1, indexing="ij")
    k2 = (kx**2 + ky**2).round().astype(int)
    nz = k2 > 0
    P = np.abs(X) ** 2
    lower = band_edges_sq(n)
    band = (k2[..., None] >= lower).sum(-1) - 1
    ring = np.floor(np.sqrt(k2) + 0.5)
    quad, coh, logs = [], [], []
    for c in range(3):
        tot = P[c][nz].sum()
        S = np.array([(P[c][nz & (ring == k)] / tot).mean() for k in range(1, kn + 1)])
        logs.append(np.log(S + 1e-10 * S.sum()))
    for i, j in pairs:
        z = X[i] * np.conj(X[j])
        quad.append(np.abs(z.imag)[nz].sum() / np.abs(z)[nz].sum())
        vals = []
        for b in range(8):
            m = nz & (band == b)
            fi, fj = P[i][m].sum() / P[i][nz].sum(), P[j][m].sum() / P[j][nz].sum()
            if fi >= 1e-6 and fj >= 1e-6:
                vals.append(z.real[m].sum() ** 2 / (P[i][m].sum() * P[j][m].sum()))
        coh.append(np.mean(vals))
        out[f"coherence_{i}{j}"] = coh[-1]
    out["quadrature_index"] = np.mean(quad)
    out["spectral_shape_corr"] = np.mean([np.corrcoef(logs[i], logs[j])[0, 1] for i, j in pairs])
    bins = []
    for c in range(3):
        lo, span = flat[c].min(), flat[c].max() - flat[c].min()
        bins.append(np.clip(np.floor((flat[c] - lo) * (16 / span)), 0, 15).astype(int) if span > 0 else np.zeros(n * n, int))
    for i, j in pairs:
        joint = np.bincount(bins[i] * 16 + bins[j], minlength=256).reshape(16, 16) / (n * n)
        pi, pj = joint.sum(1), joint.sum(0)
        m = joint > 0
        out[f"mi_{i}{j}"] = (joint[m] * np.log(joint[m] / np.outer(pi, pj)[m])).sum()
    e = (flat**2).sum(1)
    out["energy_share_max"] = e.max() / e.sum()
    gx = 0.5 * (np.roll(x, -1, 2) - np.roll(x, 1, 2))
    gy = 0.5 * (np.roll(x, -1, 1) - np.roll(x, 1, 1))
    gm = np.sqrt(gx**2 + gy**2)
    out["grad_alignment"] = np.mean([
        (np.abs(gx[i] * gx[j] + gy[i] * gy[j]) / (gm[i] * gm[j] + 1e-8)).mean() for i, j in pairs
    ])
    return out


@pytest.mark.parametrize("n", [8, 12])
def test_cross_channel_columns_match_a_full_plane_reference(n):
    """[3, 3, n, n] mixed, anisotropic channels with different amplitudes and offsets: every
    column against a straight numpy implementation (mutual information: 16 x 16 histogram of the
    min-max normalised channels, the maximum in the last bin, no bias correction)."""
    rng = np.random.default_rng(n)
    k1 = np.fft.fftfreq(n, 1.0 / n)
    ky, kx = np.meshgrid(k1, k1, indexing="ij")
    states = []
    for b in range(3):
        filt = np.exp(-((kx * (1 + b)) ** 2 + (ky * 0.7) ** 2) / (2.0 * (1.5 + b) ** 2))
        base = np.stack([np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * filt).real for _ in range(3)])
        base += 0.3 * rng.standard_normal((3, n, n))
        mix = rng.normal(size=(3, 3)) + np.eye(3) * (1 + b)
        states.append(np.einsum("ij,jhw->ihw", mix, base) * np.array([1.0, 3.0, 0.2])[:, None, None] + np.array([0.5, -2.0, 1.0])[:, None, None])
    x = np.stack(states)
    f = cross_channel_features(torch.from_numpy(x))
    assert f.shape == (3, 17) and f.dtype == torch.float64
    for b in range(3):
        ref = _cross_reference(x[b])
        for name, value in ref.items():
            assert _cross_col(f, name)[b].item() == pytest.approx(value, rel=1e-9, abs=1e-12), (n, b, name)


@pytest.mark.parametrize(("fields", "batch"), [(6, 3), (7, 2), (6, 1)])
def test_cross_channel_from_needs_three_channels_per_state(fields, batch):
    """Intermediates of ``fields`` fields [fields, 8, 8] split into ``batch`` states: anything but
    exactly 3 channels per state is rejected with both counts."""
    p = prepare(validate_fields(torch.randn(fields, 8, 8, generator=torch.Generator().manual_seed(0))))
    msg = f"expected {batch} states of 3 channels, got {fields} fields"
    with pytest.raises(ValueError, match="^" + re.escape(msg) + "$"):
        cross_channel_from(p, batch)


def test_cross_channel_coherence_averages_the_qualified_bands_only():
    """[1, 3, 8, 8]: sin(k = 1), sin(k = 3) (k^2 = 9, another band) and 2 sin(k = 1) + 1.
    Pair (0, 2) shares one band, where it is fully coherent: coherence_02 = 1 (the mean over
    one qualified band); pairs without a common band: exactly 0."""
    n = 8
    x = torch.arange(n, dtype=torch.float64)[None, :].expand(n, n)
    s1 = torch.sin(2 * math.pi * x / n)
    state = torch.stack([s1, torch.sin(2 * math.pi * 3 * x / n), 2.0 * s1 + 1.0])[None]
    f = cross_channel_features(state)
    assert _cross_col(f, "coherence_02").item() == pytest.approx(1.0, abs=1e-12)
    assert _cross_col(f, "coherence_01").item() == 0.0
    assert _cross_col(f, "coherence_12").item() == 0.0
    assert _cross_col(f, "corr_02").item() == pytest.approx(1.0, abs=1e-12)
    assert _cross_col(f, "energy_share_max").item() == pytest.approx(0.75, rel=1e-12)


def test_cross_channel_correlations_are_clamped_to_one():
    """[1, 3, 8, 8] channels a, 3a + 1, -0.7a + 2 (seed 18): rounding puts the raw correlations
    2.2e-16 beyond +-1; the columns are exactly 1 and -1."""
    a = torch.randn(8, 8, generator=torch.Generator().manual_seed(18), dtype=torch.float64)
    f = cross_channel_features(torch.stack([a, 3.0 * a + 1.0, -0.7 * a + 2.0])[None])
    assert _cross_col(f, "corr_01").item() == 1.0
    assert _cross_col(f, "corr_02").item() == -1.0
    assert _cross_col(f, "corr_12").item() == -1.0


def test_cross_channel_of_zero_and_tiny_states():
    """An all-zero state [1, 3, 8, 8]: every column 0 except eig_2 = 1 and participation_ratio = 3
    (the identity correlation matrix). A single pixel 1e-4 (energy exactly 1e-8, the guard,
    inclusive): energy_share_max = 1."""
    z = cross_channel_features(torch.zeros(1, 3, 8, 8, dtype=torch.float64))
    want = np.zeros(17)
    want[CROSS_NAMES.index("eig_2")] = 1.0
    want[CROSS_NAMES.index("participation_ratio")] = 3.0
    np.testing.assert_array_equal(z[0].numpy(), want)
    tiny = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    tiny[0, 1, 2, 3] = 1e-4
    assert 1e-4 * 1e-4 == 1e-8
    assert _cross_col(cross_channel_features(tiny), "energy_share_max").item() == 1.0
    tiny[0, 1, 2, 3] = 0.99e-4
    assert _cross_col(cross_channel_features(tiny), "energy_share_max").item() == 0.0


def test_cross_channel_std_floor_is_relative_to_the_population_std():
    """[3, 3, 8, 8]: channel 1 a checkerboard of amplitude a (std exactly a). With a = 1e-6 (the
    floor, inclusive) its correlations are ±1; with a = 5e-7 (below the floor, though
    a * sqrt(H W) is above it) they are 0; channel 0 is the same checkerboard, large."""
    n = 8
    i = torch.arange(n, dtype=torch.float64)
    cb = (-1.0) ** (i[:, None] + i[None, :])
    rng = np.random.default_rng(5)
    x = torch.zeros(3, 3, n, n, dtype=torch.float64)
    for b, amp in enumerate((STD_FLOOR, 0.5 * STD_FLOOR, 1.0)):
        x[b, 0] = 3.0 * cb + 2.0
        x[b, 1] = amp * cb
        x[b, 2] = torch.from_numpy(rng.standard_normal((n, n)))
    f = cross_channel_features(x)
    r01, r12 = _cross_col(f, "corr_01"), _cross_col(f, "corr_12")
    assert r01[0].item() == pytest.approx(1.0, abs=1e-12)
    assert r01[1].item() == 0.0 and r12[1].item() == 0.0
    assert r01[2].item() == pytest.approx(1.0, abs=1e-12)
    # channel 2 against the checkerboard (std 1): population covariance / population std
    for b in (0, 2):
        v2 = x[b, 2].numpy() - x[b, 2].numpy().mean()
        want = (v2 * cb.numpy()).mean() / v2.std()
        assert r12[b].item() == pytest.approx(want, rel=1e-9)
        assert _cross_col(f, "corr_02")[b].item() == pytest.approx(want, rel=1e-9)


# --------------------------------------------------------------------------- SUMMARY series helpers
def _series3(L: int, seed: int = 0) -> np.ndarray:
    """[2, 3, L] float64 series with trends, curvature and offsets."""
    rng = np.random.default_rng(seed)
    t = np.arange(L) / max(L - 1, 1)
    return rng.standard_normal((2, 3, L)) + 3.0 * t - 2.0 * t**2 + np.arange(3)[None, :, None]


def test_time_axis_and_nan_full():
    """t / (T - 1) over the first ``length`` steps (T = 1 divides by 1); NaN in like's dtype."""
    like = torch.zeros(1, dtype=torch.float32)
    np.testing.assert_array_equal(_series.time_axis(5, 3, like).numpy(), [0.0, 0.25, 0.5])
    assert _series.time_axis(5, 3, like).dtype == torch.float64
    np.testing.assert_array_equal(_series.time_axis(1, 2, like).numpy(), [0.0, 1.0])
    np.testing.assert_array_equal(_series.time_axis(2, 2, like).numpy(), [0.0, 1.0])
    full = _series.nan_full((2, 3), like)
    assert full.shape == (2, 3) and full.dtype == torch.float32 and torch.isnan(full).all()
    full64 = _series.nan_full((4,), torch.zeros(1, dtype=torch.float64))
    assert full64.shape == (4,) and full64.dtype == torch.float64 and torch.isnan(full64).all()


@pytest.mark.parametrize("L", [2, 3, 6])
def test_slope_quadratic_and_detrend_match_numpy_on_3d_series(L):
    """[2, 3, L] against t / (T - 1) with T = L + 1 (an increment series): polyfit slopes and
    quadratic coefficients, and y minus its fitted line."""
    y = _series3(L, seed=L)
    T = L + 1
    x = np.arange(L) / (T - 1)
    yt = torch.from_numpy(y)
    slope = np.array([[np.polyfit(x, y[i, j], 1)[0] for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(_series.slope(yt, T).numpy(), slope, rtol=1e-10, atol=1e-12)
    line = np.array([[np.polyval(np.polyfit(x, y[i, j], 1), x) for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(_series.detrend(yt, T).numpy(), y - line, rtol=1e-10, atol=1e-11)
    q = _series.quadratic_coefficient(yt, T)
    if L < 3:
        assert q.shape == (2, 3) and torch.isnan(q).all()
    else:
        quad = np.array([[np.polyfit(x, y[i, j], 2)[0] for j in range(3)] for i in range(2)])
        np.testing.assert_allclose(q.numpy(), quad, rtol=1e-8, atol=1e-9)


def test_short_series():
    """L = 1: slope NaN [2, 3], detrend gives zeros; L = 0 is not needed."""
    y = torch.from_numpy(_series3(1))
    s = _series.slope(y, 4)
    assert s.shape == (2, 3) and torch.isnan(s).all()
    np.testing.assert_array_equal(_series.detrend(y, 4).numpy(), np.zeros((2, 3, 1)))


def test_is_flat_threshold_is_inclusive_and_uses_the_reference():
    """std <= 1e-6 * reference, reference default mean |y|; std over the last axis (ddof 0)."""
    # std of [0, 2] is 1 (population); a reference of exactly 1e6 makes it flat, just below not
    y = torch.tensor([[0.0, 2.0], [0.0, 2.0], [0.0, 2.0]], dtype=torch.float64)
    ref = torch.tensor([1e6, 0.999999e6, 1.0], dtype=torch.float64)
    np.testing.assert_array_equal(_series.is_flat(y, ref).numpy(), [True, False, False])
    # without a reference: mean |y| = 1 -> not flat; a big offset makes the same std flat
    z = torch.tensor([[0.0, 2.0], [3e6, 3e6 + 2.0]], dtype=torch.float64)
    np.testing.assert_array_equal(_series.is_flat(z).numpy(), [False, True])
    # ddof 0: [0, 2, 4]: population std sqrt(8/3); reference sqrt(8/3) * 1e6 sits on the boundary
    w = torch.tensor([[0.0, 2.0, 4.0]], dtype=torch.float64)
    pop = w.std(-1, correction=0)
    assert _series.is_flat(w, pop / _series.FLAT_REL * (1 + 1e-12)).item()
    assert not _series.is_flat(w, pop / _series.FLAT_REL * (1 - 1e-9)).item()
    # a single sample is flat (std 0); [2, 3, 1] keeps the leading shape
    one = torch.ones(2, 3, 1, dtype=torch.float64)
    flat = _series.is_flat(one)
    assert flat.shape == (2, 3) and flat.all()
    # 3-D series: the reduction is along time only
    y3 = torch.from_numpy(_series3(4))
    np.testing.assert_array_equal(_series.is_flat(y3).numpy(), np.zeros((2, 3), bool))


def test_series_pearson_matches_corrcoef_and_the_flat_guards():
    """[2, 3, 6]: corrcoef; a flat operand (own magnitude, or the reference passed) gives 0."""
    a = _series3(6, seed=1)
    b = 0.4 * a + _series3(6, seed=2)
    got = _series.pearson(torch.from_numpy(a), torch.from_numpy(b))
    want = np.array([[np.corrcoef(a[i, j], b[i, j])[0, 1] for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    # detrended-like series around 0: flat relative to a large reference, not to their own
    x = torch.tensor([[1.0, -1.0, 2.0, -2.0]], dtype=torch.float64)
    yy = torch.tensor([[1.0, -1.0, 2.5, -2.0]], dtype=torch.float64)
    r = _series.pearson(x, yy).item()
    assert r == pytest.approx(np.corrcoef(x[0].numpy(), yy[0].numpy())[0, 1], rel=1e-12)
    big = torch.tensor([1e7], dtype=torch.float64)
    assert _series.pearson(x, yy, ref_a=big).item() == 0.0
    assert _series.pearson(x, yy, ref_b=big).item() == 0.0
    assert _series.pearson(x, yy, ref_a=torch.tensor([1.0], dtype=torch.float64)).item() == pytest.approx(r, rel=1e-12)
    # exactly proportional: r = 1 (clamped), anti: -1
    assert _series.pearson(x, 3.0 * x).item() == 1.0
    assert _series.pearson(x, -3.0 * x).item() == -1.0
    # proportional around a large mean: rounding gives |r| = 1 + 2.2e-16 before the clamp
    c = torch.from_numpy(np.random.default_rng(4).standard_normal((1, 9)))
    a = 100.0 + 1e-3 * c
    assert _series.pearson(a, 100.0 + 2e-3 * c).item() == 1.0
    assert _series.pearson(a, 100.0 - 2e-3 * c).item() == -1.0


def test_series_skewness_matches_its_definition_and_uses_the_reference():
    """[2, 3, 7]: m3 / m2^1.5 (population moments); 0 where flat w.r.t. the reference."""
    y = _series3(7, seed=3) ** 3
    got = _series.skewness(torch.from_numpy(y))
    d = y - y.mean(-1, keepdims=True)
    want = (d**3).mean(-1) / (d**2).mean(-1) ** 1.5
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    s = torch.tensor([[0.0, 0.0, 3.0]], dtype=torch.float64)
    assert _series.skewness(s).item() == pytest.approx(2.0 / 2.0**1.5, rel=1e-12)
    assert _series.skewness(s, torch.tensor([1e7], dtype=torch.float64)).item() == 0.0
    # a small variance (m2 = 0.02 < 1, not flat): the same scale-free value
    assert _series.skewness(0.1 * s).item() == pytest.approx(2.0 / 2.0**1.5, rel=1e-12)
    assert _series.skewness(torch.full((1, 4), 2.0, dtype=torch.float64)).item() == 0.0


def test_log_ratio_hann_and_analytic_signal():
    """log((last + 1e-8) / (first + 1e-8)); periodic Hann; analytic signal = ifft(fft * h) [2, 3, L]."""
    first = torch.tensor([1.0, 0.0], dtype=torch.float64)
    last = torch.tensor([4.0, 0.0], dtype=torch.float64)
    np.testing.assert_allclose(_series.log_ratio(first, last).numpy(), [math.log((4 + 1e-8) / (1 + 1e-8)), 0.0], rtol=1e-14)
    h = _series.hann(6, first).numpy()
    np.testing.assert_allclose(h, 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(6) / 6), atol=1e-15)
    for L in (4, 5, 6, 9):
        x = _series3(L, seed=L)  # [2, 3, L]
        want = scipy.signal.hilbert(x, axis=-1)  # the independent reference the docstring names
        got = _series.analytic_signal(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got.real, x, atol=1e-12)


# --------------------------------------------------------------------------- SUMMARY entry points
def test_aggregate_by_hand():
    """[1, 2, 2] -> [1, 6]: mean, sample std (ddof 1), cv = std / (sqrt(mean^2 + std^2) + 1e-8)."""
    pt = torch.tensor([[[1.0, 2.0], [3.0, 2.0]]])
    got = _summary.aggregate(pt)
    assert got.shape == (1, 6) and got.dtype == torch.float32
    s = math.sqrt(2.0)
    want = [2.0, 2.0, s, 0.0, s / (math.sqrt(4.0 + 2.0) + 1e-8), 0.0]
    np.testing.assert_allclose(got[0].numpy(), want, rtol=1e-6)


def test_aggregate_cv_guard_is_added():
    """Values near 1e-8 [1, 2, 1]: the +1e-8 in the cv denominator is of the size of the values,
    cv = std / (sqrt(mean^2 + std^2) + 1e-8) = 0.41 (not 0.98)."""
    pt = torch.tensor([[[1e-8], [3e-8]]], dtype=torch.float64)
    got = _summary.aggregate(pt)[0].double().numpy()
    m, sd = 2e-8, math.sqrt(2.0) * 1e-8
    np.testing.assert_allclose(got, [m, sd, sd / (math.sqrt(m * m + sd * sd) + 1e-8)], rtol=1e-6)
    assert got[2] == pytest.approx(math.sqrt(2.0) / (math.sqrt(6.0) + 1.0), rel=1e-6)  # 0.410


def test_aggregate_of_one_realization_and_nan_columns():
    """M = 1: std 0 and cv 0, except NaN columns stay NaN in all three statistics; [2, 1, 3]."""
    pt = torch.tensor([[[1.0, float("nan"), -2.0]], [[0.0, 5.0, 3.0]]])
    got = _summary.aggregate(pt).numpy()
    want = np.array([[1.0, np.nan, -2.0, 0.0, np.nan, 0.0, 0.0, np.nan, 0.0],
                     [0.0, 5.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(got, want.astype(np.float32))
    # M = 3, N = 2: numpy reference
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    got = _summary.aggregate(torch.from_numpy(x)).numpy()
    m, s = x.mean(1), x.std(1, ddof=1)
    np.testing.assert_allclose(got, np.concatenate([m, s, s / (np.sqrt(m**2 + s**2) + 1e-8)], 1), rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3), (2, 0, 3), (1, 2, 3, 4)])
def test_aggregate_rejects_bad_shapes(shape):
    """Not 3-D, or no realization: the message gives the shape received."""
    with pytest.raises(ValueError, match="^" + re.escape(f"per_traj must be [N, M >= 1, F], got shape {shape}") + "$"):
        _summary.aggregate(torch.zeros(shape))


def _small_traj() -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 3, 3, 4, 4, generator=g)
    x[:, :, 1:] += 0.5 * x[:, :, :-1].clone()
    return x


def test_per_trajectory_features_concatenate_the_blocks_and_the_sensitivity():
    """[N=2, M=2, T=3] -> [2, 2, 120]: the blocks of build_inputs(traj, state_feats) in order,
    then the given sensitivity [2, 2, 10] as float32."""
    traj = _small_traj()
    state = torch.linspace(-1.0, 1.0, 2 * 2 * 3 * 63).reshape(2, 2, 3, 63)
    sens = torch.arange(40, dtype=torch.float64).reshape(2, 2, 10) / 7.0
    got = _summary.per_trajectory_features(traj, state, sens)
    assert got.shape == (2, 2, 120) and got.dtype == torch.float32
    inputs = build_inputs(traj, state)
    want = torch.cat([b.features(inputs).float() for b in _summary.BLOCKS], dim=-1)
    np.testing.assert_allclose(got[..., :110].numpy(), want.numpy(), rtol=1e-6, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(got[..., 110:].numpy(), sens.float().numpy())
    # without sensitivity: NaN there, the rest unchanged
    none = _summary.per_trajectory_features(traj, state)
    assert torch.isnan(none[..., 110:]).all()
    np.testing.assert_array_equal(none[..., :110].numpy(), got[..., :110].numpy())


def test_per_trajectory_features_reject_a_sensitivity_of_the_wrong_shape():
    """The message gives the expected (N, M, 10) and the shape received."""
    traj = _small_traj()
    state = torch.zeros(2, 2, 3, 63)
    with pytest.raises(ValueError, match="^" + re.escape("sensitivity must have shape (2, 2, 10), got (2, 2, 9)") + "$"):
        _summary.per_trajectory_features(traj, state, torch.zeros(2, 2, 9))
    with pytest.raises(ValueError, match="^" + re.escape("sensitivity must have shape (2, 2, 10), got (2, 10)") + "$"):
        _summary.per_trajectory_features(traj, state, torch.zeros(2, 10))


# --------------------------------------------------------------------------- spatial
def test_spatial_gradient_and_laplacian_columns_match_numpy():
    """[3, 10, 10] anisotropic fields: grad_energy, grad_mean, grad_max, grad_anisotropy,
    laplacian_energy and laplacian_kurtosis from periodic central differences (numpy roll)."""
    rng = np.random.default_rng(9)
    u = rng.standard_normal((3, 10, 10))
    u[0] = np.cumsum(u[0], axis=1) * 0.3  # random walk along x, rows independent: |gy| dominates
    u[1] = 5.0 + np.cumsum(u[1], axis=0) * 0.2  # random walk along y: |gx| dominates
    f = spatial_features(torch.from_numpy(u)).numpy()

    def c(name):
        return f[:, SPATIAL_NAMES.index(name)]

    gx = 0.5 * (np.roll(u, -1, 2) - np.roll(u, 1, 2))
    gy = 0.5 * (np.roll(u, -1, 1) - np.roll(u, 1, 1))
    g2 = (gx**2 + gy**2).reshape(3, -1)
    ax, ay = np.abs(gx).reshape(3, -1).mean(1), np.abs(gy).reshape(3, -1).mean(1)
    lap = (np.roll(u, -1, 2) + np.roll(u, 1, 2) + np.roll(u, -1, 1) + np.roll(u, 1, 1) - 4 * u).reshape(3, -1)
    lc = lap - lap.mean(1, keepdims=True)
    np.testing.assert_allclose(c("grad_energy"), g2.mean(1), rtol=1e-12)
    np.testing.assert_allclose(c("grad_mean"), np.sqrt(g2).mean(1), rtol=1e-12)
    np.testing.assert_allclose(c("grad_max"), np.sqrt(g2).max(1), rtol=1e-12)
    np.testing.assert_allclose(c("grad_anisotropy"), (ax - ay) / (ax + ay + 1e-8), rtol=1e-10)
    np.testing.assert_allclose(c("laplacian_energy"), (lap**2).mean(1), rtol=1e-12)
    np.testing.assert_allclose(c("laplacian_kurtosis"), (lc**4).mean(1) / (lc**2).mean(1) ** 2 - 3.0, rtol=1e-10)
    assert c("grad_anisotropy")[1] > 0.1 and c("grad_anisotropy")[0] < -0.1
    flat = u.reshape(3, -1)
    np.testing.assert_allclose(c("median"), np.median(flat, 1), rtol=1e-12)
    np.testing.assert_allclose(c("mad"), np.median(np.abs(flat - np.median(flat, 1)[:, None]), 1), rtol=1e-12)
    np.testing.assert_allclose(c("min"), flat.min(1), rtol=0)
    np.testing.assert_allclose(c("max"), flat.max(1), rtol=0)
    # float32 in, float32 out, the same values to float precision
    f32 = spatial_features(torch.from_numpy(u.astype(np.float32)))
    assert f32.dtype == torch.float32 and f32.shape == (3, 19)
    np.testing.assert_allclose(f32.numpy(), f, rtol=1e-4, atol=1e-4)
