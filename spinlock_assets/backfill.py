"""``spinlock backfill``: launch a backfill of the shard assets, of every shard or only of those
that are missing or failed, through Dagster's own ``dagster job backfill`` (the daemon runs it,
one run per shard, like a backfill launched from the UI)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from .experiment import PROJECT_ROOT, Experiment

__all__ = ["shard_asset_keys", "shards_to_backfill", "backfill_command"]

log = logging.getLogger(__name__)


def shard_asset_keys(exp: Experiment) -> list[dg.AssetKey]:
    """The assets one shard run materializes (the ``generate_shards`` job)."""
    return [exp.key("initial_conditions"), exp.key("rollouts"), *exp.feature_keys]


def shards_to_backfill(instance: dg.DagsterInstance, exp: Experiment, *, missing_or_failed: bool) -> list[str]:
    """Every shard key, or (``missing_or_failed``) those where at least one shard asset is not
    materialized or its latest materialization failed; in partition order. A shard whose run is in
    progress is left out of the second list."""
    keys = exp.partitions.get_partition_keys()
    if not missing_or_failed:
        return list(keys)
    from dagster._core.storage.partition_status_cache import AssetPartitionStatus

    todo: set[str] = set()
    for asset in shard_asset_keys(exp):
        status = instance.get_status_by_partition(asset, keys, exp.partitions) or {}
        for k in keys:
            s = status.get(k)
            if s is None or s == AssetPartitionStatus.FAILED:
                todo.add(k)
    return [k for k in keys if k in todo]


def backfill_command(exp: Experiment, partitions: list[str], workspace: Path | None = None) -> list[str]:
    """The ``dagster job backfill`` command line for ``partitions`` of the ``generate_shards`` job."""
    job = "_".join([*exp.prefix, "generate_shards"]) if exp.prefix else "generate_shards"
    return [str(Path(sys.executable).parent / "dagster"), "job", "backfill", "-w",
            str(workspace or PROJECT_ROOT / "workspace.yaml"), "-j", job, "--partitions", ",".join(partitions),
            "--noprompt"]


def run_cli(*, missing_or_failed: bool, dry_run: bool) -> int:
    home = os.environ.get("DAGSTER_HOME")
    if not home or not Path(home).is_dir():
        sys.stderr.write(f"spinlock: error: DAGSTER_HOME={home or '(unset)'} is not an instance folder\n")
        return 2
    from spinlock_core.config import ConfigError, load_experiment

    from .experiment import active_config_path

    path = active_config_path()
    try:
        exp = Experiment(load_experiment(path), path)
    except ConfigError as e:
        sys.stderr.write(f"{e.path or path}: {e}\n")
        return 2
    with dg.DagsterInstance.get() as instance:
        shards = shards_to_backfill(instance, exp, missing_or_failed=missing_or_failed)
    what = "missing or failed" if missing_or_failed else "all"
    if not shards:
        sys.stdout.write(f"nothing to backfill: every shard of {exp.cfg.metadata.name} is materialized\n")
        return 0
    cmd = backfill_command(exp, shards)
    sys.stdout.write(f"{len(shards)} shard(s) ({what}): {', '.join(shards)}\n")
    if dry_run:
        sys.stdout.write(" ".join(cmd) + "\n")
        return 0
    r = subprocess.run(cmd, cwd=PROJECT_ROOT)
    if r.returncode == 0:
        sys.stdout.write("backfill launched: the daemon runs it (make ui, or dagster-daemon run)\n")
    return r.returncode
