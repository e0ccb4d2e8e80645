"""Materialize every asset and partition of the active experiment through the real Dagster CLI.

Unpartitioned roots first (``parameters``), then every partitioned asset one partition per run
(``shard-0000`` ...), then the unpartitioned assets downstream (``dataset``), each as
``dagster asset materialize`` into the local instance at ``$DAGSTER_HOME``. Prints where the
dataset file is. ``make demo`` runs this.

    python -m spinlock_assets.materialize [--partitions shard-0000,shard-0001]
"""

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from spinlock_core.storage.paths import spinlock_home

from .experiment import PROJECT_ROOT, active_config_path
from .instance import InstanceConfigError, write_instance

log = logging.getLogger("spinlock.materialize")

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


def instance_env() -> dict[str, str]:
    """Environment for Dagster commands: ``DAGSTER_HOME`` under ``$SPINLOCK_HOME`` (created, with
    ``dagster.yaml`` from :func:`.instance.write_instance`), telemetry off, the allocator setting
    that avoids mmap churn."""
    home = spinlock_home()
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster")
    try:  # storage from SPINLOCK_PG_* (else sqlite); a hand-written dagster.yaml is kept
        write_instance(dagster_home)
    except InstanceConfigError as e:
        raise SystemExit(f"dagster.yaml: {e}") from None
    env = dict(os.environ)
    env.update({"SPINLOCK_HOME": str(home), "DAGSTER_HOME": str(dagster_home), "DAGSTER_DISABLE_TELEMETRY": "1"})
    for k, v in MALLOC_ENV.items():
        env.setdefault(k, v)
    env.setdefault("SPINLOCK_CONFIG", str(active_config_path()))
    return env


def plan() -> tuple[list[tuple[list[str], bool]], list[str]]:
    """``(phases, partition_keys)``: each phase is ``(asset keys, partitioned)``, in run order.

    An asset's phase is the highest phase of its parents, one higher where partitioning changes
    (unpartitioned phases are even, partitioned ones odd): ``parameters``, then the shard assets,
    then ``dataset`` / ``feature_matrix`` / ``tokenizer``, then the per-shard ``tokens``.
    """
    from .definitions import defs

    graph = defs.resolve_asset_graph()
    keys = list(graph.toposorted_asset_keys)
    level: dict = {}
    for k in keys:
        part = graph.get(k).partitions_def is not None
        own = 1 if part else 0
        for p in graph.get(k).parent_keys:
            if p in level:
                lp = level[p]
                own = max(own, lp if (lp % 2 == 1) == part else lp + 1)
        level[k] = own
    phases = [([k.to_user_string() for k in keys if level[k] == lv], lv % 2 == 1) for lv in sorted(set(level.values()))]
    partitioned = [k for k in keys if graph.get(k).partitions_def is not None]
    pkeys = graph.get(partitioned[0]).partitions_def.get_partition_keys() if partitioned else []
    return phases, list(pkeys)


def _materialize(select: list[str], partition: str | None, env: dict[str, str]) -> None:
    """One ``dagster asset materialize`` run; its progress lines and check verdicts are echoed
    as they happen, the full log is shown only on failure."""
    cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "spinlock_assets.definitions",
           "--select", ",".join(select)]
    if partition:
        cmd += ["--partition", partition]
    label = f"{','.join(select)}" + (f" [{partition}]" if partition else "")
    log.info("dagster asset materialize --select %s", label)
    t0 = time.perf_counter()
    lines: list[str] = []
    proc = subprocess.Popen(cmd, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        msg = line.rstrip().split(" - ")[-1]
        if " operators (" in msg and "op/s" in msg:
            log.info("  %s", msg)
        elif "did not pass" in msg:
            log.warning("  %s", msg[:300])
    rc = proc.wait()
    text = "".join(lines)
    if rc != 0 or "RUN_SUCCESS" not in text:
        sys.stderr.write("".join(lines[-60:]))
        raise SystemExit(f"materialization failed: {label} (exit {rc})")
    log.info("  done in %.1fs", time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    ap = argparse.ArgumentParser(description="Materialize the active experiment through the Dagster CLI.")
    ap.add_argument("--partitions", default="", help="comma-separated partition keys (default: all)")
    a = ap.parse_args(argv)
    from spinlock_core.config import ConfigError, load_experiment

    try:
        load_experiment(active_config_path())
    except ConfigError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    env = instance_env()
    os.environ.update(env)
    phases, pkeys = plan()
    if a.partitions:
        wanted = a.partitions.split(",")
        unknown = sorted(set(wanted) - set(pkeys))
        if unknown:
            raise SystemExit(f"--partitions: unknown partition(s) {unknown}; known: {pkeys[0]} ... {pkeys[-1]}")
        pkeys = wanted
    log.info("experiment %s, DAGSTER_HOME=%s", env["SPINLOCK_CONFIG"], env["DAGSTER_HOME"])
    seen_partitioned = False
    for select, partitioned in phases:
        if partitioned:
            if seen_partitioned and a.partitions:
                break  # with --partitions: the shard assets only, nothing downstream of the dataset
            seen_partitioned = True
            for i, p in enumerate(pkeys):
                log.info("partition %s (%d/%d): %s", p, i + 1, len(pkeys), ", ".join(select))
                _materialize(select, p, env)
        elif not (seen_partitioned and a.partitions):
            _materialize(select, None, env)
    from spinlock_core.storage.paths import ExperimentPaths

    cfg = load_experiment(env["SPINLOCK_CONFIG"])
    ep = ExperimentPaths.for_config(cfg)
    if a.partitions:
        print(f"partitions {', '.join(pkeys)} materialized; run without --partitions to consolidate {ep.dataset}")
    else:
        print(f"dataset: {ep.dataset}")
        if cfg.tokenizer is not None:
            print(f"tokenizer checkpoint: {ep.tokenizer} (metrics.json); tokens: {ep.tokens(0).parent}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
