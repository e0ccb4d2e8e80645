"""Property tests (issue #11): laws that hold for every input, checked by ``hypothesis`` on
generated cases: the unit-cube mapping (bounds, equal-probability integers, log scale, choice
weights), HDF5 layout round trips, config validation that never raises anything but its own error
type on arbitrary YAML, and shard-size and batch independence (IC types and fields, draws,
trajectories)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spinlock_core.config import ConfigError, ExperimentConfig, load_experiment
from spinlock_core.config.parameters import ChoiceParam, ContinuousParam, IntegerParam
from spinlock_core.sampling.mapping import choice_index, map_unit
from tests.conftest import tiny_dict

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNIT = st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=50)


@FAST
@given(lo=st.integers(-1000, 1000), width=st.integers(0, 500), u=UNIT)
def test_integer_mapping_is_inside_bounds_monotone_and_equal_probability(lo, width, u):
    hi = lo + width
    u = np.sort(np.asarray(u))
    v = map_unit(u, IntegerParam(type="integer", bounds=(lo, hi)))
    assert v.min() >= lo and v.max() <= hi
    assert (np.diff(v) >= 0).all()
    # value lo + k exactly on [k / n, (k + 1) / n): every integer gets 1/n of the cube
    n = width + 1
    np.testing.assert_array_equal(v, np.minimum(lo + np.floor(u * n).astype(np.int64), hi))


@FAST
@given(lo=st.floats(1e-6, 1e3), ratio=st.floats(1.0, 1e6), log=st.booleans(), u=UNIT)
def test_continuous_mapping_is_inside_bounds_and_linear_in_its_scale(lo, ratio, log, u):
    hi = lo * ratio
    u = np.asarray(u)
    v = map_unit(u, ContinuousParam(type="continuous", bounds=(lo, hi), log_scale=log))
    assert (v >= lo * (1 - 1e-12)).all() and (v <= hi * (1 + 1e-12)).all()
    if ratio > 1 + 1e-6:  # the inverse map is well conditioned (hypothesis found 9 .. 9(1 + 2^-52))
        f = (np.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)) if log else (v - lo) / (hi - lo)
        np.testing.assert_allclose(f, u, atol=1e-9)


@FAST
@given(w=st.lists(st.integers(1, 20), min_size=1, max_size=6), u=UNIT)
def test_choice_index_follows_the_cumulative_weights(w, u):
    weights = [x / sum(w) for x in w]
    weights[-1] = 1.0 - sum(weights[:-1])
    spec = ChoiceParam(type="choice", choices=list(range(len(w))), weights=weights)
    idx = choice_index(np.asarray(u), spec)
    edges = np.concatenate([[0.0], np.cumsum(weights)])
    edges[-1] = 1.0
    for x, i in zip(u, idx):
        assert edges[i] <= x + 1e-12 and (x < edges[i + 1] or i == len(w) - 1), (x, i, edges)


@FAST
@given(n=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_stage_files_round_trip_exactly(n, seed):
    from spinlock_core.storage.integrity import verify_stage_file
    from spinlock_core.storage.shards import read_stage_file, write_stage_file

    cfg = ExperimentConfig.model_validate(tiny_dict())
    rng = np.random.default_rng(seed)
    arrays = {
        "inputs/fields": rng.standard_normal((n, 3, 16, 16)).astype(np.float32),
        "metadata/ic_types": np.array([rng.choice([b"structured", b"localized"]) for _ in range(n)], dtype="S40"),
        "metadata/operator_index": np.arange(n, dtype=np.int64) + int(rng.integers(0, 1000)),
    }
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ic.h5"
        write_stage_file(path, "initial_conditions", cfg, arrays, attrs={"n": n})
        back = read_stage_file(path, "initial_conditions", cfg)
        assert set(back) == set(arrays)
        for k, a in arrays.items():
            assert back[k].dtype == a.dtype and back[k].shape == a.shape
            np.testing.assert_array_equal(back[k], a)
        assert verify_stage_file(path, "initial_conditions", cfg) == []
        first = path.read_bytes()
        write_stage_file(path, "initial_conditions", cfg, arrays, attrs={"n": n})
        assert path.read_bytes() == first  # the same inputs, the same bytes


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=12))
_YAML = st.recursive(_SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                      st.dictionaries(st.text(max_size=10), kids, max_size=4)),
                     max_leaves=20)


def _mutations():
    """The tiny config with one dotted key replaced by an arbitrary YAML value (or deleted)."""
    base = tiny_dict()
    paths: list[tuple[str, ...]] = []

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((*prefix, k))
                walk(v, (*prefix, k))

    walk(base, ())
    return st.tuples(st.sampled_from(paths), st.one_of(st.just("<delete>"), _YAML))


def _load(text: str):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "exp.yaml"
        p.write_text(text)
        return load_experiment(p)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_YAML)
def test_arbitrary_yaml_is_a_config_or_a_config_error(doc):
    try:
        _load(yaml.safe_dump(doc))
    except ConfigError as e:
        assert str(e)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(change=_mutations())
def test_a_config_with_one_arbitrary_value_is_a_config_or_a_config_error(change):
    (path, value) = change
    d = tiny_dict()
    node = d
    for k in path[:-1]:
        node = node[k]
    if value == "<delete>":
        node.pop(path[-1])
    else:
        node[path[-1]] = value
    try:
        cfg = _load(yaml.safe_dump(d))
    except ConfigError as e:
        assert e.problems, "a ConfigError lists its problems"
    else:
        assert isinstance(cfg, ExperimentConfig)


# ---- shard-size and batch independence (issue #11) -------------------------------------------

_SLOW = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _tiny_cfg(**overrides):
    d = tiny_dict(**overrides)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "tiny.yaml"
        p.write_text(yaml.safe_dump(d))
        return load_experiment(p)


_CFG = _tiny_cfg()
_N = _CFG.sampling.total_samples


def _subset():
    """A non-empty set of global operator indices in any order (a shard, a batch, a retry)."""
    return st.lists(st.integers(0, _N - 1), min_size=1, max_size=8, unique=True)


@FAST
@given(idx=_subset())
def test_ic_types_and_fields_do_not_depend_on_which_operators_come_along(idx):
    """Operator i's IC type and field are the same whichever other operators share its shard."""
    from spinlock_core.generation import ic_types_for, initial_conditions_for

    everyone = np.arange(_N)
    all_types = ic_types_for(_CFG, everyone)
    types = ic_types_for(_CFG, np.asarray(idx))
    np.testing.assert_array_equal(types, all_types[idx])
    some = initial_conditions_for(_CFG, np.asarray(idx[:3]), types[:3])
    for j, i in enumerate(idx[:3]):
        alone = initial_conditions_for(_CFG, np.asarray([i]), all_types[[i]])[0]
        assert np.array_equal(some[j], alone)


