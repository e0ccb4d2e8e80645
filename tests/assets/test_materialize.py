"""In-process materialization of the asset graph with a real (sqlite) Dagster instance."""

from __future__ import annotations

import dagster as dg
import h5py
import numpy as np

from spinlock_core.config import load_experiment
from spinlock_core.storage.paths import ExperimentPaths
from tests.conftest import ROOT


TOKENIZER_KEYS = ("feature_matrix", "tokenizer", "tokens")


def _materialize_all(defs, instance, tokenizer: bool = False):
    """Every asset in the order `make demo` uses: parameters, the shard assets per partition, the
    dataset (and the tokenizer's feature_matrix and checkpoint), then tokens per partition."""
    graph = defs.resolve_asset_graph()
    assets = list(defs.assets)
    partitioned = [k for k in graph.get_all_asset_keys()
                   if graph.get(k).partitions_def is not None and k.to_user_string() not in TOKENIZER_KEYS]
    run = lambda sel, key=None: dg.materialize(assets, selection=sel, partition_key=key, instance=instance,  # noqa: E731
                                               resources=defs.resources)
    pkeys = graph.get(dg.AssetKey("rollouts")).partitions_def.get_partition_keys()
    results = [run([dg.AssetKey("parameters")])]
    results += [run(partitioned, key) for key in pkeys]
    results.append(run([dg.AssetKey("dataset")]))
    if tokenizer:
        results.append(run([dg.AssetKey("feature_matrix"), dg.AssetKey("tokenizer")]))
        results += [run([dg.AssetKey("tokens")], key) for key in pkeys]
    return results


def test_demo_graph_materializes_with_all_checks_passing(tmp_path, monkeypatch):
    from spinlock_assets.definitions import build_definitions

    demo = ROOT / "configs/experiments/demo.yaml"
    defs = build_definitions(demo)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        results = _materialize_all(defs, instance, tokenizer=True)
        evaluations = [e for r in results for e in r.get_asset_check_evaluations()]
        assert all(r.success for r in results)
        failed = [(e.asset_key.to_user_string(), e.check_name, e.metadata) for e in evaluations if not e.passed]
        assert failed == []
        names = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations}
        assert {("parameters", "sobol_discrepancy"), ("initial_conditions", "ic_balance"), ("rollouts", "policy_balance"),
                ("rollouts", "divergence"), ("dataset", "ic_family_balance")} <= names
        for fam in ("summary", "temporal", "architecture", "initial"):  # no undocumented NaN or constant feature
            assert {(f"features/{fam}", c) for c in ("nan_inf", "constant_columns", "value_ranges")} <= names
        # the tokenizer: its blocking check and report, and every shard's tokens inside their codebooks
        assert {("tokenizer", "quality_and_utilization"), ("tokenizer", "category_report")} <= names
        token_checks = [e for e in evaluations if e.check_name == "tokens_in_codebook"]
        assert len(token_checks) == 4 and all(e.passed for e in token_checks)
        tok_meta = instance.get_latest_materialization_event(dg.AssetKey("tokenizer")).asset_materialization.metadata
        for k in ("val_quality", "val_utilization", "train_utilization", "quality_level_0", "quality_levels_0_2",
                  "noise_ceiling", "num_categories", "parameters", "peak_rss_mb"):
            assert isinstance(tok_meta[k].value, (int, float)), k
        fm_meta = instance.get_latest_materialization_event(dg.AssetKey("feature_matrix")).asset_materialization.metadata
        assert fm_meta["num_categories"].value == tok_meta["num_categories"].value
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
    # tokens of every shard, from the checkpoint the tokenizer asset wrote, equal tokenizing the dataset
    from spinlock_core.tokenizer.api import Tokenizer
    from spinlock_core.tokenizer.tokens_file import read_tokens

    tok = Tokenizer.load(paths.tokenizer)
    shards = [read_tokens(paths.tokens(s)) for s in range(4)]
    assert all(t["attrs"]["checkpoint_id"] == tok.checkpoint_id for t in shards)
    from spinlock_core import __version__

    assert all(t["attrs"]["code_version"] == __version__ for t in shards)
    np.testing.assert_array_equal(np.concatenate([t["tokens"] for t in shards]), tok.tokenize(paths.dataset))
    np.testing.assert_array_equal(np.concatenate([t["operator_index"] for t in shards]), np.arange(128))


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
