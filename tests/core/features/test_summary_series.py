"""SUMMARY time-series building blocks against direct (loop / numpy / scipy) references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from spinlock_core.features.summary import _series, causality, dynamics


def test_slope_quadratic_detrend():
    T = 11
    t = torch.arange(T, dtype=torch.float64) / (T - 1)
    y = 2.0 - 3.0 * t + 0.5 * t**2
    assert _series.slope(2.0 - 3.0 * t, T) == pytest.approx(-3.0)
    assert _series.quadratic_coefficient(y, T) == pytest.approx(0.5)
    assert _series.detrend(1.0 + 4.0 * t, T).abs().max() < 1e-12
    assert torch.isnan(_series.slope(y[:1], T)) and torch.isnan(_series.quadratic_coefficient(y[:2], T))


def test_pearson_flat_guard():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert _series.pearson(a, -a) == pytest.approx(-1.0)
    flat = torch.full((4,), 5.0, dtype=torch.float64) + torch.tensor([0, 1e-9, 0, 0], dtype=torch.float64)
    assert _series.pearson(a, flat) == 0
    assert _series.skewness(flat) == 0


def test_analytic_signal_matches_scipy():
    x = np.random.default_rng(0).normal(size=(2, 17))
    for n in (16, 17):
        ref = scipy.signal.hilbert(x[:, :n])
        got = _series.analytic_signal(torch.from_numpy(x[:, :n])).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-12)
    np.testing.assert_allclose(
        _series.hann(8, torch.zeros(1)).numpy(), scipy.signal.get_window("hann", 8), atol=1e-15
    )


def test_autocorr_time_of_ar1():
    phi, L = 0.8, 20000
    gen = np.random.default_rng(1)
    x = np.zeros(L)
    for i in range(1, L):
        x[i] = phi * x[i - 1] + gen.normal()
    de = torch.from_numpy(x)[None]
    T = L + 1
    flat = torch.zeros(1, dtype=torch.bool)
    lag = dynamics._autocorr_time(de, T, flat).item() * T
    # rho(k) = phi^k crosses 1/e between k = 4 and 5
    expected = 4 + (phi**4 - math.exp(-1)) / (phi**4 - phi**5)
    assert lag == pytest.approx(expected, abs=0.15)


def test_regime_switches_ignores_small_steps():
    de = torch.tensor([[1.0, -1.0, 1e-6, -1.0, 1.0, 1.0]], dtype=torch.float64)
    T = de.shape[-1] + 1
    got = dynamics._regime_switches(de, T, torch.zeros(1, dtype=torch.bool))
    assert got.item() == pytest.approx(2 / (T - 2))  # + - (.) - + +: two changes


def _te_reference(source: np.ndarray, target: np.ndarray) -> float:
    """Plug-in lag-1 transfer entropy source -> target with 4 equal-frequency bins (loops)."""
    T = len(source)

    def bins(v):
        ranks = np.empty(T, dtype=int)
        ranks[np.argsort(v, kind="stable")] = np.arange(T)
        return ranks * 4 // T

    def te(src):
        counts = np.zeros((4, 4, 4))
        for t in range(T - 1):
            counts[tb[t + 1], tb[t], src[t]] += 1
        p = counts / counts.sum()
        total = 0.0
        for a in range(4):
            for b in range(4):
                for c in range(4):
                    if p[a, b, c] > 0:
                        total += p[a, b, c] * math.log(
                            p[a, b, c] * p[:, b, :].sum() / (p[a, b, :].sum() * p[:, b, c].sum())
                        )
        return total

    sb, tb = bins(source), bins(target)
    shifted = [te(np.roll(sb, -s)) for s in (T // 4, T // 2, (3 * T) // 4)]
    return te(sb) - float(np.mean(shifted))


def test_transfer_entropy_matches_loop_reference():
    gen = np.random.default_rng(2)
    T = 50
    x = gen.normal(size=(1, 1, 3, T)).cumsum(-1)
    x[0, 0, 1, 1:] = x[0, 0, 0, :-1] + 0.3 * gen.normal(size=T - 1)
    got = causality._transfer_entropy(torch.from_numpy(x), torch.zeros(1, 1, 3, dtype=torch.bool))
    for d, (i, j) in enumerate(causality._DIRECTIONS):
        assert got[0, 0, d].item() == pytest.approx(_te_reference(x[0, 0, i], x[0, 0, j]), abs=1e-10)


def test_granger_matches_lstsq():
    gen = np.random.default_rng(3)
    T = 60
    x = gen.normal(size=(1, 1, 3, T))
    x[0, 0, 2, 2:] += 0.8 * x[0, 0, 0, :-2]
    got = causality._granger(torch.from_numpy(x), torch.zeros(1, 1, 3, dtype=torch.bool))

    def gain(src, tgt):
        y = tgt[2:]
        r = np.stack([np.ones(T - 2), tgt[1:-1], tgt[:-2]], 1)
        f = np.concatenate([r, np.stack([src[1:-1], src[:-2]], 1)], 1)
        mse = [np.mean((y - d @ np.linalg.lstsq(d, y, rcond=None)[0]) ** 2) for d in (r, f)]
        return float(np.clip(1 - mse[1] / mse[0], 0, 1))

    for p, (i, j) in enumerate(causality.PAIRS):
        ref = max(gain(x[0, 0, i], x[0, 0, j]), gain(x[0, 0, j], x[0, 0, i]))
        assert got[p, 0, 0].item() == pytest.approx(ref, abs=1e-7)
    assert got[1, 0, 0] > 0.3  # 0 -> 2 coupling