@FAST
@given(
    ops=st.lists(st.integers(0, 2**20), min_size=1, max_size=4, unique=True),
    reals=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4, unique=True),
    step=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["gaussian", "uniform", "laplace"]),
    data=st.data(),
)
def test_a_draw_depends_only_on_its_own_key(ops, reals, step, kind, data):
    """Operator o's realization r at step s draws the same numbers in any batch of operators and
    realizations, in any order, from either backend."""
    import torch

    from spinlock_core.rng import NOISE, DrawKey, unit_noise, unit_noise_keys

    keys = [DrawKey(3, o, tuple(reals), step) for o in ops]
    batch = unit_noise_keys(keys, NOISE, (2, 3, 5), kind, backend="torch")
    g = data.draw(st.integers(0, len(ops) - 1))
    r = data.draw(st.integers(0, len(reals) - 1))
    alone = unit_noise(DrawKey(3, ops[g], (reals[r],), step), NOISE, (2, 3, 5), kind)
    assert torch.equal(batch[g, r], alone[0])


@_SLOW
@given(idx=st.lists(st.integers(0, 15), min_size=1, max_size=5, unique=True), batch_size=st.integers(1, 4))
def test_a_trajectory_does_not_depend_on_its_batch(idx, batch_size):
    """simulate_operators gives operator i the same trajectory, bit for bit, in any batch size and
    next to any other operators (the one-operator-per-call path)."""
    from spinlock_core.generation import ic_types_for, initial_conditions_for, sample_parameters, simulate_operators

    cfg = _CFG.model_copy(update={"sampling": _CFG.sampling.model_copy(update={"batch_size": batch_size})})
    unit, _ = sample_parameters(cfg)
    idx = np.asarray(idx)
    ics = initial_conditions_for(cfg, idx, ic_types_for(cfg, idx))
    got = simulate_operators(cfg, idx, unit[idx], ics, keep_trajectories=True, progress=lambda d, t: None)
    i = int(idx[0])
    alone = simulate_operators(cfg, idx[:1], unit[[i]], ics[:1], keep_trajectories=True, progress=lambda d, t: None)
    assert np.array_equal(got.trajectories[0], alone.trajectories[0])
    assert got.diverged[0] == alone.diverged[0] and got.valid_states[0] == alone.valid_states[0]
