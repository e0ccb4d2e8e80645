"""Blocking checks gate what is written, partitioned checks keep per-shard history, and `dataset`
refuses to consolidate a missing, quarantined or stale shard (real sqlite instance, real HDF5)."""

from __future__ import annotations

import dagster as dg
import h5py
import numpy as np
import pytest

from spinlock_core.config import load_experiment
from spinlock_core.features import extract
from spinlock_core.features.summary import SUMMARY_NAMES
from spinlock_core.storage.layout import PATHS
from spinlock_core.storage.paths import ExperimentPaths

BAD_SHARD = 1
#: an undocumented column: NaN there must fail `nan_inf`
COLUMN = SUMMARY_NAMES.index("energy_growth")


@pytest.fixture
def inject_nan(monkeypatch):
    """Test-only hook: SUMMARY features of the shard starting at operator 8 get one NaN."""
    original = extract.RolloutFeatures.stage_arrays

    def poisoned(self):
        out = original(self)
        if self.start == 8:
            arrays = out["features_summary"]
            arrays[PATHS.SUMMARY_TRAJ][0, 0, COLUMN] = np.nan
            arrays[PATHS.SUMMARY_AGG][0, COLUMN] = np.nan
        return out

    monkeypatch.setattr(extract.RolloutFeatures, "stage_arrays", poisoned)
    return lambda: monkeypatch.setattr(extract.RolloutFeatures, "stage_arrays", original)


def _check_history(instance, asset: str, check: str) -> dict[str, list[bool]]:
    """``{partition: [passed, ...]}`` (oldest first) from the instance's event log."""
    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION), ascending=True,
    )
    out: dict[str, list[bool]] = {}
    for r in records:
        ev = r.event_log_entry.dagster_event.event_specific_data
        if ev.asset_key == dg.AssetKey(asset.split("/")) and ev.check_name == check:
            out.setdefault(ev.partition, []).append(ev.passed)
    return out


