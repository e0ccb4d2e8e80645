"""Sampling pinned against hand computations and an independent re-implementation: the
ARCHITECTURE normalisation of every parameter kind, and Burley's hash-based Owen scrambling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinlock_core.config.parameters import BooleanParam, ChoiceParam, ContinuousParam, IntegerParam, ParameterSpace
from spinlock_core.sampling import normalized_params
from spinlock_core.sampling.sobol import owen_scramble

M32 = 2**32 - 1


def _space() -> ParameterSpace:
    """Every kind and edge of the normalisation (built without the name rules: the function reads
    only ``ordered()``)."""
    specs = {
        "int": IntegerParam(type="integer", bounds=(2, 6)),
        "int_flat": IntegerParam(type="integer", bounds=(3, 3)),
        "lin": ContinuousParam(type="continuous", bounds=(0.0, 2.0)),
        "log": ContinuousParam(type="continuous", bounds=(1e-3, 1e-1), log_scale=True),
        "flat": ContinuousParam(type="continuous", bounds=(0.5, 0.5)),
        "choice3": ChoiceParam(type="choice", choices=["a", "b", "c"]),
        "choice2": ChoiceParam(type="choice", choices=["a", "b"]),
        "choice1": ChoiceParam(type="choice", choices=["a"]),
        "flag": BooleanParam(type="boolean"),
    }
    return ParameterSpace.model_construct(architecture=specs, stochastic={}, operator={}, evolution={})


def test_normalized_params_by_hand_for_every_kind():
    space = _space()
    u = [0.0, 0.5, 0.9]
    unit = [[x] * space.dim for x in u]
    got = normalized_params(unit, space)
    assert got.dtype == np.float32 and got.shape == (3, 9)
    want = {
        # v = min(2 + floor(5u), 6) -> 2, 4, 6 -> (v - 2) / 4
        "int": [0.0, 0.5, 1.0],
        "int_flat": [0.0, 0.0, 0.0],
        # v = 2u -> v / 2
        "lin": [0.0, 0.5, 0.9],
        # log-uniform: (log v - log lo) / (log hi - log lo) = u
        "log": [0.0, 0.5, 0.9],
        "flat": [0.0, 0.0, 0.0],
        # cumulative weights [1/3, 2/3, 1], searchsorted right -> 0, 1, 2 -> index / 2
        "choice3": [0.0, 0.5, 1.0],
        # [0.5, 1]: u = 0.5 sits on the edge and goes right -> 0, 1, 1 -> index / 1
        "choice2": [0.0, 1.0, 1.0],
        "choice1": [0.0, 0.0, 0.0],
        # u >= 0.5, so 0.5 itself is True
        "flag": [0.0, 1.0, 1.0],
    }
    for j, name in enumerate(space.names):
        np.testing.assert_allclose(got[:, j], want[name], rtol=0, atol=1e-6, err_msg=name)


def test_normalized_params_log_scale_is_the_log_fraction_not_the_linear_one():
    space = ParameterSpace.model_construct(
        architecture={"log": ContinuousParam(type="continuous", bounds=(1e-3, 1e-1), log_scale=True),
                      "int": IntegerParam(type="integer", bounds=(10, 20))},
        stochastic={}, operator={}, evolution={})
    got = normalized_params([[0.25, 0.37]], space)
    v = math.exp(math.log(1e-3) + 0.25 * (math.log(1e-1) - math.log(1e-3)))
    assert got[0, 0] == np.float32((math.log(v) - math.log(1e-3)) / (math.log(1e-1) - math.log(1e-3)))
    assert abs(got[0, 0] - (v - 1e-3) / (1e-1 - 1e-3)) > 0.2  # the linear fraction would be 0.022
    # 10 + floor(0.37 * 11) = 14 -> 4 / 10
    assert got[0, 1] == np.float32(0.4)


def _reverse32(x: int) -> int:
    return int(f"{x:032b}"[::-1], 2)


def _burley(p: float, seed: int) -> float:
    """Burley (2020) nested-uniform scrambling of one coordinate, on Python integers mod 2^32."""
    x = min(max(math.floor(p * 2**32), 0), M32)
    x = _reverse32(x)
    x = (x + seed) & M32
    for c in (0x6C50B47C, 0xB82F1E52, 0xC7AFE638, 0x8D22F6E6):
        x ^= (x * c) & M32
    x = _reverse32(x)
    return (x + 0.5) / 2**32


def test_owen_scramble_is_burleys_hash_on_32_bit_fixed_point():
    pts = np.array([[0.0, 0.25], [2.0**-32, 0.5], [0.75, 1.0 - 2.0**-32], [0.123456789, 0.987654321]])
    got = owen_scramble(pts, np.random.default_rng(11))
    # the per-dimension seeds are the generator's first draw of P uint32 words
    seeds = np.random.default_rng(11).integers(0, 2**32, size=2, dtype=np.uint64).astype(np.uint32)
    want = np.array([[_burley(p, int(seeds[j])) for j, p in enumerate(row)] for row in pts])
    np.testing.assert_array_equal(got, want)
    # 0 and 2^-32 are different fixed-point cells, so they stay different (a bijection on cells)
    assert got[0, 0] != got[1, 0]


def _quality_cfg(points: int, strata: int, shard: int, shards: int):
    from types import SimpleNamespace as NS

    return NS(sampling=NS(validation=NS(discrepancy_points=points), stratification=NS(num_strata_per_dim=strata)),
              dataset=NS(storage=NS(shard_size=shard)), num_shards=shards)


def test_sample_quality_for_reads_the_experiments_cap_strata_and_shards():
    from scipy.stats import qmc

    from spinlock_core.sampling.quality import sample_quality_for

    unit = np.random.default_rng(4).random((40, 3))
    # 40 points over a cap of 20: the first 16 (largest power of two <= 20); 4 strata; shards of 15
    q = sample_quality_for(unit, _quality_cfg(20, 4, 15, 3))
    assert q.discrepancy_n == 16 and q.discrepancy == pytest.approx(qmc.discrepancy(unit[:16], method="CD"), rel=1e-12)
    assert q.num_strata == 4
    assert q.min_stratum_count == min(np.bincount(np.minimum((unit[:, j] * 4).astype(int), 3), minlength=4).min() for j in range(3))
    assert q.block_size == 15 and [(b.start, b.n) for b in q.blocks] == [(0, 15), (15, 15), (30, 10)]
    assert q.blocks[2].discrepancy == pytest.approx(qmc.discrepancy(unit[30:40], method="CD"), rel=1e-12)
    assert sample_quality_for(unit, _quality_cfg(64, 4, 20, 2)).block_size == 20  # two shards are blocks too
    # one shard: no per-block measurement
    q1 = sample_quality_for(unit, _quality_cfg(64, 4, 15, 1))
    assert q1.discrepancy_n == 40 and q1.block_size == 0 and q1.blocks == []
