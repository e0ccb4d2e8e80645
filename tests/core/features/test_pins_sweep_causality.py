"""SUMMARY causality block and the per-field reductions pinned against independent numpy references.

``causality``: the lag asymmetry (which segments are correlated, flatness of each segment judged
against its channel's reference), the 4-bin equal-frequency binning (ranks, ties by time), the
bias-corrected lag-1 transfer entropy (a counting loop over ``(next, now, source)`` triples), the
ridge-regularised least squares of the Granger gains (the ridge made visible on designs whose
smallest eigenvalue is of its size), the unit-std scaling (channels of very different amplitude),
the guards (flat channels, an exactly predictable target) and ``features`` column by column at
every ``T`` threshold.

``_fields``: periodic central differences on non-square grids, the gradient kurtosis at its
threshold, the radial spectrum at its power floor and for small fields, the flow correlations with
their flatness guards, the Gaussian transfer function on a non-square grid, the 32-bin entropy at
its constant-field threshold, the total variation on non-square grids and the field invariants on
an odd grid and where the high-pass entropy sits at the constant-field threshold.

Shapes are noted as ``[N, M, C, T]`` (series) and ``[..., H, W]`` (fields).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from spinlock_core.features.summary import _fields, causality
from spinlock_core.features.summary._inputs import SummaryInputs

pytestmark = pytest.mark.usefixtures("one_thread")

FLAT = 1e-6


# ----------------------------------------------------------------------------- numpy references


def _np_flat(y: np.ndarray, ref: float) -> bool:
    """Population std at most 1e-6 of the reference."""
    return bool(y.std() <= FLAT * ref)


def _np_pearson(a, b, ref_a, ref_b) -> float:
    if _np_flat(a, ref_a) or _np_flat(b, ref_b):
        return 0.0
    ac, bc = a - a.mean(), b - b.mean()
    den = math.sqrt((ac * ac).mean() * (bc * bc).mean())
    if den <= 0:
        return 0.0
    return float(np.clip((ac * bc).mean() / den, -1.0, 1.0))


def _per_pair(flat, n_ops, n_real, value) -> np.ndarray:
    """``[3, N, M]``: ``value(n, m, i, j)`` for the channel pairs (0,1), (0,2), (1,2) of every
    element, 0 where either channel is flagged flat (``flat`` ``[N, M, C]``)."""
    out = np.zeros((3, n_ops, n_real))
    for p, (i, j) in enumerate(((0, 1), (0, 2), (1, 2))):
        for n in range(n_ops):
            for m in range(n_real):
                if not (flat[n, m, i] or flat[n, m, j]):
                    out[p, n, m] = value(n, m, i, j)
    return out


def _np_lag_asym(x, ref, flat, tau) -> np.ndarray:
    """``[N, M, C, T] -> [3, N, M]``: corr(x_i(t), x_j(t+tau)) - corr(x_j(t), x_i(t+tau))."""
    N, M, _, T = x.shape

    def asym(n, m, i, j):
        xi, xj, ri, rj = x[n, m, i], x[n, m, j], ref[n, m, i], ref[n, m, j]
        return _np_pearson(xi[: T - tau], xj[tau:], ri, rj) - _np_pearson(xj[: T - tau], xi[tau:], rj, ri)

    return _per_pair(flat, N, M, asym)


def _np_bins(v: np.ndarray) -> np.ndarray:
    """Equal-frequency 4-bin labels: rank (ties broken by time) * 4 // T."""
    T = len(v)
    ranks = np.empty(T, dtype=np.int64)
    ranks[np.argsort(v, kind="stable")] = np.arange(T)
    return ranks * 4 // T


def _np_cmi(nxt, now, src) -> float:
    """Plug-in I(next; src | now) in nats, by counting triples."""
    n = len(nxt)
    c_abc = Counter(zip(nxt.tolist(), now.tolist(), src.tolist()))
    c_ab = Counter(zip(nxt.tolist(), now.tolist()))
    c_bc = Counter(zip(now.tolist(), src.tolist()))
    c_b = Counter(now.tolist())
    total = 0.0
    for (a, b, c), k in c_abc.items():
        total += (k / n) * math.log((k * c_b[b]) / (c_ab[(a, b)] * c_bc[(b, c)]))
    return total


