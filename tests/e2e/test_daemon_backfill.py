"""Issue #9: the real webserver and daemon on 127.0.0.1. Through GraphQL the test materializes
``parameters``, launches a backfill of two of the three shards, sees the daemon dequeue and run
them (QueuedRunCoordinator: nothing runs without the daemon), and reads their check results."""

from __future__ import annotations

import json
import os
import time

import dagster as dg
import pytest

from tests.conftest import ROOT
from tests.e2e._dagster_servers import BIN, DAEMON, free_port, gql_data, start, stop, tail, wait_http

PARTS = ["shard-0000", "shard-0001"]
SHARD_ASSETS = ["initial_conditions", "rollouts", "features/summary", "features/temporal", "features/architecture"]
#: stage file of each shard asset under <SPINLOCK_HOME>/data/tiny/shards/
STAGE = {"initial_conditions": "initial_conditions", "rollouts": "rollouts", "features/summary": "features_summary",
         "features/temporal": "features_temporal", "features/architecture": "features_architecture"}
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")

INSTANCE = """telemetry:
  enabled: false
nux:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
concurrency:
  runs:
    max_concurrent_runs: 2
  pools:
    default_limit: 2
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 300
"""

LAUNCH_RUN = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId status } } ... on PythonError { message stack } ... on InvalidSubsetError { message } } }"""
RUN = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"
LAUNCH_BACKFILL = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename
  ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill { status numPartitions partitionNames error { message }
    runs(limit: 20) { runId status tags { key value } } } } }"""
LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"
PARTITION_STATUS = """query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) { ... on AssetNode {
  assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions failedPartitions
    materializingPartitions unmaterializedPartitions } }
  assetChecksOrError { ... on AssetChecks { checks { name blocking
    partitionStatuses { ... on AssetCheckDefaultPartitionStatuses { succeededPartitions failedPartitions } } } } } } } }"""
