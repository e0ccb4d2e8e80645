"""In-process materialization of the asset graph with a real (sqlite) Dagster instance."""

from __future__ import annotations

import dagster as dg
import h5py
import numpy as np

from spinlock_core.config import load_experiment
from spinlock_core.storage.paths import ExperimentPaths
from tests.conftest import ROOT


def _materialize_all(defs, instance):
    graph = defs.resolve_asset_graph()
    assets = list(defs.assets)
    partitioned = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None]
    results = [dg.materialize(assets, selection=[dg.AssetKey("parameters")], instance=instance, resources=defs.resources)]
    for key in graph.get(dg.AssetKey("rollouts")).partitions_def.get_partition_keys():
        results.append(dg.materialize(assets, selection=partitioned, partition_key=key, instance=instance, resources=defs.resources))
    results.append(dg.materialize(assets, selection=[dg.AssetKey("dataset")], instance=instance, resources=defs.resources))
    return results


def test_demo_graph_materializes_with_all_checks_passing(tmp_path, monkeypatch):
    from spinlock_assets.definitions import build_definitions

    demo = ROOT / "configs/experiments/demo.yaml"
    defs = build_definitions(demo)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        results = _materialize_all(defs, instance)
        evaluations = [e for r in results for e in r.get_asset_check_evaluations()]
        assert all(r.success for r in results)
        failed = [(e.asset_key.to_user_string(), e.check_name, e.metadata) for e in evaluations if not e.passed]
        assert failed == []
        names = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations}
        assert {("parameters", "sobol_discrepancy"), ("initial_conditions", "ic_balance"), ("rollouts", "policy_balance"),
                ("rollouts", "divergence"), ("dataset", "ic_family_balance")} <= names
        for fam in ("summary", "temporal", "architecture", "initial"):  # no undocumented NaN or constant feature
            assert {(f"features/{fam}", c) for c in ("nan_inf", "constant_columns", "value_ranges")} <= names
        status = instance.get_status_by_partition(dg.AssetKey("rollouts"), ["shard-0000", "shard-0003"], defs.resolve_asset_graph().get(dg.AssetKey("rollouts")).partitions_def)
        assert status is None or all(v is not None for v in status.values())
    paths = ExperimentPaths.for_config(load_experiment(demo))
    with h5py.File(paths.dataset, "r") as f:
        assert f["inputs/fields"].shape == (128, 3, 32, 32)
        assert f["features/summary/aggregated/features"].shape == (128, 360)
        assert f["features/temporal/features"].shape == (128, 32, 63)
        assert f["features/architecture/aggregated/features"].shape == (128, 10)
        assert f["features/initial/features"].shape == (128, 42)
        temporal = f["features/temporal/features"][()].reshape(-1, 63).astype(np.float64)
        per_traj = f["features/summary/per_trajectory/features"][()].reshape(-1, 120).astype(np.float64)
    # as in FEATURES.md's prototype: no two TEMPORAL columns correlate above 0.99, nothing is constant
    corr = np.corrcoef(temporal, rowvar=False)
    assert np.abs(corr[np.triu_indices(63, 1)]).max() < 0.99
    assert (per_traj.std(0) > 0).all()


def test_failed_blocking_balance_check_stops_downstream(write_config, tmp_path):
    from spinlock_assets.definitions import build_definitions

    # zero tolerance: an 8-operator shard cannot match 4 weights of 0.25 exactly at this seed
    defs = build_definitions(write_config(sampling__validation__balance_tolerance=0.0, sampling__total_samples=10,
                                          sampling__validation__max_discrepancy=2.0, dataset__storage__shard_size=10))
    assets = list(defs.assets)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert dg.materialize(assets, selection=[dg.AssetKey("parameters")], instance=instance, resources=defs.resources).success
        r = dg.materialize(assets, selection=[dg.AssetKey("initial_conditions"), dg.AssetKey("rollouts")],
                           partition_key="shard-0000", instance=instance, resources=defs.resources, raise_on_error=False)
        assert not r.success
        ev = {e.check_name: e for e in r.get_asset_check_evaluations()}
        assert not ev["ic_balance"].passed
        mats = {m.asset_key.to_user_string() for m in r.get_asset_materialization_events() for m in [m.event_specific_data.materialization]}
        assert "rollouts" not in mats


def test_rematerializing_a_partition_replaces_it(write_config, tmp_path):
    from spinlock_assets.definitions import build_definitions

    cfg_path = write_config()
    defs = build_definitions(cfg_path)
    assets = list(defs.assets)
    paths = ExperimentPaths.for_config(load_experiment(cfg_path))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        dg.materialize(assets, selection=[dg.AssetKey("parameters")], instance=instance, resources=defs.resources)
        for _ in range(2):
            r = dg.materialize(assets, selection=[dg.AssetKey("initial_conditions")], partition_key="shard-0001",
                               instance=instance, resources=defs.resources)
            assert r.success
        files = sorted(p.name for p in paths.shard("initial_conditions", 1).parent.iterdir())
        assert files == ["shard-0001.h5"]


def test_feature_only_selection_leaves_rollouts_alone(write_config, tmp_path):
    """`key:features/*` on a partition re-runs the rollouts in memory but writes only feature files."""
    from spinlock_assets.definitions import build_definitions

    cfg_path = write_config()
    defs = build_definitions(cfg_path)
    assets = list(defs.assets)
    paths = ExperimentPaths.for_config(load_experiment(cfg_path))
    sel = dg.AssetSelection.from_coercible("key:features/*")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        dg.materialize(assets, selection=[dg.AssetKey("parameters")], instance=instance, resources=defs.resources)
        dg.materialize(assets, selection=[dg.AssetKey("initial_conditions")], partition_key="shard-0000", instance=instance, resources=defs.resources)
        r = dg.materialize(assets, selection=sel, partition_key="shard-0000", instance=instance, resources=defs.resources)
        assert r.success
        mats = {e.asset_key.to_user_string() for e in r.get_asset_materialization_events()}
        assert mats == {"features/summary", "features/temporal", "features/architecture"}
    assert not paths.shard("rollouts", 0).exists()
    assert paths.shard("features_summary", 0).exists() and paths.shard("features_temporal", 0).exists()