def _np_te(source: np.ndarray, target: np.ndarray) -> float:
    """Lag-1 TE source -> target minus its mean over the source rolled by T/4, T/2, 3T/4."""
    T = len(source)
    sb, tb = _np_bins(source), _np_bins(target)

    def te(s):
        return _np_cmi(tb[1:], tb[:-1], s[:-1])

    null = [te(np.roll(sb, -k)) for k in (T // 4, T // 2, (3 * T) // 4)]
    return te(sb) - sum(null) / 3.0


def _np_gain(src: np.ndarray, tgt: np.ndarray) -> float:
    """1 - MSE(full) / MSE(restricted) on unit-std series by exact least squares; 0 when the
    restricted MSE is at most 1e-12."""
    T = len(tgt)
    s = src / (src.std() if src.std() > 0 else 1.0)
    t = tgt / (tgt.std() if tgt.std() > 0 else 1.0)
    y = t[2:]
    r = np.stack([np.ones(T - 2), t[1:-1], t[:-2]], 1)
    f = np.concatenate([r, np.stack([s[1:-1], s[:-2]], 1)], 1)
    mse = [np.mean((y - d @ np.linalg.lstsq(d, y, rcond=None)[0]) ** 2) for d in (r, f)]
    if mse[0] <= 1e-12:
        return 0.0
    return float(np.clip(1.0 - mse[1] / mse[0], 0.0, 1.0))


def _np_granger(x, flat) -> np.ndarray:
    """``[N, M, C, T] -> [3, N, M]``: larger gain over both directions, 0 with a flat channel."""
    N, M = x.shape[:2]
    return _per_pair(flat, N, M, lambda n, m, i, j: max(_np_gain(x[n, m, i], x[n, m, j]),
                                                         _np_gain(x[n, m, j], x[n, m, i])))


DIRECTIONS = ((0, 1), (0, 2), (1, 2), (1, 0), (2, 0), (2, 1))


def _np_te_all(x, flat) -> np.ndarray:
    """``[N, M, C, T] -> [N, M, 6]`` over ``DIRECTIONS``; 0 with a flat channel."""
    N, M = x.shape[:2]
    out = np.zeros((N, M, 6))
    for n in range(N):
        for m in range(M):
            for d, (i, j) in enumerate(DIRECTIONS):
                if not (flat[n, m, i] or flat[n, m, j]):
                    out[n, m, d] = _np_te(x[n, m, i], x[n, m, j])
    return out


def _np_detrend(y: np.ndarray) -> np.ndarray:
    """Series ``[..., T]`` minus their least-squares line against t / (T - 1)."""
    T = y.shape[-1]
    if T < 2:
        return y - y.mean(-1, keepdims=True)
    t = np.arange(T) / (T - 1)
    tc = t - t.mean()
    yc = y - y.mean(-1, keepdims=True)
    return yc - ((yc * tc).sum(-1, keepdims=True) / (tc * tc).sum()) * tc


def _np_skew(y: np.ndarray, ref: float) -> float:
    if _np_flat(y, ref):
        return 0.0
    d = y - y.mean()
    return float((d**3).mean() / (d**2).mean() ** 1.5)


def _np_features(mean: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The 14 causality columns from the channel means ``[N, M, 3, T]`` and the flow
    correlations ``[N, M, 3, T-1, 2]``, NaN where ``T`` does not suffice."""
    N, M, C, T = mean.shape
    out = np.full((N, M, 14), np.nan)
    if T < 2:
        return out
    x = _np_detrend(mean)
    ref = np.abs(mean).mean(-1)
    flat = x.std(-1) <= FLAT * ref
    for k, tau in enumerate((1, 2, 3)):
        if T >= tau + 2:
            a = _np_lag_asym(x, ref, flat, tau)
            out[..., k] = np.abs(a).max(0)
            if tau == 1:
                out[..., 3:6] = np.moveaxis(a, 0, -1)
    if T >= 8:
        out[..., 6:9] = np.moveaxis(_np_granger(x, flat), 0, -1)
    if T >= 4:
        te = _np_te_all(x, flat)
        out[..., 9] = te.max(-1)
        out[..., 10] = np.abs(te[..., :3] - te[..., 3:]).mean(-1)
    incr = x[..., 1:] - x[..., :-1]
    out[..., 11] = np.array(
        [[np.mean([_np_skew(incr[n, m, c], ref[n, m, c]) for c in range(C)]) for m in range(M)] for n in range(N)]
    )
    out[..., 12:14] = flow.mean((2, 3))
    return out


def _inputs(mean: np.ndarray, flow: np.ndarray) -> SummaryInputs:
    """A SummaryInputs carrying ``mean`` ``[N, M, 3, T]`` and ``flow``; the other series are zeros
    of their documented shapes (the causality block does not read them)."""
    m = torch.from_numpy(mean)
    N, M, C, T = m.shape
    z = torch.zeros_like(m)
    return SummaryInputs(
        state=torch.zeros(N, M, T, 63, dtype=torch.float64),
        energy=z,
        mean=m,
        variance=z,
        radial=torch.zeros(N, M, C, T, 2, dtype=torch.float64),
        grad_kurtosis=z,
        step_norm=torch.zeros(N, M, max(T - 1, 0), dtype=torch.float64),
        flow=torch.from_numpy(flow),
        invariants=torch.zeros(N, M, 4, 3, T, dtype=torch.float64),
    )


def _coupled_means(rng: np.random.Generator, N: int, M: int, T: int) -> np.ndarray:
    """Channel means ``[N, M, 3, T]`` with an offset, a trend, 0 -> 1 coupling at lag 1 and
    2 -> 0 coupling at lag 2; element (0, 1) has a channel-1 mean that is flat to 1e-6 of its
    magnitude but carries skewed rounding-scale noise."""
    base = rng.normal(size=(N, M, 3, T)).cumsum(-1)
    base[:, :, 1, 1:] += 0.9 * base[:, :, 0, :-1]
    base[:, :, 0, 2:] += 0.5 * base[:, :, 2, :-2]
    base += np.array([3.0, -2.0, 5.0])[:, None] + 0.3 * np.arange(T)
    if T > 1:
        base[0, 1, 1] = 50.0 + 1e-6 * rng.exponential(size=T)
    return base


# ----------------------------------------------------------------------------- causality helpers


def _segment_case(seed: int = 0):
    """x ``[2, 4, 3, 9]``, ref ``[2, 4, 3]``, flat ``[2, 4, 3]``: in batch 0 one channel per element
    is tiny (1e-9) on a leading or trailing segment only, with reference 1 (so that segment is flat
    while its own mean |x| would not call it flat) and the other channels have reference 1e-4;
    batch 1 has channel flags set on single channels."""
    rng = np.random.default_rng(seed)
    T = 9
    x = rng.normal(size=(2, 4, 3, T))
    ref = np.full((2, 4, 3), 1e-4)
    tiny = 1e-9 * rng.normal(size=T)
    for m, (c, head) in enumerate(((0, True), (1, False), (1, True), (0, False))):
        if head:
            x[0, m, c, :-1] = tiny[:-1]
        else:
            x[0, m, c, 1:] = tiny[1:]
        ref[0, m, c] = 1.0
    ref[1] = np.abs(x[1]).mean(-1)
    flat = np.zeros((2, 4, 3), dtype=bool)
    flat[1, 0, 2] = True
    flat[1, 2, 0] = True
    return x, ref, flat


@pytest.mark.parametrize("tau", [1, 2, 3])
def test_lag_asymmetry_matches_segment_reference(tau):
    """``A_ij(tau)`` ``[3, N, M]`` = corr(x_i[:T-tau], x_j[tau:]) - corr(x_j[:T-tau], x_i[tau:]),
    each segment's flatness judged against its own channel's reference, 0 with a flat channel."""
    x, ref, flat = _segment_case()
    got = causality._lag_asymmetry(
        torch.from_numpy(x), torch.from_numpy(ref), torch.from_numpy(flat), tau
    ).numpy()
    want = _np_lag_asym(x, ref, flat, tau)
    assert got.shape == (3, 2, 4)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.abs(want[:, 0]).max() > 0.1 and np.abs(want[:, 1]).max() > 0.1  # not all guarded


def test_equal_frequency_bins_ranks_with_ties_by_time():
    """4 equal-frequency bins of each series ``[N, M, C, T]`` (T = 10, many ties): rank * 4 // T
    with ties ranked in time order."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(2, 3, 3, 10)).astype(np.float64)
    got = causality._equal_frequency_bins(torch.from_numpy(x)).numpy()
    want = np.apply_along_axis(_np_bins, -1, x)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    # a hand case: [2, 0, 2, 1, 0] ranks [3, 0, 4, 2, 1] -> bins [2, 0, 3, 1, 0]
    hand = causality._equal_frequency_bins(torch.tensor([[2.0, 0.0, 2.0, 1.0, 0.0]]))
    assert hand.tolist() == [[2, 0, 3, 1, 0]]


def test_transfer_entropy_matches_counting_reference():
    """Bias-corrected lag-1 TE ``[N, M, 6]`` in ``_DIRECTIONS`` order against a triple-counting
    reference (T = 23: shifts 5, 11, 17), 0 for every direction touching a flat channel."""
    rng = np.random.default_rng(2)
    T = 23
    x = rng.normal(size=(2, 2, 3, T)).cumsum(-1)
    x[:, :, 1, 1:] = x[:, :, 0, :-1] + 0.3 * rng.normal(size=(2, 2, T - 1))
    x[1, 1, 2, 1:] = np.sign(x[1, 1, 0, :-1])
    flat = np.zeros((2, 2, 3), dtype=bool)
    flat[1, 0, 1] = True
    got = causality._transfer_entropy(torch.from_numpy(x), torch.from_numpy(flat)).numpy()
    assert causality._DIRECTIONS == DIRECTIONS
    want = _np_te_all(x, flat)
    assert got.shape == (2, 2, 6)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.abs(want).max() > 0.1 and (want[1, 0, [0, 2, 3, 5]] == 0).all()  # flat channel 1


def test_transfer_entropy_hand_value():
    """T = 8 (shifts 2, 4, 6), one hand-computed TE: target bins b = [0, 1, 0, 1, 2, 3, 2, 3],
    source bins q = [3, 0, 0, 1, 3, 1, 2, 2].

    Transitions (next, now) for t = 0..6: (1,0) (0,1) (1,0) (2,1) (3,2) (2,3) (3,2). Only the
    now = 1 group (t = 1, 3; next 0 vs 2) has an uncertain next, so I(next; src | now) is
    p(now = 1) log 2 = 2/7 log 2 when the source differs at t = 1 and 3, else 0. Unshifted:
    q1 = 0, q3 = 1 -> 2/7 log 2; shift 2: q3 = q5 = 1 -> 0; shift 4: q5 = 1, q7 = 2 -> 2/7 log 2;
    shift 6: q7 = 2, q1 = 0 -> 2/7 log 2. TE = 2/7 log 2 (1 - 2/3) = 2/21 log 2."""
    b_bins = np.array([0, 1, 0, 1, 2, 3, 2, 3])
    q_bins = np.array([3, 0, 0, 1, 3, 1, 2, 2])
    t = np.arange(8) * 1e-3  # ties inside a bin broken by time
    x = np.zeros((1, 1, 3, 8))
    x[0, 0, 0] = q_bins * 10.0 + t
    x[0, 0, 1] = b_bins * 10.0 + t
    x[0, 0, 2] = np.cos(np.arange(8.0))
    assert np.array_equal(_np_bins(x[0, 0, 0]), q_bins) and np.array_equal(_np_bins(x[0, 0, 1]), b_bins)
    got = causality._transfer_entropy(torch.from_numpy(x), torch.zeros(1, 1, 3, dtype=torch.bool))
    assert got[0, 0, 0].item() == pytest.approx(2 / 21 * math.log(2), abs=1e-14)
    want = _np_te_all(x, np.zeros((1, 1, 3), dtype=bool))
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


def _ridge_designs():
    """Six designs ``[3, 2, 1, 7, 2]`` and targets ``[3, 2, 1, 7]`` in which one column has a
    squared norm of the ridge's size: trace < 1 (ridge 1e-10) and trace = 4 (ridge 4e-10), both
    orientations, plus two well-conditioned random designs."""
    rng = np.random.default_rng(4)
    X = np.zeros((6, 7, 2))
    X[0, :2, 0], X[0, 2:4, 1] = 0.3, 1e-5  # trace 0.18 + 2e-10
    X[1, :4, 0], X[1, 4:6, 1] = 1.0, math.sqrt(2e-10)  # trace 4 + 4e-10
    X[2, :2, 1], X[2, 2:4, 0] = 0.3, 1e-5
    X[3, :4, 1], X[3, 4:6, 0] = 1.0, math.sqrt(2e-10)
    X[4], X[5] = rng.normal(size=(7, 2)), 3.0 * rng.normal(size=(7, 2))
    y = rng.normal(size=(6, 7))
    return X.reshape(3, 2, 1, 7, 2), y.reshape(3, 2, 1, 7)


def test_residual_mse_ridge_is_1e10_of_the_trace_at_least_1():
    """Residual mean square ``[...]`` of ``y [..., n]`` on ``design [..., n, p]`` with the normal
    equations regularised by 1e-10 * max(trace, 1) * I; a column whose squared norm equals the
    ridge is fitted with weight s^2 / (s^2 + ridge), which makes the ridge visible."""
    X, y = _ridge_designs()
    got = causality._residual_mse(torch.from_numpy(X), torch.from_numpy(y)).numpy()
    want = np.empty(y.shape[:-1])
    for idx in np.ndindex(*y.shape[:-1]):
        d, t = X[idx], y[idx]
        G = d.T @ d
        lam = 1e-10 * max(np.trace(G), 1.0)
        beta = np.linalg.solve(G + lam * np.eye(2), d.T @ t)
        want[idx] = np.mean((t - d @ beta) ** 2)
    assert got.shape == (3, 2, 1)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    # the ridge matters: plain least squares would fit the tiny column exactly
    ols = np.mean((y[0, 0, 0] - X[0, 0, 0] @ np.linalg.lstsq(X[0, 0, 0], y[0, 0, 0], rcond=None)[0]) ** 2)
    assert abs(got[0, 0, 0] - ols) > 1e-5 * ols


def test_granger_matches_least_squares_with_scaling_and_guards():
    """Granger gains ``[3, N, M]`` (N = 2, M = 3) against exact least squares on unit-std series:
    channels of amplitude 1e-4, 1 and 1e3 (the scaling keeps the ridge negligible), a flagged flat
    channel (its pairs 0), an all-zero channel that is not flagged (its pairs 0, not NaN) and an
    exactly predictable cosine target (restricted MSE ~0: that direction is 0)."""
    rng = np.random.default_rng(5)
    T = 14
    x = rng.normal(size=(2, 3, 3, T))
    x[:, :, 1, 1:] += 1.5 * x[:, :, 0, :-1]
    x[:, :, 2, 2:] += 0.8 * x[:, :, 1, :-2]
    x *= np.array([1e-4, 1.0, 1e3])[:, None]
    x[1, 0, 2] = 0.0
    x[1, 1, 1] = np.cos(0.7 * np.arange(T))
    flat = np.zeros((2, 3, 3), dtype=bool)
    flat[0, 2, 1] = True
    got = causality._granger(torch.from_numpy(x), torch.from_numpy(flat)).numpy()
    want = _np_granger(x, flat)
    assert got.shape == (3, 2, 3)
    assert np.isfinite(got).all() and (got >= 0).all() and (got <= 1).all()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    assert want[0, 0, 0] > 0.5 and want[2, 0, 0] > 0.3  # couplings at amplitude 1e-4 and 1e3
    assert got[0, 0, 2] == 0 and got[2, 0, 2] == 0  # flagged channel 1
    assert got[1, 1, 0] < 1e-9 and got[2, 1, 0] < 1e-9  # zero channel 2
    # the cosine is an exact AR(2): as a target its gain is 0, so the pair reports the other way
    assert got[0, 1, 1] == pytest.approx(_np_gain(x[1, 1, 1], x[1, 1, 0]), abs=1e-7)


# ----------------------------------------------------------------------------- causality.features


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 7, 8, 12])
def test_features_match_reference_at_every_threshold(T):
    """``features`` ``[N, M, 14]`` (N = 2, M = 4) column by column against the reference, NaN
    exactly where ``T`` does not suffice (all at T = 1; lag_asym_max_tau below tau + 2; TE below 4;
    Granger below 8); irreversibility of a flat channel is 0 (its increments judged against the
    channel mean's magnitude)."""
    rng = np.random.default_rng(10 + T)
    N, M = 2, 4
    mean = _coupled_means(rng, N, M, T)
    flow = rng.uniform(-1, 1, size=(N, M, 3, max(T - 1, 0), 2))
    got = causality.features(_inputs(mean, flow)).numpy()
    want = _np_features(mean, flow)
    assert got.shape == (N, M, 14) and got.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    granger = [6, 7, 8]
    rest = [k for k in range(14) if k not in granger]
    np.testing.assert_allclose(got[..., rest], want[..., rest], rtol=0, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got[..., granger], want[..., granger], rtol=0, atol=1e-6, equal_nan=True)
    nan_cols = {1: range(14), 2: range(11), 3: [1, 2, 6, 7, 8, 9, 10], 4: [2, 6, 7, 8],
                5: [6, 7, 8], 7: [6, 7, 8], 8: [], 12: []}[T]
    assert sorted(np.where(np.isnan(got[0, 0]))[0].tolist()) == sorted(nan_cols)


def test_features_names_and_pairs():
    """The column names and pair order of the block."""
    assert causality.NAMES[9:] == (
        "transfer_entropy_max", "transfer_entropy_asym", "irreversibility", "flow_x", "flow_y"
    )
    assert causality.PAIRS == ((0, 1), (0, 2), (1, 2))
    assert causality._TE_BINS == 4 and causality._GRANGER_MIN_T == 8


# ----------------------------------------------------------------------------- _fields


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 3, 4, 6)])
def test_central_gradients_on_non_square_grids(shape):
    """``(u[:, j+1] - u[:, j-1], u[i+1] - u[i-1])`` with wrap-around, ``dx`` along the last axis,
    on non-square grids ``[..., H, W]`` with 1 and 2 leading axes."""
    u = np.random.default_rng(6).normal(size=shape)
    gx, gy = _fields.central_gradients(torch.from_numpy(u))
    np.testing.assert_allclose(gx.numpy(), np.roll(u, -1, -1) - np.roll(u, 1, -1), rtol=0, atol=1e-14)
    np.testing.assert_allclose(gy.numpy(), np.roll(u, -1, -2) - np.roll(u, 1, -2), rtol=0, atol=1e-14)


