"""The ``spinlock`` console script: the library's commands plus those that read a Dagster instance.

    spinlock report --out DIR [--config EXPERIMENT.yaml]
                    the check report (check_report.md/.html/.json) of the experiment
                    (default $SPINLOCK_CONFIG, else configs/experiments/demo.yaml) from the
                    Dagster instance at $DAGSTER_HOME; exit 0 when no blocking check has
                    failed, 1 when one has (listed on stderr), 2 on bad input (no
                    DAGSTER_HOME, an invalid config)

    spinlock instance [--write [--force]] [--check] [--migrate]
                    which storage $DAGSTER_HOME/dagster.yaml uses (sqlite folder or PostgreSQL
                    user@host:port/db, never the password); --write renders it from the
                    environment first (SPINLOCK_PG_*, SPINLOCK_COMPUTE_LOGS), --check opens the
                    instance and counts its runs, --migrate upgrades its schema

    spinlock backfill [--missing-failed] [--dry-run]
                    launch a backfill of the shard assets (the generate_shards job) of the active
                    experiment through `dagster job backfill`: every shard, or only those with a
                    shard asset missing or failed in the instance at $DAGSTER_HOME; the daemon
                    runs it, one run per shard

Every other command is :mod:`spinlock_core.cli`'s; ``spinlock_core`` stays free of Dagster.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from spinlock_core import cli as core_cli

__all__ = ["main"]


def _fail(msg: str) -> int:
    sys.stderr.write(f"spinlock: error: {msg}\n")
    return 2


def _report(out: Path, config: Path | None) -> int:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return _fail("DAGSTER_HOME is not set: point it at the Dagster instance folder the runs were recorded in")
    if not Path(home).is_dir():
        # never create an empty instance: every check would read as "not run"
        return _fail(f"DAGSTER_HOME={home} is not a folder")

    import dagster as dg

    from spinlock_core.config import ConfigError, load_experiment
    from spinlock_core.validation.check_report import failed_blocking, summarize, write_report

    from .assets.reports import report_context
    from .experiment import Experiment, active_config_path
    from .reports import gather_check_results

    active = active_config_path()
    path = Path(config).resolve() if config is not None else active
    try:
        from . import definitions  # builds the active experiment's definitions on import

        defs = definitions.defs if path == active else definitions.build_definitions(path)
        exp = Experiment(load_experiment(path), path)
    except ConfigError as e:
        bad = e.path or path
        for loc, msg in e.problems:
            sys.stderr.write(f"{bad}: {loc}: {msg}\n" if loc else f"{bad}: {msg}\n")
        return 2
    with dg.DagsterInstance.get() as instance:
        records = gather_check_results(instance, defs)
        ctx = report_context(exp, instance)
    try:
        paths = write_report(records, out, title=f"Spinlock check report: {exp.cfg.metadata.name}", context=ctx)
    except (ValueError, OSError) as e:
        return _fail(f"--out {out}: {e}")
    s = summarize(records)
    sys.stdout.write(f"{s['passed']}/{s['total']} passed, {s['failed']} failed ({s['failed_blocking']} blocking), "
                     f"{s['not_run']} not run\n")
    sys.stdout.write("".join(f"{p}\n" for p in paths.values()))
    blocked = failed_blocking(records)
    for r in blocked:
        sys.stderr.write(f"FAILED {r.label} ({r.severity}, blocking): {r.description}\n")
    return 1 if blocked else 0


def main(argv: list[str] | None = None) -> int:
    ap, sub = core_cli.build_parser()
    r = sub.add_parser("report", help="write the check report of the active experiment from the Dagster instance")
    r.add_argument("--out", type=Path, required=True, help="folder for check_report.md, .html and .json")
    r.add_argument("--config", type=Path, default=None,
                   help="experiment config (default $SPINLOCK_CONFIG, else configs/experiments/demo.yaml)")
    i = sub.add_parser("instance", help="show (and write, check, migrate) the Dagster instance's storage")
    i.add_argument("--write", action="store_true", help="render $DAGSTER_HOME/dagster.yaml from the environment")
    i.add_argument("--force", action="store_true", help="with --write: also replace a hand-written file (kept as .bak)")
    i.add_argument("--check", action="store_true", help="open the instance and count its runs")
    i.add_argument("--migrate", action="store_true", help="upgrade the storage schema (dagster instance migrate)")
    b = sub.add_parser("backfill", help="backfill the shard assets of every shard, or only missing and failed ones")
    b.add_argument("--missing-failed", action="store_true", help="only shards with a shard asset missing or failed")
    b.add_argument("--dry-run", action="store_true", help="print the shards and the dagster command, launch nothing")
    a = ap.parse_args(argv)
    if a.command == "report":
        return _report(a.out, a.config)
    if a.command == "instance":
        from . import instance

        return instance.run_cli(write=a.write, force=a.force, check=a.check, migrate=a.migrate)
    if a.command == "backfill":
        from . import backfill

        return backfill.run_cli(missing_or_failed=a.missing_failed, dry_run=a.dry_run)
    return core_cli.run(a)


if __name__ == "__main__":
    sys.exit(main())