RUN_ERRORS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status eventConnection(limit: 1000) { events {
  __typename ... on MessageEvent { message } ... on ErrorEvent { error { message stack cause { message stack } } } } } } } }"""
CHECK_EXECUTIONS = """query($k: AssetKeyInput!, $c: String!) { assetCheckExecutions(assetKey: $k, checkName: $c, limit: 20) {
  runId status partition evaluation { checkName success partition severity } } }"""


def _key(name: str) -> dict:
    return {"path": name.split("/")}


def _run_errors(port: int, runs: list[dict]) -> str:
    """The failure events of the runs that did not succeed (messages and stacks), for the assertion message."""
    out = []
    for run in runs:
        if run["status"] == "SUCCESS":
            continue
        r = gql_data(port, RUN_ERRORS, {"id": run["runId"]})["runOrError"]
        for e in r["eventConnection"]["events"]:
            if e.get("error") or "FAILURE" in e["__typename"].upper() or e["__typename"] == "ExecutionStepFailureEvent":
                out.append(f"{run['runId'][:8]} {e['__typename']}: {e.get('message')}\n{json.dumps(e.get('error'), indent=1)[:4000]}")
    return "\n".join(out)


def _wait(what: str, poll, done, timeout: float, logs) -> object:
    """Call ``poll()`` every second until ``done(value)``; fail with the server logs after ``timeout``."""
    t0, value = time.time(), None
    while time.time() - t0 < timeout:
        value = poll()
        if done(value):
            return value
        time.sleep(1)
    pytest.fail(f"{what}: still {value!r} after {timeout} s\n{logs()}")


@pytest.mark.slow
def test_daemon_runs_a_two_shard_backfill_launched_through_graphql(write_config, tmp_path):
    home = tmp_path / "sl"
    dhome = home / "dagster"
    dhome.mkdir(parents=True)
    (dhome / "dagster.yaml").write_text(INSTANCE)
    # create the sqlite storages here, once: the webserver, the daemon and their code servers all
    # open a new instance at the same moment, and racing schema stamps leave two alembic heads
    with dg.DagsterInstance.from_config(str(dhome)) as instance:
        assert instance.get_runs(limit=1) == []
    env = {**os.environ, "SPINLOCK_CONFIG": str(write_config()), "SPINLOCK_HOME": str(home), "DAGSTER_HOME": str(dhome),
           "DAGSTER_DISABLE_TELEMETRY": "1"}
    port = free_port()
    web_log, daemon_log = tmp_path / "web.log", tmp_path / "daemon.log"
    workspace = ROOT / "workspace.yaml"

    def logs() -> str:
        return f"--- webserver ---\n{tail(web_log)}\n--- daemon ---\n{tail(daemon_log)}"

    t_all = time.time()
    web = start([BIN / "dagster-webserver", "-h", "127.0.0.1", "-p", str(port), "-w", workspace], web_log, env)
    daemon = None
    try:
        daemon = start([*DAEMON, "run", "-w", workspace], daemon_log, env)
        ready_s = wait_http(port, web, web_log)
        entries = _wait("code location", lambda: gql_data(port, LOCATIONS)["workspaceOrError"]["locationEntries"],
                        lambda es: all(e["loadStatus"] == "LOADED" for e in es), 60, logs)
        assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == [("spinlock", "RepositoryLocation")], entries

        # 1. parameters (unpartitioned; every shard reads its file): queued, then run by the daemon
        r = gql_data(port, LAUNCH_RUN, {"p": {"selector": {"repositoryLocationName": "spinlock", "repositoryName": "__repository__",
                                                          "jobName": "__ASSET_JOB", "assetSelection": [_key("parameters")]}}})
        assert r["launchRun"]["__typename"] == "LaunchRunSuccess", r
        assert r["launchRun"]["run"]["status"] == "QUEUED"  # the webserver only queues; the daemon launches
        rid = r["launchRun"]["run"]["runId"]
        st = _wait("parameters run", lambda: gql_data(port, RUN, {"id": rid})["runOrError"]["status"],
                   lambda s: s in TERMINAL, 90, logs)
        assert st == "SUCCESS", logs()
        assert (home / "data/tiny/parameters.h5").is_file()
        params_s = time.time() - t_all

        # the daemons that this test relies on report healthy heartbeats
        def daemons():
            assert daemon.poll() is None, f"daemon exited rc={daemon.returncode}\n{logs()}"
            st = gql_data(port, DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
            return {d["daemonType"]: d["healthy"] for d in st}
        _wait("daemon heartbeats", daemons,
              lambda s: all(s.get(t) for t in ("QUEUED_RUN_COORDINATOR", "BACKFILL", "MONITORING")), 90, logs)


        # 2. a backfill of two of the three shards, every per-shard asset
        r = gql_data(port, LAUNCH_BACKFILL, {"p": {"assetSelection": [_key(a) for a in SHARD_ASSETS], "partitionNames": PARTS,
                                                   "title": "e2e two shards"}})
        assert r["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", r
        bid = r["launchPartitionBackfill"]["backfillId"]
        t0 = time.time()
        b = _wait("backfill", lambda: gql_data(port, BACKFILL, {"id": bid})["partitionBackfillOrError"],
                  lambda b: b["status"] not in ("REQUESTED", "CANCELING", "FAILING"), 130, logs)
        backfill_s = time.time() - t0
        assert b["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), f"{json.dumps(b, indent=1)}\n{_run_errors(port, b['runs'])}\n{logs()}"
        assert b["numPartitions"] == 2 and sorted(b["partitionNames"]) == PARTS

        # one run per shard, each tagged with its partition and the backfill, each a success
        runs = b["runs"]
        tags = [{t["key"]: t["value"] for t in run["tags"]} for run in runs]
        assert [run["status"] for run in runs] == ["SUCCESS", "SUCCESS"], f"{json.dumps(runs, indent=1)}\n{_run_errors(port, runs)}"
        assert sorted(t.get("dagster/partition") for t in tags) == PARTS
        assert all(t.get("dagster/backfill") == bid for t in tags)
        run_ids = {run["runId"] for run in runs}

        # the shard files of the two partitions, and nothing of the third
        for a in SHARD_ASSETS:
            for p in PARTS:
                assert (home / "data/tiny/shards" / STAGE[a] / f"{p}.h5").is_file(), (a, p)
            assert not (home / "data/tiny/shards" / STAGE[a] / "shard-0002.h5").exists()

        # 3. per asset: exactly the two shards materialized (shard-0002 still missing) and every
        # check evaluated by those runs on both shards, passed
        checked = 0
        for a in SHARD_ASSETS:
            node = gql_data(port, PARTITION_STATUS, {"k": _key(a)})["assetNodeOrError"]
            ps = node["assetPartitionStatuses"]
            assert sorted(ps["materializedPartitions"]) == PARTS, (a, ps)
            assert ps["unmaterializedPartitions"] == ["shard-0002"], (a, ps)
            assert ps["failedPartitions"] == [] and ps["materializingPartitions"] == [], (a, ps)
            checks = node["assetChecksOrError"]["checks"]
            assert checks, a
            for c in checks:
                cps = c["partitionStatuses"]
                assert sorted(cps["succeededPartitions"]) == PARTS and cps["failedPartitions"] == [], (a, c)
                execs = gql_data(port, CHECK_EXECUTIONS, {"k": _key(a), "c": c["name"]})["assetCheckExecutions"]
                by_part = {e["partition"]: e for e in execs}
                assert sorted(by_part) == PARTS, (a, c["name"], execs)
                for p, e in by_part.items():
                    assert e["status"] == "SUCCEEDED" and e["runId"] in run_ids, (a, c["name"], e)
                    ev = e["evaluation"]
                    assert ev["success"] is True and ev["checkName"] == c["name"] and ev["partition"] == p, (a, e)
                    checked += 1
        assert checked >= 2 * 10  # ic (3), rollouts (3), 3 feature families (4 each), on two shards
        print(f"\nwebserver ready {ready_s:.1f} s, parameters done at {params_s:.1f} s, backfill of {PARTS} "
              f"{backfill_s:.1f} s, total {time.time() - t_all:.1f} s; {checked} check evaluations passed")
    finally:
        stop(daemon, web)