def test_gradient_kurtosis_matches_reference_on_non_square_fields():
    """Excess kurtosis ``[...]`` of ``|grad u| = hypot(gx, gy)`` over the pixels of ``[2, 3, 4, 6]``
    gradients (std well above the threshold, variance below 1)."""
    rng = np.random.default_rng(7)
    gx, gy = rng.normal(size=(2, 2, 3, 4, 6)) * np.array([0.3, 0.2])[:, None, None, None, None]
    got = _fields.gradient_kurtosis(torch.from_numpy(gx), torch.from_numpy(gy)).numpy()
    g = np.hypot(gx, gy).reshape(2, 3, -1)
    d = g - g.mean(-1, keepdims=True)
    want = (d**4).mean(-1) / (d**2).mean(-1) ** 2 - 3.0
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_gradient_kurtosis_threshold_is_strict_at_2e_minus_6():
    """The threshold on the std of ``hypot(gx, gy)`` (twice ``|grad u|``) is 2e-6 with a strict
    ``<``: two pixels ``0, 2t`` (std exactly ``t = 2e-6``) keep their kurtosis -2, a std just below
    gives 0."""
    t = 2 * 1e-6
    at = torch.tensor([[[0.0, 2 * t]]], dtype=torch.float64)  # [1, 1, 2]
    below = at * (1 - 1e-9)
    zero = torch.zeros_like(at)
    assert _fields.gradient_kurtosis(at, zero).item() == pytest.approx(-2.0, abs=1e-12)
    assert _fields.gradient_kurtosis(zero, at).item() == pytest.approx(-2.0, abs=1e-12)
    assert _fields.gradient_kurtosis(below, zero).item() == 0.0
    big = torch.tensor([[[0.0, 2.5e-6 * 2]]], dtype=torch.float64)  # std 2.5e-6
    assert _fields.gradient_kurtosis(big, zero).item() == pytest.approx(-2.0, abs=1e-9)


