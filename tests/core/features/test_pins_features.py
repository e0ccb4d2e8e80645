"""Feature helpers pinned against hand computations and numpy re-implementations: the 1/e
correlation length, the shard accumulator's buffers, the operator sensitivity columns (FEATURES.md
110-119), the field invariants at three scales, the flow correlations, the SUMMARY inputs (one
pass over the fields, in chunks over time) and two small SUMMARY reductions."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spinlock_core.features import temporal as _temporal
from spinlock_core.features._common import correlation_length
from spinlock_core.features.extract import RolloutFeatures
from spinlock_core.features.sensitivity import sensitivity_features
from spinlock_core.features.summary import AGGREGATED_NAMES, SUMMARY_NAMES
from spinlock_core.features.summary import _fields, _inputs
from spinlock_core.features.summary._inputs import build_inputs
from spinlock_core.features.summary.invariants import _monotonicity
from spinlock_core.features.summary.spectral import _spectral_change
from spinlock_core.operators import OperatorSpec, apply_policy, build_operator
from spinlock_core.rng import DRAW_A, DRAW_B, PERTURBATION, POWER_START, DrawKey, unit_noise

E = math.exp(-1.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (conftest.py)


# --------------------------------------------------------------------------- correlation length
def _corr_len_reference(acf: np.ndarray, n: int) -> np.ndarray:
    out = []
    for row in acf:
        full = [1.0, *row.tolist()]
        k = next((i for i, v in enumerate(full) if v < E), None)
        if k is None:
            out.append(0.5)
            continue
        a, b = full[k - 1], full[k]
        out.append((k - 1 + (a - E) / (a - b)) / n)
    return np.asarray(out)


ACF = [
    [0.9, 0.5, 0.3, 0.1],  # crosses between lags 2 and 3
    [0.2, 0.1, 0.0, -0.1],  # crosses between lags 0 and 1
    [0.9, 0.8, 0.7, 0.6],  # never below 1/e: 0.5
    [0.9, E, 0.5, 0.4],  # touches 1/e and rises again: never strictly below
    [0.9, E, 0.1, 0.0],  # touches 1/e at lag 2, below at lag 3
    [0.5, 0.5, 0.5, 0.3],  # crosses late, at the last lag
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n", [8, 12])
def test_correlation_length_is_the_interpolated_1_over_e_crossing(dtype, n):
    acf = torch.tensor(ACF, dtype=torch.float64)
    got = correlation_length(acf.to(dtype), n)
    assert got.dtype == dtype and got.shape == (len(ACF),)
    want = _corr_len_reference(acf.to(dtype).double().numpy(), n)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(got.double().numpy(), want, rtol=tol, atol=tol)
    # by hand: row 0 crosses at 2 + (0.5 - 1/e) / 0.2, row 2 never does
    assert got[0].item() == pytest.approx((2 + (0.5 - E) / 0.2) / n, rel=tol)
    assert got[2].item() == 0.5 and got[3].item() == 0.5
    assert got[4].item() == pytest.approx(2 / n, rel=tol)


def test_correlation_length_of_a_step_to_zero_is_one_lag():
    # equal neighbours a == b cannot happen below the threshold; a drop straight to 1/e - tiny
    acf = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    assert correlation_length(acf, 4).item() == pytest.approx((1.0 - E) / 4, rel=1e-15)


# --------------------------------------------------------------------------- RolloutFeatures
def _cfg(m: int = 3, t: int = 5):
    return SimpleNamespace(simulation=SimpleNamespace(num_realizations=m, num_timesteps=t))


@pytest.mark.parametrize("families", [{"summary", "spatial"}, {"initial"}, {"temporal", "architecture", "summary", "b"}])
def test_rollout_features_rejects_other_families_by_name(families):
    unknown = sorted(families - {"summary", "temporal"})
    with pytest.raises(ValueError, match="^" + re.escape(f"not rollout-derived families: {unknown}") + "$"):
        RolloutFeatures(_cfg(), 0, 2, families)


def test_rollout_features_buffers_for_both_families():
    cfg = _cfg(m=3, t=5)
    fam = {"summary", "temporal"}
    fc = RolloutFeatures(cfg, 7, 4, fam)
    assert fc.cfg is cfg and fc.start == 7 and fc.n == 4 and fc.families is fam
    assert fc.temporal.shape == (4, 5, len(_temporal.TEMPORAL_NAMES)) and fc.temporal.dtype == np.float32
    assert fc.per_traj.shape == (4, 3, len(SUMMARY_NAMES)) and fc.per_traj.dtype == np.float32
    assert fc.aggregated.shape == (4, len(AGGREGATED_NAMES)) and fc.aggregated.dtype == np.float32
    for a in (fc.temporal, fc.per_traj, fc.aggregated):
        assert np.isnan(a).all()
    assert fc.seen.dtype == bool and fc.seen.shape == (4,) and not fc.seen.any()
    assert fc.seconds == {"state_features": 0.0, "temporal": 0.0, "summary": 0.0, "sensitivity": 0.0}


def test_rollout_features_buffers_for_one_family():
    only_t = RolloutFeatures(_cfg(2, 3), 0, 2, {"temporal"})
    assert only_t.per_traj is None and only_t.aggregated is None and only_t.temporal.shape == (2, 3, len(_temporal.TEMPORAL_NAMES))
    only_s = RolloutFeatures(_cfg(2, 3), 0, 2, {"summary"})
    assert only_s.temporal is None and only_s.per_traj.shape == (2, 2, len(SUMMARY_NAMES))
    none = RolloutFeatures(_cfg(2, 3), 0, 1, set())
    assert none.temporal is None and none.per_traj is None and none.aggregated is None
    with pytest.raises(ValueError, match=re.escape("features missing for operators [0]")):
        none.stage_arrays()


# --------------------------------------------------------------------------- sensitivity
def _operator(policy: str = "residual", schedule: str = "annealing"):
    spec = OperatorSpec(num_layers=1, base_channels=2, kernel_size=3, grid_size=6, normalization="none",
                        activation="tanh", noise_scale=0.3, dropout_rate=0.2, dt=0.7, alpha=0.3,
                        update_policy=policy, noise_schedule=schedule)
    return build_operator(spec, root_seed=3, index=5, num_steps=4)


def _trajectory() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    traj = torch.randn(2, 4, 3, 6, 6, generator=g)
    traj[1] = 0.4 * traj[1] + 1.5  # another scale and mean in realization 1
    return traj


def _sensitivity_reference(op, traj: torch.Tensor, root_seed: int, index: int) -> np.ndarray:
    """FEATURES.md 110-119 written out, realization by realization, with an explicit Jacobian."""
    M, T = traj.shape[:2]
    key = DrawKey.for_operator(root_seed, index, M, stage="sensitivity")
    s = op.spec

    def nrm(x):
        return x.double().flatten(1).norm(dim=1)

    def F(u, step, draw):
        return apply_policy(s.update_policy, u, op(u, step, key.at_step(draw)), dt=s.dt, alpha=s.alpha)

    def O(u):  # noqa: E743
        return op(u, 0, None)

    def delta(u, eps, k):
        d = unit_noise(key.at_step(k), PERTURBATION, tuple(u.shape[1:]), "gaussian")
        return d * (eps * nrm(u) / nrm(d)).float().view(-1, 1, 1, 1)

    def lip(fn, u, d):
        return nrm(fn(u + d) - fn(u)) / nrm(d)

    u0, um, ue = traj[:, 0], traj[:, T // 2], traj[:, T - 1]
    cols = [None] * 10
    with torch.no_grad():
        for j, (u, st) in enumerate(((u0, 0), (um, T // 2), (ue, T - 1))):
            cols[j] = torch.log10(lip(lambda x, st=st: F(x, st, DRAW_A) - x, u, delta(u, 1e-2, j)))
        o0, oe = O(u0), O(ue)
        cols[3] = lip(O, u0, delta(u0, 1e-2, 3)) * nrm(u0) / (nrm(o0) + 1e-8)
        cols[4] = lip(O, ue, delta(ue, 1e-2, 4)) * nrm(ue) / (nrm(oe) + 1e-8)
        cols[5] = torch.log(lip(O, u0, delta(u0, 1e-1, 5)) / lip(O, u0, delta(u0, 1e-3, 6)))
        d = delta(u0, 1e-1, 7)
        cols[6] = nrm(O(u0 + d) + O(u0 - d) - 2 * o0) / (2 * nrm(O(u0 + d) - o0) + 1e-8)
        fa = F(u0, 0, DRAW_A)
        cols[7] = nrm(fa - F(u0, 0, DRAW_B)) / (nrm(fa - u0) + 1e-8)
        cols[9] = torch.tensor([np.corrcoef(o0[m].double().ravel().numpy(), u0[m].double().ravel().numpy())[0, 1]
                                for m in range(M)])
    # largest singular value of J_G at T - 1: 8 power iterations on J^T J, explicit matrices
    n = ue[0].numel()
    J = torch.autograd.functional.jacobian(lambda x: F(x, T - 1, DRAW_A) - x, ue).reshape(M, n, M, n).double()
    v0 = unit_noise(key.at_step(0), POWER_START, tuple(ue.shape[1:]), "gaussian").double().reshape(M, n)
    sig = []
    for m in range(M):
        Jm = J[m, :, m, :]
        v = v0[m] / v0[m].norm()
        for _ in range(8):
            w = Jm.T @ (Jm @ v)
            s2 = w.norm()
            v = w / s2
        sig.append(math.log10(math.sqrt(s2.item())))
    cols[8] = torch.tensor(sig)
    return torch.stack([c.double() for c in cols], dim=1).numpy()


@pytest.mark.parametrize(("policy", "schedule"), [("residual", "annealing"), ("convex", "periodic")])
def test_sensitivity_columns_match_their_definitions(policy, schedule):
    """The noise schedule makes the application step of each F visible (1, 1/2, 1/4 at 0, T/2, T-1)."""
    op, traj = _operator(policy, schedule), _trajectory()
    got = sensitivity_features(op, traj, root_seed=4, index=9)
    assert got.dtype == torch.float32 and got.shape == (2, 10)
    want = _sensitivity_reference(op, traj, 4, 9)
    got = got.double().numpy()
    np.testing.assert_allclose(got[:, :8], want[:, :8], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, 9], want[:, 9], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, 8], want[:, 8], rtol=0, atol=2e-3)
    # other keys, other perturbations: the columns that draw depend on root_seed and index
    other = sensitivity_features(op, traj, root_seed=5, index=9).double().numpy()
    assert not np.allclose(other[:, :3], got[:, :3])


def test_sensitivity_nan_only_where_the_state_is_zero():
    """A zero state at T/2 (realization 1) or T - 1 (realization 0) voids exactly the ratios
    measured there: 111, and 112 + 114."""
    traj = _trajectory()
    traj[1, 2] = 0.0
    traj[0, 3] = 0.0
    got = sensitivity_features(_operator(), traj, root_seed=4, index=9).numpy()
    nan = np.isnan(got)
    want = np.zeros((2, 10), bool)
    want[0, [2, 4]] = True
    want[1, 1] = True
    np.testing.assert_array_equal(nan, want)


def test_sensitivity_rejects_a_trajectory_of_the_wrong_rank():
    with pytest.raises(ValueError, match=re.escape("trajectory must be [M, T, C, H, W], got shape (4, 3, 6, 6)")):
        sensitivity_features(_operator(), torch.zeros(4, 3, 6, 6), root_seed=0, index=0)


# --------------------------------------------------------------------------- field invariants
def _blur_reference(c: np.ndarray) -> np.ndarray:
    h, w = c.shape
    sigma = h / 32.0
    fy, fx = np.fft.fftfreq(h), np.fft.fftfreq(w)
    g = np.exp(-2.0 * math.pi**2 * sigma**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    return np.fft.ifft2(np.fft.fft2(c) * g).real


def _entropy_reference(f: np.ndarray, reference: float) -> float:
    lo, hi = f.min(), f.max()
    if hi - lo <= 1e-6 * reference:
        return 0.0
    idx = np.floor((f - lo) * (32 / (hi - lo))).astype(int).clip(0, 31)
    p = np.bincount(idx.ravel(), minlength=32) / f.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _tv_reference(f: np.ndarray) -> float:
    return 0.5 * (np.abs(np.roll(f, -1, 1) - f).mean() + np.abs(np.roll(f, -1, 0) - f).mean())


def _invariants_reference(u: np.ndarray) -> np.ndarray:
    m = u.mean()
    c = u - m
    blur = _blur_reference(c)
    ref = np.abs(u).max()
    out = np.empty((4, 3))
    for j, (f, shift) in enumerate(((c, m), (blur, m), (c - blur, 0.0))):
        v = f + shift
        out[:, j] = [np.abs(v).max(), np.sqrt((v**2).mean()), _entropy_reference(f, ref), _tv_reference(f)]
    return out


@pytest.mark.parametrize("shape", [(8, 8), (8, 7), (7, 9), (16, 16)])
def test_field_invariants_match_a_numpy_reference(shape):
    rng = np.random.default_rng(5)
    u = rng.standard_normal((2, *shape))
    u[0] += 3.0 + np.sin(2 * np.pi * np.arange(shape[1]) / shape[1])[None, :]  # offset and a large scale
    u[1] *= 0.01
    got = _fields.field_invariants(torch.from_numpy(u))
    assert got.dtype == torch.float64 and got.shape == (2, 4, 3)
    for i in range(2):
        np.testing.assert_allclose(got[i].numpy(), _invariants_reference(u[i]), rtol=1e-10, atol=1e-12)


def test_field_invariants_of_a_constant_field():
    u = torch.full((1, 3, 8, 8), -2.5, dtype=torch.float64)
    got = _fields.field_invariants(u)
    assert got.shape == (1, 3, 4, 3)
    want = np.array([[2.5, 2.5, 0.0], [2.5, 2.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(got[0, 1].numpy(), want, atol=1e-12)


def test_field_invariants_float32_keeps_its_dtype_shape():
    u = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(0))
    got = _fields.field_invariants(u)
    assert got.dtype == torch.float64 and got.shape == (2, 4, 3)
    np.testing.assert_allclose(got[1].numpy(), _invariants_reference(u[1].double().numpy()), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- flow correlations
def _flow_reference(gx: np.ndarray, gy: np.ndarray, du: np.ndarray) -> np.ndarray:
    out = []
    for g in (gx, gy):
        if du.std() <= 1e-6 * abs(du.mean()) or g.std() <= 1e-6 * abs(g.mean()) or g.std() * du.std() <= 0:
            out.append(0.0)
        else:
            out.append(float(np.clip(np.corrcoef(g.ravel(), du.ravel())[0, 1], -1, 1)))
    return np.asarray(out)


def test_flow_correlations_match_pearson_with_flat_fields_at_zero():
    rng = np.random.default_rng(2)
    a, b, c = (rng.standard_normal((6, 8, 8)) for _ in range(3))
    a[1] = 0.3 * c[1] - 2.0  # gx correlated with du; gy not
    a[2] = 4.0 + 2e-6 * c[2] / c[2].std()  # gx flat relative to its mean (std > 0, tracking du): 0
    b[3] = 0.0  # gy identically 0: zero std, 0
    c[4] = 7.0 + 1e-9 * c[4]  # du flat: both 0
    # perfectly (anti)correlated around a large mean: rounding would give |r| > 1, clamped to 1
    c[5] = np.random.default_rng(12).standard_normal((8, 8))
    a[5], b[5] = 100.0 + 1e-3 * c[5], 100.0 - 1e-3 * c[5]
    got = _fields.flow_correlations(*(torch.from_numpy(x.reshape(2, 3, 8, 8)) for x in (a, b, c)))
    assert got.shape == (2, 3, 2)
    want = np.stack([_flow_reference(a[i], b[i], c[i]) for i in range(6)]).reshape(2, 3, 2)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    got = got.reshape(6, 2)
    assert got[2, 0] == 0 and got[3, 1] == 0 and (got[4] == 0).all()
    assert got[1, 0] > 0.9 and got[5, 0] == 1.0 and got[5, 1] == -1.0


def test_flow_correlations_on_a_non_square_grid():
    rng = np.random.default_rng(4)
    a, b, c = (rng.standard_normal((3, 4, 10)) for _ in range(3))
    a[0] = c[0] + 0.5 * a[0]
    got = _fields.flow_correlations(*(torch.from_numpy(x) for x in (a, b, c)))
    want = np.stack([_flow_reference(a[i], b[i], c[i]) for i in range(3)])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- SUMMARY inputs
@pytest.mark.parametrize(
    ("shape", "dtype", "message"),
    [
        ((1, 1, 2, 3, 4), torch.float32, "traj must be a tensor [N, M, T, C, H, W], got (1, 1, 2, 3, 4)"),
        ((1, 1, 2, 3, 4, 4), torch.int64, "traj must be floating point, got torch.int64"),
        ((0, 1, 2, 3, 4, 4), torch.float32, "traj needs N, M, T >= 1, got shape (0, 1, 2, 3, 4, 4)"),
        ((1, 0, 2, 3, 4, 4), torch.float32, "traj needs N, M, T >= 1, got shape (1, 0, 2, 3, 4, 4)"),
        ((1, 1, 0, 3, 4, 4), torch.float32, "traj needs N, M, T >= 1, got shape (1, 1, 0, 3, 4, 4)"),
        ((1, 1, 2, 2, 4, 4), torch.float32, "SUMMARY features need C = 3 channels, got C = 2"),
        ((1, 1, 2, 3, 4, 5), torch.float32, "SUMMARY features need a square grid with H = W >= 4, got 4x5"),
        ((1, 1, 2, 3, 3, 3), torch.float32, "SUMMARY features need a square grid with H = W >= 4, got 3x3"),
    ],
)
def test_build_inputs_validation_messages(shape, dtype, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        build_inputs(torch.zeros(shape, dtype=dtype))


def test_build_inputs_rejects_a_non_tensor_and_bad_state_features():
    with pytest.raises(ValueError, match=re.escape("traj must be a tensor [N, M, T, C, H, W], got ndarray")):
        build_inputs(np.zeros((1, 1, 2, 3, 4, 4)))
    with pytest.raises(ValueError, match="^" + re.escape("state_feats must have shape (1, 2, 3, 63), got (1, 2, 3, 62)") + "$"):
        build_inputs(torch.zeros(1, 2, 3, 3, 4, 4), torch.zeros(1, 2, 3, 62))
    # the right shape passes
    build_inputs(torch.zeros(1, 2, 3, 3, 4, 4), torch.zeros(1, 2, 3, 63))


def _traj(T: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    traj = torch.randn(2, 1, T, 3, 8, 8, generator=g, dtype=torch.float64)
    traj[1] = 2.0 + 0.5 * traj[1]
    traj[:, :, 1:] += 0.5 * traj[:, :, :-1].clone()  # some memory over time
    return traj


def _check_inputs(inp, traj: torch.Tensor, state: torch.Tensor | None) -> None:
    N, M, T, C, H, W = traj.shape
    x = traj.numpy()
    np.testing.assert_allclose(inp.energy.numpy(), np.moveaxis((x**2).mean((-2, -1)), 2, 3), rtol=1e-12)
    np.testing.assert_allclose(inp.mean.numpy(), np.moveaxis(x.mean((-2, -1)), 2, 3), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(inp.variance.numpy(), np.moveaxis(x.var((-2, -1), ddof=0), 2, 3), rtol=1e-12)
    assert inp.T == T
    step = np.sqrt(((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum((-3, -2, -1)))
    np.testing.assert_allclose(inp.step_norm.numpy(), step, rtol=1e-12)
    assert inp.step_norm.shape == (N, M, T - 1)
    # the field helpers (pinned on their own) applied to the whole trajectory at once
    np.testing.assert_allclose(inp.radial.numpy(), _fields.radial_distribution(traj).transpose(2, 3).numpy(), rtol=1e-12, atol=1e-15)
    gx, gy = _fields.central_gradients(traj)
    np.testing.assert_allclose(inp.grad_kurtosis.numpy(), _fields.gradient_kurtosis(gx, gy).transpose(2, 3).numpy(), rtol=1e-12, atol=1e-12)
    flow = _fields.flow_correlations(gx[:, :, :-1], gy[:, :, :-1], traj[:, :, 1:] - traj[:, :, :-1])
    assert inp.flow.shape == (N, M, C, T - 1, 2)
    np.testing.assert_allclose(inp.flow.numpy(), flow.transpose(2, 3).numpy(), rtol=1e-12, atol=1e-12)
    inv = np.stack([[[_invariants_reference(x[n, m, t, c]) for c in range(C)] for t in range(T)]
                    for n in range(N) for m in range(M)]).reshape(N, M, T, C, 4, 3)
    assert inp.invariants.shape == (N, M, 4, 3, T)
    np.testing.assert_allclose(inp.invariants.numpy(), inv.mean(3).transpose(0, 1, 3, 4, 2), rtol=1e-10, atol=1e-12)
    for name in ("energy", "mean", "variance", "radial", "grad_kurtosis", "step_norm", "flow", "invariants", "state"):
        assert getattr(inp, name).dtype == torch.float64
    if state is not None:
        assert torch.equal(inp.state, state.double())


@pytest.mark.parametrize("chunk_elements", [None, 2 * 3 * 8 * 8 * 2])
def test_build_inputs_match_their_definitions_in_any_chunking(monkeypatch, chunk_elements):
    if chunk_elements is not None:  # two time steps per chunk: pairs cross the chunk borders
        monkeypatch.setattr(_inputs, "_CHUNK_ELEMENTS", chunk_elements)
    traj = _traj(5)
    state = torch.arange(2 * 1 * 5 * 63, dtype=torch.float32).reshape(2, 1, 5, 63)
    _check_inputs(build_inputs(traj, state), traj, state)


def test_build_inputs_computes_the_state_features_when_not_given(monkeypatch):
    monkeypatch.setattr(_inputs, "_CHUNK_ELEMENTS", 2 * 3 * 8 * 8 * 2)
    traj = _traj(3)
    inp = build_inputs(traj)
    want = _temporal.state_features(traj.float().reshape(-1, 3, 8, 8)).reshape(2, 1, 3, -1).double()
    assert inp.state.shape == (2, 1, 3, 63)
    np.testing.assert_allclose(inp.state.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_build_inputs_of_a_single_state_have_empty_pair_series():
    traj = _traj(1)
    inp = build_inputs(traj, torch.zeros(2, 1, 1, 63))
    assert inp.step_norm.shape == (2, 1, 0) and inp.step_norm.dtype == torch.float64
    assert inp.flow.shape == (2, 1, 3, 0, 2) and inp.flow.dtype == torch.float64
    np.testing.assert_allclose(inp.variance.numpy(), np.moveaxis(traj.numpy().var((-2, -1)), 2, 3), rtol=1e-12)


def test_build_inputs_upcasts_half_precision():
    traj = _traj(2).half()
    a = build_inputs(traj, torch.zeros(2, 1, 2, 63))
    b = build_inputs(traj.float(), torch.zeros(2, 1, 2, 63))
    for name in ("energy", "variance", "radial", "invariants", "flow"):
        assert torch.equal(getattr(a, name), getattr(b, name))


# --------------------------------------------------------------------------- small reductions
def _monotonicity_reference(inc: np.ndarray) -> float:
    thr = 1e-3 * inc.std()  # population std
    return float(np.mean(np.sign(inc) * (np.abs(inc) >= thr)))


def test_monotonicity_counts_signs_above_a_thousandth_of_the_population_std():
    # 6e-4 lies between 1e-3 * std (population, 0.5) and 1e-3 * std (sample, 0.707): it counts
    inc = torch.tensor([[1.0, 6e-4], [1.0, -2.0], [-1.0, -4e-4], [0.5, 0.5]], dtype=torch.float64)
    flat = torch.tensor([False, False, False, True])
    got = _monotonicity(inc, flat)
    want = [_monotonicity_reference(r) for r in inc.numpy()[:3]] + [0.0]
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(got.numpy(), [1.0, 0.0, -0.5, 0.0])


def test_monotonicity_over_a_longer_series():
    rng = np.random.default_rng(1)
    inc = rng.standard_normal((3, 2, 9))
    inc[0, 0, 4] = 0.0
    inc[1, 1, :] = np.abs(inc[1, 1, :])
    got = _monotonicity(torch.from_numpy(inc), torch.zeros(3, 2, dtype=torch.bool))
    want = np.array([[_monotonicity_reference(inc[i, j]) for j in range(2)] for i in range(3)])
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-15)
    assert got[1, 1] == 1.0


def test_monotonicity_threshold_is_inclusive_and_per_series():
    # |inc| exactly 1e-3 * std: counted (>=)
    x = 0.0008164966716495834
    inc = torch.tensor([[x, 1.0, -1.0]], dtype=torch.float64)
    assert (1e-3 * inc.std(-1, correction=0)).item() == x
    assert _monotonicity(inc, torch.tensor([False])).item() == pytest.approx(1 / 3, rel=1e-15)
    # the std is taken along time for each series alone (a huge neighbour series changes nothing)
    inc = torch.tensor([[[1.0, -1.0, 1e-3], [1.0, -1.0, 1e3]]], dtype=torch.float64)
    got = _monotonicity(inc, torch.zeros(1, 2, dtype=torch.bool))
    np.testing.assert_allclose(got.numpy(), [[1 / 3, 1 / 3]], rtol=1e-15)


def test_monotonicity_of_single_increments_is_their_sign():
    inc = torch.tensor([[2.0], [-0.5], [0.0], [3.0]], dtype=torch.float64)
    got = _monotonicity(inc, torch.tensor([False, False, False, True]))
    np.testing.assert_array_equal(got.numpy(), [1.0, -1.0, 0.0, 0.0])


@pytest.mark.parametrize(("C", "T"), [(1, 4), (3, 4), (3, 2), (2, 3)])
def test_spectral_change_is_the_mean_total_variation_between_spectra(C, T):
    rng = np.random.default_rng(C + T)
    r = rng.random((2, 3, C, T, 5))
    got = _spectral_change(torch.from_numpy(r))
    want = (0.5 * np.abs(np.diff(r, axis=3)).sum(-1)).mean((-2, -1))
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14)


def test_spectral_change_of_one_state_is_nan():
    got = _spectral_change(torch.ones(2, 3, 3, 1, 5, dtype=torch.float32))
    assert got.shape == (2, 3) and got.dtype == torch.float32 and torch.isnan(got).all()
