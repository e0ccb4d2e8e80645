"""The real Dagster webserver on loopback: the UI's GraphQL sees the graph, partitions, checks and
schedules, and a run launched through it completes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gql(port: int, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=60).read())


@pytest.mark.slow
def test_webserver_serves_the_asset_graph(write_config, tmp_path):
    home = tmp_path / "sl"
    dhome = home / "dagster"
    dhome.mkdir(parents=True)
    # launched runs start at once in a subprocess (no queue, so no daemon needed for this test)
    (dhome / "dagster.yaml").write_text("telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster.core.run_coordinator\n"
                                        "  class: DefaultRunCoordinator\n")
    env = {**os.environ, "SPINLOCK_CONFIG": str(write_config()), "SPINLOCK_HOME": str(home), "DAGSTER_HOME": str(dhome),
           "DAGSTER_DISABLE_TELEMETRY": "1"}
    port = _free_port()
    proc = subprocess.Popen([BIN / "dagster-webserver", "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")],
                            cwd=ROOT, env=env, stdout=open(tmp_path / "web.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        t0 = time.time()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except Exception:
                assert proc.poll() is None, (tmp_path / "web.log").read_text()[-3000:]
                assert time.time() - t0 < 120, "webserver did not start"
                time.sleep(0.5)
        nodes = _gql(port, "{ assetNodes { assetKey { path } groupName isPartitioned partitionKeys "
                           "assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }")["data"]["assetNodes"]
        by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert {"parameters", "initial_conditions", "rollouts", "features/summary", "features/temporal", "dataset"} <= set(by_key)
        assert by_key["rollouts"]["partitionKeys"] == ["shard-0000", "shard-0001", "shard-0002"]
        assert by_key["features/summary"]["groupName"] == "features"
        checks = {c["name"]: c["blocking"] for c in by_key["initial_conditions"]["assetChecksOrError"]["checks"]}
        assert checks["ic_balance"] is True and checks["shard_layout"] is True
        repo = _gql(port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } "
                          "schedules { name } jobs { name } } } } }")["data"]["repositoriesOrError"]["nodes"][0]
        assert repo["location"]["name"] == "spinlock"
        assert {s["name"] for s in repo["schedules"]} == {"weekly_full_rebuild"}
        r = _gql(port, """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
                 ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
                 {"p": {"selector": {"repositoryLocationName": "spinlock", "repositoryName": "__repository__",
                                     "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["parameters"]}]}}})
        assert r["data"]["launchRun"]["__typename"] == "LaunchRunSuccess", r
        run_id = r["data"]["launchRun"]["run"]["runId"]
        t1 = time.time()
        while True:
            status = _gql(port, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})["data"]["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            assert time.time() - t1 < 180, status
            time.sleep(1)
        assert status == "SUCCESS"
        assert (home / "data/tiny/parameters.h5").exists()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