def _np_radial(u: np.ndarray) -> np.ndarray:
    """Ring averages of |FFT|^2 over the full plane (rings round(|k|) = 1..H/2, DC out),
    normalised to sum 1; zeros when the total non-DC power is below 1e-8."""
    h, w = u.shape
    p = np.abs(np.fft.fft2(u - u.mean())) ** 2
    ky, kx = np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * w
    q = np.rint(ky[:, None] ** 2 + kx[None, :] ** 2)
    ring = np.floor(np.sqrt(q) + 0.5)
    s = np.array([p[(ring == k) & (q > 0)].mean() for k in range(1, h // 2 + 1)])
    if p.sum() < 1e-8:
        return np.zeros_like(s)
    return s / s.sum()


@pytest.mark.parametrize("H, W", [(8, 8), (8, 7), (6, 10), (6, 1)])
def test_ring_weights_are_multiplicity_over_ring_size(H, W):
    """The uncached ring table: ``rings [H * (W//2 + 1), H/2]`` holds, for each rfft bin in ring
    round(|k|) = k (DC out), its full-plane multiplicity (1 on the kx = 0 column and on the
    Nyquist column of an even W, else 2) divided by the ring's total multiplicity (a ring of a
    single bin, H = 6, W = 1, keeps weight 1); ``total`` is the multiplicity with DC zeroed."""
    rings, total = _fields._ring_weights_uncached(H, W, "cpu")
    ky = np.fft.fftfreq(H) * H
    kx = np.fft.rfftfreq(W) * W
    mult = np.full((H, len(kx)), 2.0)
    mult[:, 0] = 1.0
    if W % 2 == 0:
        mult[:, -1] = 1.0
    q = np.rint(ky[:, None] ** 2 + kx[None, :] ** 2)
    ring = np.floor(np.sqrt(q) + 0.5)
    want = np.zeros((H, len(kx), H // 2))
    for k in range(1, H // 2 + 1):
        member = (ring == k) & (q > 0)
        want[..., k - 1] = np.where(member, mult, 0.0) / max(mult[member].sum(), 1.0)
    want_total = mult.copy()
    want_total[0, 0] = 0.0
    assert rings.dtype == torch.float64 and rings.shape == (H * len(kx), H // 2)
    np.testing.assert_allclose(rings.numpy(), want.reshape(-1, H // 2), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(total.numpy(), want_total.reshape(-1))


def test_radial_distribution_batched_small_fields_and_power_floor():
    """``[3, 8, 8] -> [3, 4]`` for fields of amplitude 1e-2, 2.2e-6 (total non-DC power 2e-8,
    above the 1e-8 floor) and 1.1e-6 (power 5e-9: all zeros), each normalised on its own."""
    rng = np.random.default_rng(8)
    u = rng.normal(size=(3, 8, 8))
    u -= u.mean((-2, -1), keepdims=True)
    u /= np.sqrt((u**2).sum((-2, -1), keepdims=True) * 64)  # total non-DC power n * sum u^2 = 1
    u *= np.sqrt(np.array([1e-4 * 64 * 64, 2e-8, 5e-9]))[:, None, None]
    u += np.array([1.0, -3.0, 7.0])[:, None, None]
    got = _fields.radial_distribution(torch.from_numpy(u)).numpy()
    want = np.stack([_np_radial(v) for v in u])
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)
    assert got[1].sum() == pytest.approx(1.0) and (got[2] == 0).all()


def _np_flow(g: np.ndarray, du: np.ndarray) -> float:
    if du.std() <= FLAT * abs(du.mean()) or g.std() <= FLAT * abs(g.mean()):
        return 0.0
    a, b = g - g.mean(), du - du.mean()
    den = g.std() * du.std()
    if den <= 0:
        return 0.0
    return float(np.clip((a * b).mean() / den, -1, 1))


def test_flow_correlations_match_reference_with_flat_guards():
    """Pixel Pearson correlations ``[B, 2]`` of gx and gy with du on ``[6, 4, 6]`` fields: small
    amplitudes with non-zero means; du flat (3 + 1e-9 noise; 3 + 1e-6 noise, within 1e-6 of its
    mean); gx flat (5 + 1e-9 noise; 3 + 1e-6 noise) -> 0 for the flat pairings only."""
    rng = np.random.default_rng(9)
    gx = 0.05 * rng.normal(size=(6, 4, 6)) + 0.02
    gy = 0.04 * rng.normal(size=(6, 4, 6)) - 0.01
    du = 0.01 * rng.normal(size=(6, 4, 6)) + 0.5 * gx - 0.8 * gy + 0.1
    du[1] = 3.0 + 1e-9 * rng.normal(size=(4, 6))
    du[2] = 3.0 + 1e-6 * rng.normal(size=(4, 6))
    gx[3] = 5.0 + 1e-9 * rng.normal(size=(4, 6))
    gx[4] = 3.0 + 1e-6 * rng.normal(size=(4, 6))
    got = _fields.flow_correlations(*(torch.from_numpy(a) for a in (gx, gy, du))).numpy()
    want = np.array([[_np_flow(g[b], du[b]) for g in (gx, gy)] for b in range(6)])
    assert got.shape == (6, 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert (got[1:3] == 0).all() and (got[3:5, 0] == 0).all()
    assert (np.abs(got[3:5, 1]) > 0.1).all() and np.abs(got[0]).min() > 0.1


def test_flow_correlations_are_clamped_to_unit_interval():
    """Exactly (anti-)proportional fields ``[64, 4, 6]`` give correlations within [-1, 1] (round-off
    beyond is clamped)."""
    rng = np.random.default_rng(11)
    du = rng.normal(size=(64, 4, 6)) * rng.uniform(0.1, 10, size=(64, 1, 1))
    scale = rng.uniform(0.3, 3, size=(64, 1, 1))
    got = _fields.flow_correlations(
        torch.from_numpy(scale * du + 0.7), torch.from_numpy(-scale * du - 0.3), torch.from_numpy(du)
    ).numpy()
    assert (got[:, 0] <= 1.0).all() and (got[:, 1] >= -1.0).all()
    np.testing.assert_allclose(got, np.tile([1.0, -1.0], (64, 1)), rtol=0, atol=1e-12)


def test_gaussian_transfer_on_a_non_square_grid():
    """rfft2 transfer ``[H, W//2 + 1]`` of the periodic blur with sigma = H/32 pixels, H = 16,
    W = 12: exp(-2 pi^2 sigma^2 (fy^2 + fx^2)), fy along rows (full), fx along columns (half)."""
    got = _fields._gaussian_transfer_uncached(16, 12, "cpu")
    sigma = 0.5
    fy, fx = np.fft.fftfreq(16), np.fft.rfftfreq(12)
    want = np.exp(-2 * math.pi**2 * sigma**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    assert got.dtype == torch.float64 and got.shape == (16, 7)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14, atol=0)


def _np_entropy(f: np.ndarray, lo: float, hi: float, reference: float) -> float:
    """32 bins of (f - lo) / (hi - lo), the maximum merged into the last bin; 0 when the range is
    at most 1e-6 of ``reference``."""
    span = hi - lo
    if span <= FLAT * reference:
        return 0.0
    idx = np.clip(np.floor((f.ravel() - lo) * (32 / span)).astype(int), 0, 31)
    p = np.bincount(idx, minlength=32) / idx.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_histogram_entropy_matches_reference_on_float64_fields():
    """32-bin entropy ``[2, 3]`` of float64 fields ``[2, 3, 4, 6]`` with non-zero minima (the
    maximum merged into the last bin), against ``np.bincount``."""
    rng = np.random.default_rng(12)
    f = rng.gamma(2.0, size=(2, 3, 4, 6)) - 0.5
    lo, hi = f.min((-2, -1)), f.max((-2, -1))
    ref = np.abs(f).max((-2, -1))
    got = _fields._histogram_entropy(*(torch.from_numpy(a) for a in (f, lo, hi, ref))).numpy()
    want = np.array([[_np_entropy(f[a, b], lo[a, b], hi[a, b], ref[a, b]) for b in range(3)] for a in range(2)])
    assert got.shape == (2, 3) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reference, constant", [(1.0, True), (2.0, True), (0.5, False)])
def test_histogram_entropy_constant_threshold(reference, constant):
    """A range of exactly 1e-6 is constant (entropy 0) for a reference of 1 (``<=`` at equality) or
    2, and not for a reference of 0.5 (a ramp of 24 values over the range: reference entropy)."""
    f = np.linspace(0.0, 1e-6, 24).reshape(1, 4, 6)
    lo, hi = np.array([0.0]), np.array([1e-6])
    got = _fields._histogram_entropy(
        torch.from_numpy(f), torch.from_numpy(lo), torch.from_numpy(hi), torch.tensor([reference], dtype=torch.float64)
    ).item()
    if constant:
        assert got == 0.0
    else:
        assert got == pytest.approx(_np_entropy(f[0], 0.0, 1e-6, reference), abs=1e-12)
        assert got > 2.5


def test_histogram_entropy_of_a_non_finite_field_is_nan():
    """A field with an infinite value has no finite range: NaN (and no out-of-range bin index)."""
    f = torch.zeros(2, 4, 4, dtype=torch.float64)
    f[0, 1, 2] = math.inf
    f[1] = torch.arange(16.0, dtype=torch.float64).reshape(4, 4)
    lo, hi = f.flatten(-2).amin(-1), f.flatten(-2).amax(-1)
    got = _fields._histogram_entropy(f, lo, hi, torch.ones(2, dtype=torch.float64))
    assert math.isnan(got[0].item()) and got[1].item() == pytest.approx(math.log(16), abs=1e-12)


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 3, 4, 6)])
def test_total_variation_on_non_square_grids(shape):
    """Mean of the mean |forward difference| (periodic) along x and along y, ``[..., H, W] -> [...]``
    on non-square grids."""
    f = np.random.default_rng(13).normal(size=shape)
    want = 0.5 * (np.abs(np.roll(f, -1, -1) - f).mean((-2, -1)) + np.abs(np.roll(f, -1, -2) - f).mean((-2, -1)))
    got = _fields._total_variation(torch.from_numpy(f)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)


def _np_invariants(u: np.ndarray) -> np.ndarray:
    """``[H, W] -> [4, 3]``: linf, l2, entropy, tv of raw, the Gaussian blur (sigma = H/32, full
    plane FFT) and raw - blur; entropy 0 when a scale's range is at most 1e-6 of max |u|."""
    h, w = u.shape
    sigma = h / 32
    fy, fx = np.fft.fftfreq(h), np.fft.fftfreq(w)
    g = np.exp(-2 * math.pi**2 * sigma**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    low = np.fft.ifft2(np.fft.fft2(u) * g).real
    out = np.zeros((4, 3))
    for k, f in enumerate((u, low, u - low)):
        tv = 0.5 * (np.abs(np.roll(f, -1, -1) - f).mean() + np.abs(np.roll(f, -1, -2) - f).mean())
        ent = _np_entropy(f, f.min(), f.max(), np.abs(u).max())
        out[:, k] = [np.abs(f).max(), np.sqrt((f**2).mean()), ent, tv]
    return out


def test_field_invariants_on_an_odd_grid():
    """``[2, 9, 9] -> [2, 4, 3]`` (odd H = W: the inverse rfft needs the explicit size) against full
    plane FFT formulas, with offsets 0.4 and -2."""
    u = np.random.default_rng(14).normal(size=(2, 9, 9)).cumsum(-1) + np.array([0.4, -2.0])[:, None, None]
    got = _fields.field_invariants(torch.from_numpy(u)).numpy()
    want = np.stack([_np_invariants(v) for v in u])
    assert got.shape == (2, 4, 3)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("side", [-1.0, 1.0])
def test_field_invariants_high_pass_entropy_at_the_constant_threshold(side):
    """The constant-field reference is max |u| of the raw field (offset included): a cosine of
    amplitude A on an offset m = +-100 whose high-pass range is just below (above) 1e-6 (|m| + A)
    has high-pass entropy 0 (> 0); the raw and low-pass entropies are positive."""
    H = 16
    p = np.cos(2 * np.pi * np.arange(H) / H)[None, :].repeat(H, 0)
    fy = np.fft.fftfreq(H)
    g = np.exp(-2 * math.pi**2 * (H / 32) ** 2 * (fy[:, None] ** 2 + fy[None, :] ** 2))
    high = p - np.fft.ifft2(np.fft.fft2(p) * g).real
    c = high.max() - high.min()  # high-pass range per unit amplitude
    m = 100.0 * side
    fields = []
    for margin in (1 - 1e-7, 1 + 1e-7):
        k = FLAT * margin
        A = k * abs(m) / (c - k)  # A c = k (|m| + A)
        fields.append(m + A * p)
    inv = _fields.field_invariants(torch.from_numpy(np.stack(fields))).numpy()  # [2, 4, 3]
    assert inv[0, 2, 2] == 0.0
    assert inv[1, 2, 2] > 0.5
    assert (inv[:, 2, :2] > 0.5).all()
