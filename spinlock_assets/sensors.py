"""A run-failure sensor that leaves a trail for whoever looks the next morning.

Every failed run of this code location (a scheduled rebuild, a UI backfill, a CLI materialization
recorded in the instance) becomes one line, logged by the sensor and appended to
``<experiment>/failures.log`` (``ExperimentPaths.root``)::

    2026-11-22T03:14:07Z RUN FAILURE run=6f0c... job=generate_shards partition=shard-0001 \
assets=features/summary,rollouts failed_checks=features/summary:nan_inf error=...

The sensor starts RUNNING: an alert someone has to switch on is usually found off the morning it
was needed. It only acts while ``dagster-daemon`` (or ``dagster dev``) runs, it starts from the
failures after it was first turned on (Dagster's run-status cursor), and it never launches runs.
Tests that use ``dg.materialize`` never start the daemon, so the default does not affect them.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from .experiment import Experiment
from .resources import SpinlockStorage

__all__ = ["build", "failure_line", "append_line", "FAILURES_LOG", "MAX_ERROR_CHARS"]

FAILURES_LOG = "failures.log"
MAX_ERROR_CHARS = 800


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _step_error(ev: dg.DagsterEvent) -> str:
    """The user-facing message of a step failure: a ``dg.Failure``'s description, else the
    innermost exception (``Type: message``) under Dagster's wrapper errors."""
    data = ev.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    err = data.error
    while err is not None and err.cause is not None:
        err = err.cause
    if err is None:
        return ev.message or "step failed"
    return err.message.strip()


def failure_line(context: dg.RunFailureSensorContext) -> str:
    """One line: time (the run's end, UTC), run id, job, partition, the assets the run targeted
    (and those it did not materialize), the checks that failed in it, and the error."""
    instance, run = context.instance, context.dagster_run
    rec = instance.get_run_record_by_id(run.run_id)
    end = rec.end_time if rec is not None and rec.end_time else datetime.now(timezone.utc).timestamp()
    when = datetime.fromtimestamp(end, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def events(kind):
        return [r.event_log_entry.dagster_event for r in instance.get_records_for_run(run.run_id, of_type=kind).records]

    planned = {e.asset_key.to_user_string() for e in events(dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)}
    if not planned and run.asset_selection:
        planned = {k.to_user_string() for k in run.asset_selection}
    done = {e.asset_key.to_user_string() for e in events(dg.DagsterEventType.ASSET_MATERIALIZATION)}
    failed_checks = []
    for e in events(dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        ev = e.event_specific_data
        if not ev.passed:
            failed_checks.append(f"{ev.asset_key.to_user_string()}:{ev.check_name}({ev.severity.value})")
    partition = run.tags.get("dagster/partition") or context.partition_key
    if partition is None and "dagster/asset_partition_range_start" in run.tags:
        partition = f"{run.tags['dagster/asset_partition_range_start']}...{run.tags.get('dagster/asset_partition_range_end', '')}"
    errors = [_step_error(e) for e in context.get_step_failure_events()]
    error = "; ".join(dict.fromkeys(_one_line(e) for e in errors)) or _one_line(context.failure_event.message or "run failed")
    if len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 3] + "..."
    parts = [when, "RUN FAILURE", f"run={run.run_id}", f"job={run.job_name}", f"partition={partition or '-'}",
             f"assets={','.join(sorted(planned)) or '-'}"]
    if planned - done:
        parts.append(f"not_materialized={','.join(sorted(planned - done))}")
    parts += [f"failed_checks={','.join(sorted(set(failed_checks))) or '-'}", f"error={error}"]
    return " ".join(parts)


def append_line(path: Path, line: str) -> None:
    """Append ``line`` to ``path`` (folders created) in one ``O_APPEND`` write, so lines from
    concurrent ticks never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def build(exp: Experiment, *, default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING) -> list:
    """The experiment's run-failure sensor (named ``run_failure_log``, prefixed like the jobs)."""
    cfg = exp.cfg
    name = "_".join([*exp.prefix, "run_failure_log"])

    @dg.run_failure_sensor(
        name=name,
        default_status=default_status,
        minimum_interval_seconds=30,
        description=f"Writes one line per failed run (time, run id, job, assets, partition, failed checks, error) "
        f"to the log and appends it to <experiment {cfg.metadata.name!r}>/{FAILURES_LOG}.",
    )
    def run_failure_log(context: dg.RunFailureSensorContext, storage: SpinlockStorage):
        line = failure_line(context)
        context.log.error(line)
        append_line(storage.paths(cfg).root / FAILURES_LOG, line)

    return [run_failure_log]
