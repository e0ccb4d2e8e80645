"""The code location loads, exposes the expected graph, and the core library stays Dagster-free."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

from tests.conftest import ROOT


def test_defs_load_and_validate():
    from spinlock_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)


def test_asset_keys_groups_and_partitions(tiny_config, write_config):
    from spinlock_assets.definitions import build_definitions

    defs = build_definitions(write_config())
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"parameters", "initial_conditions", "rollouts", "dataset"} <= keys
    assert graph.get(dg.AssetKey("parameters")).group_name == "sampling"
    assert graph.get(dg.AssetKey("rollouts")).group_name == "generation"
    pd = graph.get(dg.AssetKey("rollouts")).partitions_def
    assert pd.get_partition_keys() == ["shard-0000", "shard-0001", "shard-0002"]
    check_names = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert {("parameters", "sobol_discrepancy"), ("initial_conditions", "ic_balance"), ("initial_conditions", "shard_layout"),
            ("rollouts", "policy_balance"), ("rollouts", "divergence"), ("dataset", "ic_balance")} <= check_names


def test_key_prefix_for_multi_experiment_workspaces(write_config, tmp_path):
    from spinlock_assets.definitions import build_definitions
    from spinlock_assets.workspace import write_workspace

    defs = build_definitions(write_config(), key_prefix=["tiny"])
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "tiny/rollouts" in keys and "tiny/parameters" in keys
    ws = write_workspace([write_config("a.yaml"), write_config("b.yaml", metadata__name="other")], tmp_path / "ws")
    text = ws.read_text()
    assert "location_name: tiny" in text and "location_name: other" in text


def test_core_never_imports_dagster():
    code = "import sys, spinlock_core.cli, spinlock_core.generation, spinlock_core.storage.dataset, spinlock_core.validation; " \
           "import spinlock_core.initial_conditions, spinlock_core.operators; sys.exit('dagster' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
    offenders = [p for p in (ROOT / "spinlock_core").rglob("*.py") if "dagster" in p.read_text() and "import dagster" in p.read_text()]
    assert offenders == []


def test_schedules_fan_out_one_run_per_shard(write_config):
    from datetime import datetime, timezone

    from spinlock_assets.definitions import build_definitions

    defs = build_definitions(write_config())
    assert [s.name for s in defs.schedules] == ["weekly_full_rebuild"]  # one scheduled rebuild; the rest is declarative
    sched = defs.resolve_schedule_def("weekly_full_rebuild")
    assert sched.cron_schedule == "0 2 * * 0" and sched.default_status == dg.DefaultScheduleStatus.STOPPED
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 22, 2, tzinfo=timezone.utc))
    reqs = list(sched(ctx))
    assert [r.partition_key for r in reqs] == ["shard-0000", "shard-0001", "shard-0002"]
    assert {r.run_key for r in reqs} == {"20261122-shard-0000", "20261122-shard-0001", "20261122-shard-0002"}
    shard_assets = {"initial_conditions", "rollouts", "features/summary", "features/temporal", "features/architecture"}
    assert all({k.to_user_string() for k in r.asset_selection} == shard_assets for r in reqs)
    assert defs.resolve_job_def("rebuild_features") is not None


def test_every_asset_says_who_owns_it_what_it_is_and_feature_columns(write_config):
    from spinlock_assets.definitions import build_definitions
    from spinlock_core.config import load_experiment
    from spinlock_core.features.families import feature_names

    path = ROOT / "configs/experiments/demo.yaml"
    graph = build_definitions(path).resolve_asset_graph()
    cfg = load_experiment(path)
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners == ["team:spinlock"], key
        assert node.tags.get("stage"), key
        assert node.description and len(node.description) > 30, key
    for fam in ("summary", "temporal", "architecture", "initial"):
        schema = graph.get(dg.AssetKey(["features", fam])).metadata["dagster/column_schema"]
        names = next(iter(feature_names(fam, cfg).values()))
        assert [c.name for c in schema.columns] == list(names)
    params = graph.get(dg.AssetKey("parameters")).metadata["dagster/column_schema"]
    assert [c.name for c in params.columns] == list(cfg.parameter_space.names)
