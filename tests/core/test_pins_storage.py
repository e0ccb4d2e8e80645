"""Storage and stage writers pinned key by key: every attribute, message, path and axis of
``write_parameters``, ``simulate_shard``, ``commit_stage_file``, ``shard_problems``,
``consolidate`` and ``describe``, checked against hand-written values or a re-computation in the
test (concatenations, SHA-256 digests, NaN counts, block sizes)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import spinlock_core
from spinlock_core.config import load_experiment
from spinlock_core.generation import stages as stages_mod
from spinlock_core.generation import sample_parameters, simulate_shard, write_feature_family, write_initial_conditions, write_parameters
from spinlock_core.storage.dataset import consolidate, describe, shard_problems
from spinlock_core.storage.fingerprints import stage_fingerprint
from spinlock_core.storage.integrity import _short_reason, array_digest
from spinlock_core.storage.layout import PATHS, encode_strings
from spinlock_core.storage.paths import ExperimentPaths
from spinlock_core.storage.shards import StorageError, commit_stage_file, write_stage_file
from spinlock_core.validation import CheckReport

#: the tiny config cut to 8 operators in 2 shards of 4 (the discrepancy bound relaxed so that 8
#: Sobol points pass)
SMALL = {"sampling__total_samples": 8, "dataset__storage__shard_size": 4, "sampling__validation__max_discrepancy": 1.0}

POLICIES = [["residual", "residual", "convex", "residual"], ["residual", "convex", "residual", "residual"]]
REGIMES = [["low", "medium", "high", "low"], ["high", "high", "low", "medium"]]
DIVERGED = [[False, False, False, False], [False, True, False, False]]  # operator 5 diverged
VALID = [[6, 6, 6, 6], [6, 2, 6, 6]]


def _cfg(write_config, **over):
    return load_experiment(write_config(**{**SMALL, **over}))


def _rollout_arrays(shard: int, policies=None) -> dict:
    return {
        PATHS.POLICIES: encode_strings(policies or POLICIES[shard]),
        PATHS.GRID_SIZES: np.full(4, 16, dtype=np.int32),
        PATHS.NOISE_REGIMES: encode_strings(REGIMES[shard]),
        PATHS.DIVERGED: np.asarray(DIVERGED[shard]),
        PATHS.VALID_STATES: np.asarray(VALID[shard], dtype=np.int32),
    }


def _write_rollouts(cfg, paths, shard: int, policies=None) -> None:
    start, stop = cfg.shard_range(shard)
    write_stage_file(paths.shard("rollouts", shard), "rollouts", cfg, _rollout_arrays(shard, policies),
                     attrs={"shard": shard, "start": start, "stop": stop})


def _build(cfg, home: Path, *, policies=(None, None)) -> ExperimentPaths:
    """Parameters, IC and ARCHITECTURE shards from the library; rollouts shards written by hand."""
    paths = ExperimentPaths.for_config(cfg, home)
    assert not write_parameters(cfg, paths)[0].quarantined
    for s in range(cfg.num_shards):
        write_initial_conditions(cfg, paths, s)
        write_feature_family(cfg, paths, s, "architecture")
        _write_rollouts(cfg, paths, s, policies[s])
    return paths


def _read(path: Path, name: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[name][()]


def _fail(name: str, description: str) -> CheckReport:
    return CheckReport(name, False, True, "ERROR", description)


# --------------------------------------------------------------------------------------- paths


def test_experiment_paths_every_location(write_config, tmp_path):
    cfg = _cfg(write_config)
    home = tmp_path / "h"
    p = ExperimentPaths.for_config(cfg, home)
    root = home.resolve() / "data" / "tiny"
    assert p.data == home.resolve() / "data"
    assert p.root == root
    assert p.parameters == root / "parameters.h5"
    assert p.shard("rollouts", 3) == root / "shards" / "rollouts" / "shard-0003.h5"
    assert p.quarantine_root == root / "quarantine"
    assert p.quarantined_shard("features_temporal", 12) == root / "quarantine" / "features_temporal" / "shard-0012.h5"
    assert p.quarantined_parameters == root / "quarantine" / "parameters.h5"
    assert p.dataset == home.resolve() / "data" / "datasets" / "tiny.h5"
    assert p.quarantined_dataset == root / "quarantine" / "dataset" / "tiny.h5"
    assert p.dashboards == root / "dashboards"
    assert p.feature_matrix == root / "tokenizer" / "feature_matrix"
    assert p.tokenizer == root / "tokenizer" / "checkpoint"
    assert p.tokens(3) == root / "tokens" / "shard-0003.h5"
    assert p.tokens(1234) == root / "tokens" / "shard-1234.h5"


# ------------------------------------------------------------------------------ _short_reason


def test_short_reason_first_line_type_name_and_cap():
    assert _short_reason(OSError("  can't read chunk\nsecond line\n")) == "can't read chunk"
    assert _short_reason(OSError()) == "OSError"
    assert _short_reason(KeyError("")) == "''"  # str(KeyError('')) is "''": not empty
    assert _short_reason(ValueError("   ")) == "ValueError"
    assert _short_reason(RuntimeError("x" * 250)) == "x" * 200


# ---------------------------------------------------------------------------- commit_stage_file


def test_commit_stage_file_passing_write_clears_quarantine(write_config, tmp_path):
    cfg = _cfg(write_config)
    path, quarantine = tmp_path / "a" / "s.h5", tmp_path / "q" / "s.h5"
    quarantine.parent.mkdir(parents=True)
    quarantine.write_bytes(b"old quarantined write")
    values = np.arange(4 * 42, dtype=np.float32).reshape(4, 42)
    checks = [CheckReport("nan_inf", True, True, "ERROR", "fine"),
              CheckReport("value_ranges", False, False, "WARN", "out of range, not blocking")]
    t0 = time.perf_counter()
    res = commit_stage_file(path, quarantine, "features_initial", cfg, {PATHS.INITIAL: values}, checks,
                            attrs={"shard": 7, "family": "initial"}, dataset_attrs={PATHS.INITIAL: {"version": "9.9"}})
    elapsed = time.perf_counter() - t0
    assert res.quarantined is False and res.failed == []
    assert res.write.path == path and res.write.bytes == path.stat().st_size and 0 < res.write.seconds <= elapsed
    assert not quarantine.exists()
    with h5py.File(path, "r") as f:
        assert f.attrs["shard"] == 7 and f.attrs["family"] == "initial" and f.attrs["stage"] == "features_initial"
        assert "quarantined_by" not in f.attrs
        assert f[PATHS.INITIAL].attrs["version"] == "9.9"
        np.testing.assert_array_equal(f[PATHS.INITIAL][()], values)
    # nothing to clear the second time: no error
    res = commit_stage_file(path, quarantine, "features_initial", cfg, {PATHS.INITIAL: values}, checks)
    assert res.write.path == path and not res.quarantined


def test_commit_stage_file_failed_blocking_checks_go_to_quarantine(write_config, tmp_path, caplog):
    cfg = _cfg(write_config)
    path, quarantine = tmp_path / "a" / "s.h5", tmp_path / "q" / "s.h5"
    values = np.ones((4, 42), dtype=np.float32)
    ok = {PATHS.INITIAL: values}
    commit_stage_file(path, quarantine, "features_initial", cfg, ok, [])
    assert path.exists()
    checks = [_fail("nan_inf", "NaN in column 3"), CheckReport("constant_columns", False, False, "ERROR", "constant"),
              _fail("shard_layout", "bad shape")]
    with caplog.at_level(logging.WARNING, logger="spinlock_core.storage.shards"):
        res = commit_stage_file(path, quarantine, "features_initial", cfg, ok, checks, attrs={"shard": 2},
                                dataset_attrs={PATHS.INITIAL: {"version": "1.0"}})
    assert res.quarantined is True and res.failed == ["nan_inf", "shard_layout"]
    assert res.write.path == quarantine and res.write.bytes == quarantine.stat().st_size and res.write.seconds >= 0
    assert not path.exists()
    with h5py.File(quarantine, "r") as f:
        assert json.loads(f.attrs["quarantined_by"]) == [
            {"check": "nan_inf", "description": "NaN in column 3"},
            {"check": "shard_layout", "description": "bad shape"},
        ]
        assert f.attrs["shard"] == 2 and f.attrs["stage"] == "features_initial"
        assert f[PATHS.INITIAL].attrs["version"] == "1.0"
        np.testing.assert_array_equal(f[PATHS.INITIAL][()], values)
    assert caplog.messages == [f"{path}: blocking check(s) ['nan_inf', 'shard_layout'] failed; written to quarantine {quarantine}"]
    # quarantined again with nothing at the reader path, and without attrs: no error
    res = commit_stage_file(path, quarantine, "features_initial", cfg, ok, checks[:1])
    assert res.quarantined and res.failed == ["nan_inf"]
    with h5py.File(quarantine, "r") as f:
        assert "shard" not in f.attrs and json.loads(f.attrs["quarantined_by"])[0]["check"] == "nan_inf"


# ------------------------------------------------------------------------------ write_parameters


_SAMPLING_SCALARS = ["n", "dim", "discrepancy", "discrepancy_n", "discrepancy_iid", "discrepancy_ratio",
                     "max_abs_correlation", "mean_abs_correlation", "num_strata", "min_stratum_count", "block_size"]


def test_write_parameters_file_attributes(write_config, tmp_path):
    cfg = _cfg(write_config)
    paths = ExperimentPaths.for_config(cfg, tmp_path)
    t0 = time.perf_counter()
    res, unit, q = write_parameters(cfg, paths)
    elapsed = time.perf_counter() - t0
    ref_unit, ref_q = sample_parameters(cfg)
    np.testing.assert_array_equal(unit, ref_unit)
    assert q.as_dict() == ref_q.as_dict()
    assert not res.quarantined and res.write.path == paths.parameters and 0 < res.write.seconds <= res.seconds_total <= elapsed
    assert [c.name for c in res.checks] == ["sobol_discrepancy", "sobol_correlation", "stratum_coverage"]
    d = ref_q.as_dict()
    with h5py.File(paths.parameters, "r") as f:
        sampling = sorted(k for k in f.attrs if k.startswith("sampling_"))
        assert sampling == sorted([f"sampling_{k}" for k in _SAMPLING_SCALARS] + ["sampling_metrics"])
        for k in _SAMPLING_SCALARS:
            assert f.attrs[f"sampling_{k}"] == d[k], k
        assert f.attrs["sampling_n"] == 8 and f.attrs["sampling_dim"] == 11
        assert json.loads(f.attrs["sampling_metrics"]) == json.loads(json.dumps(d))
        assert len(json.loads(f.attrs["sampling_metrics"])["blocks"]) == 2
        assert json.loads(f.attrs["parameter_names"]) == [
            "num_layers", "base_channels", "kernel_size", "activation", "dropout_rate", "noise_scale",
            "spatial_correlation", "noise_schedule", "grid_size", "update_policy", "dt"]  # the YAML's order
        assert f.attrs["stage"] == "parameters"
        assert [n.decode() if isinstance(n, bytes) else n for n in f[PATHS.PARAMS].attrs["feature_names"]] == \
            cfg.parameter_space.names
        np.testing.assert_array_equal(f[PATHS.PARAMS][()], ref_unit.astype(np.float32))


def test_write_parameters_quarantine_when_discrepancy_fails(write_config, tmp_path):
    cfg = _cfg(write_config, sampling__validation__max_discrepancy=0.5)  # 8 points: CD^2 0.69
    paths = ExperimentPaths.for_config(cfg, tmp_path)
    res, _, q = write_parameters(cfg, paths)
    assert res.quarantined and res.write.path == paths.quarantined_parameters and not paths.parameters.exists()
    assert [c.name for c in res.checks if c.blocks] == ["sobol_discrepancy"]
    with h5py.File(paths.quarantined_parameters, "r") as f:
        assert json.loads(f.attrs["quarantined_by"])[0]["check"] == "sobol_discrepancy"
        assert json.loads(f.attrs["sampling_metrics"])["discrepancy"] == q.discrepancy > 0.5


# ------------------------------------------------------------------------------- simulate_shard


#: one realisation of two states: TEMPORAL's state features cost about 30 ms per field on CPU
SIM = {"simulation__num_realizations": 1, "simulation__num_timesteps": 2}


class _FakeSim:
    device = "fake:3"

    def __init__(self, arrays):
        self.arrays = arrays

    def rollout_arrays(self):
        return self.arrays


def _fake_simulate(calls: list, arrays: dict, traj: torch.Tensor):
    def fake(cfg, idx, unit, ics, *, device=None, progress=None, consumers=()):
        calls.append({"cfg": cfg, "idx": idx, "unit": unit, "ics": ics, "device": device, "progress": progress,
                      "consumers": list(consumers)})
        for c in consumers:
            c(idx, traj, [None] * len(idx), [])
        return _FakeSim(arrays)

    return fake


def _sim_shard(write_config, tmp_path, shard: int, seed: int):
    """The small simulation config with parameters and shard ``shard``'s ICs on disk, and a random
    trajectory ``[4, 1, 2, 3, 16, 16]`` for the stand-in simulator."""
    cfg = _cfg(write_config, **SIM)
    paths = ExperimentPaths.for_config(cfg, tmp_path)
    write_parameters(cfg, paths)
    write_initial_conditions(cfg, paths, shard)
    return cfg, paths, torch.randn(4, 1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_simulate_shard_writes_rollouts_and_family_files_with_their_attrs(write_config, tmp_path, monkeypatch):
    from spinlock_core.features import temporal as _temporal
    from spinlock_core.features.extract import RolloutFeatures
    from spinlock_core.features.families import feature_names

    cfg, paths, traj = _sim_shard(write_config, tmp_path, 1, 0)
    calls: list = []
    monkeypatch.setattr(stages_mod, "simulate_operators", _fake_simulate(calls, _rollout_arrays(1), traj))
    seen = []
    mine = lambda i, t, o, s: seen.append(i.tolist())  # noqa: E731
    progress = object()
    t0 = time.perf_counter()
    res = simulate_shard(cfg, paths, 1, families={"temporal"}, device="meta-device", progress=progress, consumers=(mine,))
    elapsed = time.perf_counter() - t0

    (call,) = calls
    assert call["cfg"] is cfg and call["device"] == "meta-device" and call["progress"] is progress
    np.testing.assert_array_equal(call["idx"], np.arange(4, 8))
    np.testing.assert_array_equal(call["unit"], _read(paths.parameters, PATHS.PARAMS)[4:8])
    np.testing.assert_array_equal(call["ics"], _read(paths.shard("initial_conditions", 1), PATHS.INPUT_FIELDS))
    assert call["consumers"][0] is mine and len(call["consumers"]) == 2
    assert isinstance(call["consumers"][1], RolloutFeatures) and call["consumers"][1].start == 4
    assert seen == [[4, 5, 6, 7]]

    b, m, t = traj.shape[:3]
    want = _temporal.state_features(traj.reshape(b * m * t, 3, 16, 16)).reshape(b, m, t, -1).mean(1).numpy()
    assert want.shape == (4, 2, 63)
    ro, tp = paths.shard("rollouts", 1), paths.shard("features_temporal", 1)
    assert sorted(res.stages) == ["features_temporal", "rollouts"]
    assert res.stages["rollouts"].write.path == ro and res.stages["features_temporal"].write.path == tp
    assert [c.name for c in res.stages["rollouts"].checks] == ["policy_balance", "divergence", "shard_layout"]
    assert [c.name for c in res.stages["features_temporal"].checks][0] == "nan_inf"
    assert not any(r.quarantined for r in res.stages.values())
    assert 0 < res.seconds_total <= elapsed and all(r.seconds_total == res.seconds_total for r in res.stages.values())
    assert res.simulation.device == "fake:3" and isinstance(res.simulation, _FakeSim)
    assert sorted(res.feature_seconds) == ["sensitivity", "state_features", "summary", "temporal"]
    np.testing.assert_allclose(res.features["features_temporal"][PATHS.TEMPORAL], want, rtol=1e-6)
    for p in (ro, tp):
        with h5py.File(p, "r") as f:
            assert (f.attrs["shard"], f.attrs["start"], f.attrs["stop"]) == (1, 4, 8), p
            assert f.attrs["device"] == "fake:3", p
    with h5py.File(ro, "r") as f:
        assert "family" not in f.attrs
        assert f[PATHS.POLICIES][()].astype(str).tolist() == POLICIES[1]
        assert f[PATHS.DIVERGED][()].tolist() == DIVERGED[1]
    with h5py.File(tp, "r") as f:
        assert f.attrs["family"] == "temporal" and f.attrs["version"] == "1.1"
        assert list(f[PATHS.TEMPORAL].attrs["feature_names"]) == list(feature_names("temporal", cfg)[PATHS.TEMPORAL])
        np.testing.assert_allclose(f[PATHS.TEMPORAL][()], want, rtol=1e-6)


def test_simulate_shard_gates_each_file_and_can_skip_the_rollout_file(write_config, tmp_path, monkeypatch):
    cfg, paths, traj = _sim_shard(write_config, tmp_path, 0, 1)
    bad = _rollout_arrays(0, ["residual", "bogus", "residual", "convex"])  # an unknown policy: blocking
    calls: list = []
    monkeypatch.setattr(stages_mod, "simulate_operators", _fake_simulate(calls, bad, traj))
    res = simulate_shard(cfg, paths, 0, families={"temporal"})
    assert res.stages["rollouts"].quarantined and not res.stages["features_temporal"].quarantined
    assert not paths.shard("rollouts", 0).exists() and paths.quarantined_shard("rollouts", 0).exists()
    assert paths.shard("features_temporal", 0).exists()
    with h5py.File(paths.quarantined_shard("rollouts", 0), "r") as f:
        assert f.attrs["device"] == "fake:3" and (f.attrs["start"], f.attrs["stop"]) == (0, 4)
        assert [c["check"] for c in json.loads(f.attrs["quarantined_by"])] == ["policy_balance"]

    # no rollout file, no families: nothing written, no collector
    calls.clear()
    shutil.rmtree(paths.root / "shards" / "features_temporal")
    res = simulate_shard(cfg, paths, 0, families=set(), write_rollout_file=False)
    assert res.stages == {} and res.features == {} and res.feature_seconds == {}
    assert calls[0]["consumers"] == [] and calls[0]["device"] is None and calls[0]["progress"] is None
    assert not paths.shard("rollouts", 0).exists() and not paths.shard("features_temporal", 0).exists()


# ------------------------------------------------------------------------------- shard_problems


def test_shard_problems_names_every_missing_quarantined_and_stale_file(write_config, tmp_path):
    cfg = _cfg(write_config)
    paths = ExperimentPaths.for_config(cfg, tmp_path)
    stages = ["initial_conditions", "rollouts", "features_architecture"]
    assert shard_problems(cfg, paths, stages) == [
        "parameters: missing: materialize parameters",
        "shard-0000 of initial_conditions: missing (materialize partition shard-0000)",
        "shard-0001 of initial_conditions: missing (materialize partition shard-0001)",
        "shard-0000 of rollouts: missing (materialize partition shard-0000)",
        "shard-0001 of rollouts: missing (materialize partition shard-0001)",
        "shard-0000 of features/architecture: missing (materialize partition shard-0000)",
        "shard-0001 of features/architecture: missing (materialize partition shard-0001)",
    ]
    with pytest.raises(ValueError, match=r"^unknown sharded stage 'parameters'; known: \('initial_conditions', "
                                         r"'rollouts', 'features_summary', 'features_temporal', "
                                         r"'features_architecture', 'features_initial'\)$"):
        shard_problems(cfg, paths, ["parameters"])

    paths = _build(cfg, tmp_path)
    assert shard_problems(cfg, paths, stages) == []
    assert shard_problems(cfg, paths, stages, verify_data=False) == []
    unit = _read(paths.parameters, PATHS.PARAMS)
    # quarantined parameters and rollouts shard 0; IC shard 1 holds shard 0's operators
    paths.parameters.unlink()
    commit_stage_file(paths.parameters, paths.quarantined_parameters, "parameters", cfg, {PATHS.PARAMS: unit},
                      [_fail("sobol_discrepancy", "too clumpy")])
    commit_stage_file(paths.shard("rollouts", 0), paths.quarantined_shard("rollouts", 0), "rollouts", cfg,
                      _rollout_arrays(0), [_fail("policy_balance", "skewed"), _fail("divergence", "all gone")])
    ic1 = paths.shard("initial_conditions", 1)
    shutil.copy(paths.shard("initial_conditions", 0), ic1)
    # architecture shard 1 edited through h5py: attributes intact, data does not match its digest
    a1 = paths.shard("features_architecture", 1)
    with h5py.File(a1, "r+") as f:
        f[PATHS.ARCHITECTURE][0, 0] += 1.0
    want = [
        "parameters: quarantined: sobol_discrepancy failed (too clumpy)",
        f"shard-0001 of initial_conditions ({ic1}): holds operators [0, 4) (n=4), expected [4, 8)",
        "shard-0000 of rollouts: quarantined: policy_balance failed (skewed); divergence failed (all gone)",
    ]
    assert shard_problems(cfg, paths, stages, verify_data=False) == want
    full = shard_problems(cfg, paths, stages)
    assert full[:3] == want and len(full) == 4
    assert full[3].startswith(f"shard-0001 of features/architecture ({a1}): {PATHS.ARCHITECTURE}: content does not "
                              "match its SHA-256 digest (stored ")

    # a parameters file from another stage: its own problems, joined, after the file name
    shutil.copy(paths.shard("features_architecture", 0), paths.parameters)
    got = shard_problems(cfg, paths, ["features_architecture"], verify_data=False)
    assert got[0] == (f"parameters ({paths.parameters}): stage attribute 'features_architecture' != 'parameters'; "
                      "made from a different config or code version (stage_fingerprint mismatch: the config sections "
                      "this stage or its inputs read, or a stage version, changed): re-materialize it; "
                      f"missing dataset {PATHS.PARAMS}")
    assert got[1:] == []  # the architecture shards themselves are checked by attributes only here


# ---------------------------------------------------------------------------------- consolidate


STAGES = ["initial_conditions", "rollouts", "features_architecture"]


def test_consolidate_datasets_attributes_and_digests(write_config, tmp_path, caplog):
    cfg = _cfg(write_config)
    paths = _build(cfg, tmp_path)
    paths.quarantined_dataset.parent.mkdir(parents=True)
    paths.quarantined_dataset.write_bytes(b"an earlier quarantined dataset")
    with h5py.File(paths.shard("features_architecture", 1), "r+") as f:  # attributes come from the first shard
        f[PATHS.ARCHITECTURE].attrs["version"] = "from shard 1"
        f[PATHS.ARCHITECTURE].attrs["note"] = "from shard 1"
    t0 = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="spinlock_core.storage.dataset"):
        res = consolidate(cfg, paths, STAGES, extra_attrs={"run_id": "r-42", "answer": 42})
    elapsed = time.perf_counter() - t0
    d = paths.dataset
    assert res.write.path == d and res.write.bytes == d.stat().st_size and 0 < res.write.seconds <= elapsed
    assert res.quarantined is False and not paths.quarantined_dataset.exists()
    assert [c.name for c in res.checks] == ["ic_balance", "ic_family_balance", "policy_balance", "divergence"]
    assert [c.passed for c in res.checks] == [True, True, True, False]
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith(f"consolidated 8 operators from {STAGES} into {d} in ")
    assert caplog.messages[0].endswith("s")

    shards = {s: [paths.shard(s, i) for i in range(2)] for s in STAGES}
    expected = {PATHS.PARAMS: _read(paths.parameters, PATHS.PARAMS)}
    for s in STAGES:
        with h5py.File(shards[s][0], "r") as f:
            names = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for n in names:
            expected[n] = np.concatenate([_read(p, n) for p in shards[s]])
    assert expected[PATHS.POLICIES].astype(str).tolist() == POLICIES[0] + POLICIES[1]
    np.testing.assert_array_equal(expected[PATHS.OPERATOR_INDEX], np.arange(8))

    with h5py.File(d, "r") as f:
        got = []
        f.visititems(lambda n, o: got.append(n) if isinstance(o, h5py.Dataset) else None)
        assert sorted(got) == sorted(expected)
        for n, want in expected.items():
            assert f[n].dtype == want.dtype and f[n].shape == want.shape, n
            np.testing.assert_array_equal(f[n][()], want, err_msg=n)
        # compressible datasets: gzip + shuffle + fletcher32 in chunks of chunk_size (4) operators
        for n in (PATHS.PARAMS, PATHS.INPUT_FIELDS, PATHS.ARCHITECTURE):
            assert f[n].compression == "gzip" and f[n].compression_opts == 4 and f[n].shuffle and f[n].fletcher32, n
            assert f[n].chunks == (4, *f[n].shape[1:]), n
        for n in (PATHS.IC_TYPES, PATHS.OPERATOR_INDEX, PATHS.POLICIES, PATHS.DIVERGED, PATHS.VALID_STATES):
            assert f[n].chunks is None and f[n].compression is None, n
        # dataset attributes carried over from the shards and the parameters file
        assert list(f[PATHS.PARAMS].attrs["feature_names"]) == cfg.parameter_space.names
        assert list(f[PATHS.ARCHITECTURE].attrs["feature_names"]) == cfg.parameter_space.names
        assert f[PATHS.ARCHITECTURE].attrs["version"] == "1.0" and "note" not in f[PATHS.ARCHITECTURE].attrs

        a = f.attrs
        with h5py.File(paths.parameters, "r") as pf:
            copied = {k: pf.attrs[k] for k in pf.attrs if k.startswith("sampling_")}
            noise = pf.attrs["noise_generator"]
            pnames = pf.attrs["parameter_names"]
        assert sorted(a) == sorted([*copied, "parameter_names", "noise_generator", "sha256", "layout_version", "stage",
                                    "experiment", "config", "config_fingerprint", "stage_fingerprint",
                                    "code_version", "n", "stages", "checks", "run_id", "answer"])
        for k, v in copied.items():
            assert a[k] == v, k
        assert a["noise_generator"] == noise and a["parameter_names"] == pnames
        assert a["layout_version"] == "1.1" and a["stage"] == "dataset" and a["experiment"] == "tiny"
        assert a["config"] == cfg.model_dump_json()
        assert a["config_fingerprint"] == hashlib.sha256(
            cfg.model_dump_json(exclude={"orchestration"}).encode()).hexdigest()[:16]
        assert a["stage_fingerprint"] == stage_fingerprint(cfg, "dataset", upstream=("parameters", *STAGES))
        assert a["stage_fingerprint"] != stage_fingerprint(cfg, "dataset", upstream=("parameters",))
        assert a["code_version"] == spinlock_core.__version__
        assert a["n"] == 8 and json.loads(a["stages"]) == STAGES
        assert a["run_id"] == "r-42" and a["answer"] == 42
        checks = json.loads(a["checks"])
        assert [c["name"] for c in checks] == ["ic_balance", "ic_family_balance", "policy_balance", "divergence"]
        assert checks == [c.as_dict() for c in res.checks]
        div = checks[3]
        assert div["passed"] is False and div["blocking"] is False and div["severity"] == "WARN"
        assert div["values"] == {"diverged": 1, "n": 8, "diverged_operators": "[5]"}
        assert checks[2]["values"]["policy/convex"] == 0.25 and checks[2]["values"]["policy/residual"] == 0.75
        assert "quarantined_by" not in a
        # the digest attribute: sorted JSON of every dataset's SHA-256 over the concatenated arrays
        assert a["sha256"] == json.dumps({n: array_digest(w) for n, w in expected.items()}, sort_keys=True)


def test_consolidate_quarantines_on_a_failed_blocking_dataset_check(write_config, tmp_path, caplog):
    cfg = _cfg(write_config)
    # every shard alone is within tolerance (3 of 4 counts), the dataset is not: 2 of 8 residual
    skew = ["convex", "convex", "convex", "residual"]
    paths = _build(cfg, tmp_path, policies=(skew, skew))
    paths.dataset.parent.mkdir(parents=True)
    paths.dataset.write_bytes(b"the previous dataset")
    with caplog.at_level(logging.WARNING, logger="spinlock_core.storage.dataset"):
        res = consolidate(cfg, paths, STAGES)
    q = paths.quarantined_dataset
    assert res.quarantined is True and res.write.path == q and res.write.bytes == q.stat().st_size
    assert not paths.dataset.exists()
    assert [c.name for c in res.checks if c.blocks] == ["policy_balance"]
    assert caplog.messages == [f"dataset checks ['policy_balance'] failed: {paths.dataset} quarantined at {q}"]
    with h5py.File(q, "r") as f:
        desc = [c.description for c in res.checks if c.name == "policy_balance"][0]
        assert desc.startswith("policy balance: max deviation 0.5000 (tolerance ")
        assert json.loads(f.attrs["quarantined_by"]) == [{"check": "policy_balance", "description": desc}]
        assert [c["passed"] for c in json.loads(f.attrs["checks"])] == [True, True, False, False]
        assert f.attrs["experiment"] == "tiny" and f.attrs["stage"] == "dataset"
        assert f[PATHS.POLICIES][()].astype(str).tolist() == skew + skew
    # quarantined again, with no dataset file to clear this time
    assert consolidate(cfg, paths, STAGES).quarantined and q.exists() and not paths.dataset.exists()
    # fixed shards: written where readers look, the quarantined file cleared
    for s in range(2):
        _write_rollouts(cfg, paths, s)
    res = consolidate(cfg, paths, STAGES)
    assert not res.quarantined and paths.dataset.exists() and not q.exists()


def test_consolidate_without_rollouts_runs_no_checks_and_stringifies_check_values(write_config, tmp_path, monkeypatch):
    import spinlock_core.validation as validation

    cfg = _cfg(write_config)
    paths = _build(cfg, tmp_path)
    res = consolidate(cfg, paths, ["initial_conditions", "features_architecture"])
    assert res.checks == [] and not res.quarantined
    with h5py.File(paths.dataset, "r") as f:
        assert f.attrs["checks"] == "[]" and PATHS.POLICIES not in f
        assert json.loads(f.attrs["stages"]) == ["initial_conditions", "features_architecture"]
    res = consolidate(cfg, paths, ["rollouts"])
    assert res.checks == []

    # check values that JSON cannot encode (numpy scalars) are written as strings
    seen = []

    def fake_checks(c, ic, policies, diverged):
        seen.append((ic.astype(str).tolist(), policies.astype(str).tolist(), diverged.tolist()))
        return [CheckReport("divergence", False, False, "WARN", "numpy values",
                            values={"diverged": np.int64(1), "share": np.float32(0.5)}, thresholds={"diverged": 0})]

    monkeypatch.setattr(validation, "dataset_checks", fake_checks)
    res = consolidate(cfg, paths, STAGES)
    assert seen[0][0] == _read(paths.dataset, PATHS.IC_TYPES).astype(str).tolist()
    assert seen[0][1:] == (POLICIES[0] + POLICIES[1], DIVERGED[0] + DIVERGED[1])
    with h5py.File(paths.dataset, "r") as f:
        assert json.loads(f.attrs["checks"]) == [{
            "name": "divergence", "passed": False, "blocking": False, "severity": "WARN", "description": "numpy values",
            "values": {"diverged": "1", "share": "0.5"}, "thresholds": {"diverged": 0}}]


def test_consolidate_refuses_missing_shards_and_bad_digests(write_config, tmp_path):
    cfg = _cfg(write_config)
    paths = _build(cfg, tmp_path)
    paths.shard("rollouts", 1).unlink()
    paths.shard("features_architecture", 0).unlink()
    with pytest.raises(StorageError) as e:
        consolidate(cfg, paths, STAGES)
    assert str(e.value) == (f"cannot consolidate {paths.dataset}: 2 problem(s):\n"
                            "  shard-0001 of rollouts: missing (materialize partition shard-0001)\n"
                            "  shard-0000 of features/architecture: missing (materialize partition shard-0000)")
    assert not paths.dataset.exists()
    _write_rollouts(cfg, paths, 1)
    write_feature_family(cfg, paths, 0, "architecture")

    # a dataset whose digest is not recorded
    with h5py.File(paths.parameters, "r+") as f:
        digests = json.loads(f.attrs["sha256"])
        f.attrs["sha256"] = json.dumps({})
    with pytest.raises(StorageError) as e:
        consolidate(cfg, paths, STAGES)
    assert str(e.value) == (f"cannot consolidate {paths.dataset}: {paths.parameters}: {PATHS.PARAMS} has no SHA-256 "
                            "digest recorded; re-materialize it")
    with h5py.File(paths.parameters, "r+") as f:
        f.attrs["sha256"] = json.dumps(digests)
    # a changed value in a contiguous rollouts dataset (read for the dataset checks)
    p = paths.shard("rollouts", 1)
    with h5py.File(p, "r+") as f:
        f[PATHS.DIVERGED][0] = True
    with pytest.raises(StorageError) as e:
        consolidate(cfg, paths, STAGES)
    assert str(e.value) == (f"cannot consolidate {paths.dataset}: {p}: {PATHS.DIVERGED} does not match its SHA-256 "
                            "digest (corrupt data); re-materialize it")
    _write_rollouts(cfg, paths, 1)
    # a damaged compressed chunk: the reason is the first line of the HDF5 error
    p = paths.shard("initial_conditions", 0)
    with h5py.File(p, "r") as f:
        offset = f[PATHS.INPUT_FIELDS].id.get_chunk_info(0).byte_offset
    with open(p, "r+b") as fh:
        fh.seek(offset + 50)
        raw = fh.read(4)
        fh.seek(offset + 50)
        fh.write(bytes(b ^ 0xFF for b in raw))
    with h5py.File(p, "r") as f:
        with pytest.raises(OSError) as err:
            f[PATHS.INPUT_FIELDS][()]
    reason = str(err.value).strip().splitlines()[0]
    assert reason
    with pytest.raises(StorageError) as e:
        consolidate(cfg, paths, STAGES)
    assert str(e.value) == (f"cannot consolidate {paths.dataset}: {p}: {PATHS.INPUT_FIELDS} cannot be read, corrupt "
                            f"data ({reason}); re-materialize it")
    assert not paths.dataset.exists() and not paths.quarantined_dataset.exists()


# ------------------------------------------------------------------------------------- describe


def _describe_file(path: Path) -> dict:
    """A hand-made Spinlock file: every kind of attribute value, NaN at known places."""
    feats = np.zeros((5, 3), dtype=np.float32)
    feats[[0, 2, 3], 1] = np.nan  # feature "b": 3
    feats[4, 2] = np.nan  # feature "c": 1
    traj = np.zeros((2, 3, 4), dtype=np.float64)
    traj[0, :, 3] = np.nan  # f3: 3
    traj[1, 2, 0] = np.nan  # f0: 1
    with h5py.File(path, "w") as f:
        f.attrs["layout_version"] = "1.1"
        f.attrs["raw"] = np.bytes_(b"bytes \xff")
        f.attrs["long"] = "x" * 250
        f.attrs["short"] = "y" * 200
        f.attrs["small"] = np.arange(16)
        f.attrs["big"] = np.zeros((17, 2), dtype=np.float32)
        f.attrs["num"] = np.float64(2.5)
        ds = f.create_dataset("features/agg", data=feats, chunks=(2, 3), compression="gzip")
        ds.attrs["feature_names"] = np.array([b"a", b"b", b"c"])
        ds.attrs["version"] = "1.0"
        t = f.create_dataset("features/traj", data=traj)
        t.attrs["feature_names"] = ["only", "three", "names"]
        u = f.create_dataset("features/named", data=np.full((2, 2), np.nan, dtype=np.float32))
        u.attrs["feature_names"] = ["left", "right"]
        f.create_dataset("features/ints", data=np.zeros((2, 2), dtype=np.int32))
        f.create_dataset("features/flat", data=np.full(3, np.nan, dtype=np.float32))
        f.create_dataset("metadata/diverged", data=np.full((2, 2), np.nan))
    return {"feats": feats, "traj": traj}


def test_describe_attributes_datasets_and_nan_counts(tmp_path):
    path = tmp_path / "d.h5"
    _describe_file(path)
    info = describe(path)
    assert sorted(info) == ["attrs", "datasets", "path"] and info["path"] == str(path)
    assert info["attrs"] == {
        "layout_version": "1.1", "raw": "bytes \ufffd", "long": "x" * 200 + "... (250 chars)", "short": "y" * 200,
        "small": list(range(16)), "big": "array[17, 2] float32", "num": 2.5,
    }
    assert isinstance(info["attrs"]["num"], float) and isinstance(info["attrs"]["small"][0], int)
    ds = {d["path"]: d for d in info["datasets"]}
    assert [d["path"] for d in info["datasets"]] == [
        "features/agg", "features/flat", "features/ints", "features/named", "features/traj", "metadata/diverged"]
    assert ds["features/agg"] == {
        "path": "features/agg", "shape": [5, 3], "dtype": "float32", "compression": "gzip", "chunks": [2, 3],
        "attrs": {"version": "1.0"}, "nan_total": 4, "nan_per_feature": {"b": 3, "c": 1},
    }
    # three names for four features: numbered instead
    assert ds["features/traj"] == {
        "path": "features/traj", "shape": [2, 3, 4], "dtype": "float64", "compression": None, "chunks": None,
        "attrs": {}, "nan_total": 4, "nan_per_feature": {"f0": 1, "f3": 3},
    }
    assert ds["features/named"]["nan_per_feature"] == {"left": 2, "right": 2} and ds["features/named"]["nan_total"] == 4
    for name in ("features/ints", "features/flat", "metadata/diverged"):  # integer, 1-D, not a feature
        assert "nan_total" not in ds[name] and "nan_per_feature" not in ds[name], name
    assert ds["metadata/diverged"]["shape"] == [2, 2] and ds["features/flat"]["dtype"] == "float32"

    quiet = describe(path, nan_counts=False)
    assert all("nan_total" not in d for d in quiet["datasets"])
    assert quiet["attrs"] == info["attrs"]


def test_describe_nan_counts_without_nan_and_with_unnamed_features(tmp_path):
    path = tmp_path / "d.h5"
    x = np.zeros((3, 2, 5), dtype=np.float32)
    x[1, 1, 4] = np.nan
    with h5py.File(path, "w") as f:
        f.attrs["layout_version"] = "1.1"
        f.create_dataset("features/clean", data=np.zeros((4, 2), dtype=np.float16))
        f.create_dataset("features/x", data=x)
    ds = {d["path"]: d for d in describe(path)["datasets"]}
    assert ds["features/clean"]["nan_total"] == 0 and ds["features/clean"]["nan_per_feature"] == {}
    assert ds["features/x"]["nan_total"] == 1 and ds["features/x"]["nan_per_feature"] == {"f4": 1}


def test_describe_counts_nothing_in_a_feature_dataset_without_columns(tmp_path):
    """``[N, 0]`` (a family with every column removed): described with zero NaNs, not numpy's
    reshape error."""
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layout_version"] = "1.1"
        f.create_dataset("features/none", data=np.zeros((3, 0), dtype=np.float32))
    (d,) = describe(path)["datasets"]
    assert d["shape"] == [3, 0] and d["nan_total"] == 0 and d["nan_per_feature"] == {}


def test_describe_reads_feature_datasets_in_blocks_of_64_mib(tmp_path, monkeypatch):
    """Rows of 13 MiB: 64 MiB // 13 MiB = 4 rows per read."""
    path = tmp_path / "big.h5"
    rows = 13 * 2**17  # float64: 13 MiB per operator
    with h5py.File(path, "w") as f:
        f.attrs["layout_version"] = "1.1"
        f.create_dataset("features/big", shape=(5, rows, 1), dtype="f8", fillvalue=np.nan)  # never written: NaN
        f.create_dataset("features/small", data=np.zeros((6, 2, 3), dtype=np.float32))
    reads = []
    orig = h5py.Dataset.__getitem__

    def spy(self, key):
        reads.append((self.name, key))
        return orig(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    info = describe(path)
    assert reads == [("/features/big", slice(0, 4)), ("/features/big", slice(4, 8)), ("/features/small", slice(0, 64 * 2**20 // 24))]  # 24-byte rows
    big = info["datasets"][0]
    assert big["nan_total"] == 5 * rows and big["nan_per_feature"] == {"f0": 5 * rows}


def test_describe_refuses_foreign_newer_and_damaged_files(tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("features/a", data=np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(StorageError, match=rf"^{p}: not a Spinlock file \(no layout_version attribute\)$"):
        describe(p)
    with h5py.File(p, "r+") as f:
        f.attrs["layout_version"] = "9.0"
    with pytest.raises(StorageError, match=rf"^{p}: written with layout 9\.0, newer than this code reads \(1\.1\): "
                                           "upgrade spinlock to read it$"):
        describe(p)
    with h5py.File(p, "r+") as f:
        f.attrs["layout_version"] = "1.0"  # older: described as it is
    info = describe(p)
    assert info["attrs"]["layout_version"] == "1.0" and info["datasets"][0]["nan_total"] == 0

    # a damaged chunk of a feature dataset
    q = tmp_path / "bad.h5"
    with h5py.File(q, "w") as f:
        f.attrs["layout_version"] = "1.1"
        f.create_dataset("features/a", data=np.arange(64, dtype=np.float32).reshape(16, 4), chunks=(16, 4),
                         fletcher32=True)
        offset = f["features/a"].id.get_chunk_info(0).byte_offset
    with open(q, "r+b") as fh:
        fh.seek(offset + 8)
        fh.write(b"\xff\xff\xff\xff")
    with pytest.raises(StorageError, match=rf"^{q}: cannot read features/a \(.+\)$"):
        describe(q)
    assert "nan_total" not in describe(q, nan_counts=False)["datasets"][0]