def test_bad_shard_is_quarantined_never_consolidated_and_its_failure_stays_visible(write_config, tmp_path, inject_nan):
    from spinlock_assets.definitions import build_definitions

    cfg_path = write_config()
    cfg = load_experiment(cfg_path)
    defs = build_definitions(cfg_path)
    assets = list(defs.assets)
    graph = defs.resolve_asset_graph()
    partitioned = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None]
    paths = ExperimentPaths.for_config(cfg)
    run = lambda sel, pk=None: dg.materialize(assets, selection=sel, partition_key=pk, instance=instance,  # noqa: E731
                                              resources=defs.resources, raise_on_error=False)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert run([dg.AssetKey("parameters")]).success
        results = {pk: run(partitioned, pk) for pk in ("shard-0000", "shard-0001", "shard-0002")}
        assert results["shard-0000"].success and results["shard-0002"].success
        bad = results["shard-0001"]
        assert not bad.success  # the blocking check failed the run
        ev = {(e.asset_key.to_user_string(), e.check_name): e for e in bad.get_asset_check_evaluations()}
        assert not ev[("features/summary", "nan_inf")].passed
        assert "energy_growth" in ev[("features/summary", "nan_inf")].description
        assert ev[("features/temporal", "nan_inf")].passed and ev[("rollouts", "policy_balance")].passed

        # the bad family never reaches the reader path; its siblings of the same shard do
        assert not paths.shard("features_summary", BAD_SHARD).exists()
        q = paths.quarantined_shard("features_summary", BAD_SHARD)
        with h5py.File(q, "r") as f:
            assert np.isnan(f[PATHS.SUMMARY_AGG][0, COLUMN]) and "nan_inf" in f.attrs["quarantined_by"]
        assert paths.shard("features_temporal", BAD_SHARD).exists() and paths.shard("rollouts", BAD_SHARD).exists()
        assert paths.shard("features_summary", 0).exists() and paths.shard("features_summary", 2).exists()

        # `dataset` refuses, naming the shard, and writes nothing
        r = run([dg.AssetKey("dataset")])
        assert not r.success and not paths.dataset.exists()
        failure = next(e for e in r.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
        msg = failure.step_failure_data.user_failure_data.description
        assert "shard-0001 of features/summary: quarantined: nan_inf failed" in msg
        assert "shard-0000" not in msg and "shard-0002" not in msg

        # per-partition history: shard-0001 failed, the others passed, retrievable per partition
        hist = _check_history(instance, "features/summary", "nan_inf")
        assert hist == {"shard-0000": [True], "shard-0001": [False], "shard-0002": [True]}

        # fixed and re-run: the shard leaves quarantine, the failure stays in its history
        inject_nan()
        assert run(partitioned, "shard-0001").success
        assert paths.shard("features_summary", BAD_SHARD).exists() and not q.exists()
        assert _check_history(instance, "features/summary", "nan_inf")["shard-0001"] == [False, True]
        assert run([dg.AssetKey("dataset")]).success
    with h5py.File(paths.dataset, "r") as f:
        assert np.isfinite(f[PATHS.SUMMARY_AGG][:, COLUMN]).all()
        assert f[PATHS.SUMMARY_AGG].shape[0] == cfg.sampling.total_samples


def test_dataset_names_missing_and_stale_shards(write_config, tmp_path, monkeypatch):
    from spinlock_core.generation import simulate_shard, write_initial_conditions, write_parameters
    from spinlock_core.storage.dataset import consolidate, shard_problems
    from spinlock_core.storage.shards import StorageError

    cfg = load_experiment(write_config())
    paths = ExperimentPaths.for_config(cfg, tmp_path)
    write_parameters(cfg, paths)
    for s in range(cfg.num_shards):
        write_initial_conditions(cfg, paths, s)
        if s != 2:
            simulate_shard(cfg, paths, s, families={"temporal"})
    stages = ["initial_conditions", "rollouts", "features_temporal"]
    problems = shard_problems(cfg, paths, stages)
    assert problems == ["shard-0002 of rollouts: missing (materialize partition shard-0002)",
                        "shard-0002 of features/temporal: missing (materialize partition shard-0002)"]
    simulate_shard(cfg, paths, 2, families={"temporal"})
    # a feature-family version bump makes exactly that family's shards stale
    import dataclasses

    import spinlock_core.features.families as families

    fam = families.FAMILIES["temporal"]
    monkeypatch.setitem(families.FAMILIES, "temporal", dataclasses.replace(fam, version=fam.version + ".1"))
    stale = shard_problems(cfg, paths, stages)
    assert len(stale) == 3 and all("of features/temporal" in p and "stage_fingerprint mismatch" in p for p in stale)
    monkeypatch.setitem(families.FAMILIES, "temporal", fam)
    assert shard_problems(cfg, paths, stages) == []
    with pytest.raises(StorageError, match="shard-0000 of initial_conditions"):
        other = load_experiment(write_config("o.yaml", simulation__input_generation__structured__num_modes=2))
        consolidate(other, ExperimentPaths.for_config(other, tmp_path), stages)
    assert not paths.dataset.exists()


def test_quarantined_parameters_stop_every_shard(write_config, tmp_path):
    """A parameter sample no better than i.i.d. points (blocking `sobol_discrepancy`) is
    quarantined, and the shards that would read it fail with a message that says so."""
    from spinlock_core.generation import write_initial_conditions, write_parameters
    from spinlock_core.generation.stages import load_shard_inputs
    from spinlock_core.storage.shards import StorageError

    cfg = load_experiment(write_config(sampling__validation__max_discrepancy=1e-6))
    paths = ExperimentPaths.for_config(cfg, tmp_path)
    res, _, _ = write_parameters(cfg, paths)
    assert res.quarantined and not paths.parameters.exists() and paths.quarantined_parameters.exists()
    assert [c.name for c in res.checks if c.blocks] == ["sobol_discrepancy"]
    write_initial_conditions(cfg, paths, 0)
    with pytest.raises(StorageError, match="quarantined.*sobol_discrepancy failed"):
        load_shard_inputs(cfg, paths, 0)
