"""``spinlock backfill``: which shards it picks (all, or missing and failed) from a real instance,
and the backfill it launches through the real ``dagster job backfill``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_backfill_picks_missing_and_failed_shards_and_launches_a_real_backfill(write_config, tmp_path, monkeypatch):
    from spinlock_assets.backfill import shards_to_backfill
    from spinlock_assets.definitions import build_definitions
    from spinlock_assets.experiment import Experiment
    from spinlock_core.config import load_experiment

    cfg_path = write_config()
    home = tmp_path / "sl"
    dhome = home / "dagster"
    dhome.mkdir(parents=True)
    (dhome / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("SPINLOCK_HOME", str(home))
    defs = build_definitions(cfg_path)
    exp = Experiment(load_experiment(cfg_path), cfg_path)
    shard_assets = [dg.AssetKey(k.split("/")) for k in
                    ("initial_conditions", "rollouts", "features/summary", "features/temporal", "features/architecture")]
    with dg.DagsterInstance.from_config(str(dhome)) as instance:
        run = lambda sel, key=None, **kw: dg.materialize(list(defs.assets), selection=sel, partition_key=key,  # noqa: E731
                                                         instance=instance, resources=defs.resources, **kw)
        assert run([dg.AssetKey("parameters")]).success
        assert run(shard_assets, "shard-0000").success
        # shard-0001: its rollouts fail (no initial-condition file yet), everything else is missing
        failed = run([dg.AssetKey("rollouts")], "shard-0001", raise_on_error=False)
        assert not failed.success
        assert shards_to_backfill(instance, exp, missing_or_failed=False) == ["shard-0000", "shard-0001", "shard-0002"]
        assert shards_to_backfill(instance, exp, missing_or_failed=True) == ["shard-0001", "shard-0002"]
        # the initial conditions of shard-0001 now exist; its failed rollouts still make it count
        assert run([k for k in shard_assets if k.to_user_string() != "rollouts"][:1], "shard-0001").success
        assert "shard-0001" in shards_to_backfill(instance, exp, missing_or_failed=True)

    env = {**os.environ, "SPINLOCK_CONFIG": str(cfg_path), "SPINLOCK_HOME": str(home), "DAGSTER_HOME": str(dhome),
           "DAGSTER_DISABLE_TELEMETRY": "1"}
    dry = subprocess.run([BIN / "spinlock", "backfill", "--missing-failed", "--dry-run"], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert dry.returncode == 0, dry.stderr
    assert "2 shard(s) (missing or failed): shard-0001, shard-0002" in dry.stdout
    assert "job backfill" in dry.stdout and "--partitions shard-0001,shard-0002" in dry.stdout
    r = subprocess.run([BIN / "spinlock", "backfill", "--missing-failed"], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(dhome)) as instance:
        backfills = instance.get_backfills()
        assert len(backfills) == 1
        assert sorted(backfills[0].partition_names) == ["shard-0001", "shard-0002"]
        assert backfills[0].partition_set_origin.partition_set_name == "generate_shards_partition_set"
