"""`check_report`, `spinlock report` and the run-failure sensor against a real sqlite instance:
every expected check of every shard is listed (not-run ones too), a failed shard shows up with its
severity and makes the report fail loudly, and a failed run leaves one line in failures.log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np

from spinlock_core.config import load_experiment
from spinlock_core.features import extract
from spinlock_core.features.summary import SUMMARY_NAMES
from spinlock_core.storage.layout import PATHS
from spinlock_core.storage.paths import ExperimentPaths
from spinlock_core.validation.check_report import REPORT_FILES, records_from_json
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
SHARDS = ["shard-0000", "shard-0001", "shard-0002"]


def report_definitions(config_path) -> dg.Definitions:
    """The code location of ``build_definitions``, which wires ``check_report`` and the failure
    sensor (also imported by the definitions file the `dagster` CLI loads below)."""
    from spinlock_assets.definitions import build_definitions

    return build_definitions(Path(config_path))


_ORIGINAL = extract.RolloutFeatures.stage_arrays


def _poisoned_stage_arrays(self):
    """As in test_gating: SUMMARY features of the shard starting at operator 8 (shard-0001) get
    one NaN in an undocumented column, so its blocking `nan_inf` check fails."""
    out = _ORIGINAL(self)
    if self.start == 8:
        column = SUMMARY_NAMES.index("energy_growth")
        out["features_summary"][PATHS.SUMMARY_TRAJ][0, 0, column] = np.nan
        out["features_summary"][PATHS.SUMMARY_AGG][0, column] = np.nan
    return out


def _expected_count(graph) -> int:
    """Checks x partitions over partitioned assets, plus the checks of unpartitioned assets."""
    n = 0
    for key in graph.get_all_asset_keys():
        checks = graph.get_check_keys_for_assets({key})
        pdef = graph.get(key).partitions_def
        n += len(checks) * (len(pdef.get_partition_keys()) if pdef is not None else 1)
    return n


def _graphql_latest(instance, records) -> dict:
    """Cross-check with Dagster's own GraphQL ``assetCheckExecutions`` (in process, no webserver;
    the workspace plumbing is internal, so it stays in the test): per record, the latest
    execution that has an evaluation, as ``(run id, status, severity)``. One query, one aliased
    field per record."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster_graphql.cli import execute_query

    fields = [f'r{i}: assetCheckExecutions(assetKey: {{path: {json.dumps(r.asset.split("/"))}}}, '
              f'checkName: {json.dumps(r.check)}, partition: {json.dumps(r.partition or "")}, limit: 10) '
              "{ runId status evaluation { severity } }" for i, r in enumerate(records)]
    with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as wpc:
        res = execute_query(wpc, "query {\n" + "\n".join(fields) + "\n}")
    assert "errors" not in res, res.get("errors")
    out = {}
    for i, r in enumerate(records):
        runs = [e for e in res["data"][f"r{i}"] if e["evaluation"] is not None]
        out[(r.asset, r.check, r.partition)] = \
            (runs[0]["runId"], runs[0]["status"], runs[0]["evaluation"]["severity"]) if runs else None
    return out


def _run(args, env):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, **env})


def test_report_lists_every_check_then_a_failed_shard_fails_it(write_config, tmp_path, monkeypatch):
    from spinlock_assets.reports import gather_check_results

    cfg_path = write_config()
    cfg = load_experiment(cfg_path)
    defs = report_definitions(cfg_path)
    graph = defs.resolve_asset_graph()
    assets = [*defs.assets, *defs.asset_checks]  # the file_integrity checks are standalone
    sensor = defs.resolve_sensor_def("run_failure_log")
    paths = ExperimentPaths.for_config(cfg)
    reports_dir = paths.root / "reports"
    partitioned = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None]
    expected = _expected_count(graph)
    # 3 + 1 parameter (file_integrity) + 4 + 1 dataset checks, 18 + 5 shard checks x 3 shards
    assert expected == 78

    dhome = tmp_path / "dagster"  # a persistent instance, as `make instance` sets it up
    dhome.mkdir()
    (dhome / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(dhome)) as instance:
        run = lambda sel, pk=None: dg.materialize(assets, selection=sel, partition_key=pk, instance=instance,  # noqa: E731
                                                  resources=defs.resources, raise_on_error=False)
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=defs.resources))

        assert run([dg.AssetKey("parameters")]).success
        # expected but never run: listed as "not run", not dropped
        early = gather_check_results(instance, defs)
        assert len(early) == expected
        assert {r.asset for r in early if r.passed} == {"parameters"}
        assert sum(r.passed is None for r in early) == expected - 4
        assert all(r.severity is None and r.run_id is None for r in early if r.passed is None)

        for pk in SHARDS:
            assert run(partitioned, pk).success
        assert run([dg.AssetKey("dataset")]).success
        r = run([dg.AssetKey("check_report")])
        assert r.success
        meta = r.asset_materializations_for_node("check_report")[0].metadata
        assert (meta["total"].value, meta["passed"].value, meta["failed_blocking"].value) == (expected, expected, 0)
        assert "| features/summary | nan_inf | yes | ERROR | 3 | 0 | 0 | - |" in meta["summary"].value
        doc = json.loads((reports_dir / "check_report.json").read_text())
        assert doc["summary"]["total"] == expected and doc["summary"]["passed"] == expected
        assert {(d["asset"], d["check"]) for d in doc["records"] if d["partition"] == "shard-0001"} >= {
            ("initial_conditions", "ic_balance"), ("rollouts", "policy_balance"), ("features/summary", "nan_inf")}
        summary_rec = next(d for d in doc["records"] if d["check"] == "policy_balance" and d["partition"] == "shard-0002")
        assert summary_rec["thresholds"]["tolerance"] > 0 and "max_deviation" in summary_rec["values"]
        assert summary_rec["run_id"] and summary_rec["ran_at"].endswith("Z")

        # one poisoned shard: its blocking nan_inf check fails, the run fails
        monkeypatch.setattr(extract.RolloutFeatures, "stage_arrays", _poisoned_stage_arrays)
        bad = run(partitioned, "shard-0001")
        assert not bad.success
        records = gather_check_results(instance, defs)
        assert len(records) == expected
        failed = [x for x in records if x.passed is False]
        assert [(x.asset, x.check, x.partition, x.severity, x.blocking) for x in failed] == [
            ("features/summary", "nan_inf", "shard-0001", "ERROR", True)]
        assert failed[0].run_id == bad.run_id and "energy_growth" in failed[0].description
        # measured values next to their thresholds (tables live under table/<name>)
        assert failed[0].thresholds == {"undocumented_nan": 0, "inf": 0}
        assert failed[0].values["summary.aggregated.features/undocumented_nan"] == 1
        assert failed[0].values["summary.aggregated.features/inf_total"] == 0
        # what we read is what Dagster's GraphQL API reports for every check and partition
        gql = _graphql_latest(instance, records)
        assert all(gql[(x.asset, x.check, x.partition)] == (x.run_id, "SUCCEEDED" if x.passed else "FAILED", x.severity)
                   for x in records)

        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor, resources=defs.resources))

    # the report run through the `dagster` CLI (a code-location run): it fails loudly, after writing
    env = {"SPINLOCK_CONFIG": str(cfg_path), "DAGSTER_HOME": str(dhome), "DAGSTER_DISABLE_TELEMETRY": "1",
           "PYTHONPATH": str(ROOT)}
    defs_file = tmp_path / "report_defs.py"
    defs_file.write_text(f"from tests.assets.test_check_report import report_definitions\n\n"
                         f"defs = report_definitions({str(cfg_path)!r})\n")
    for f in REPORT_FILES.values():
        (reports_dir / f).unlink()
    p = _run([BIN / "dagster", "asset", "materialize", "-f", defs_file, "--select", "check_report"], env)
    assert p.returncode != 0, p.stderr[-3000:]
    assert "1 blocking check(s) failed" in p.stderr and "features/summary:nan_inf[shard-0001]" in p.stderr
    assert "32 checks expected by the code location's repository" in p.stderr
    doc = json.loads((reports_dir / "check_report.json").read_text())
    row = next(d for d in doc["records"]
               if (d["asset"], d["check"], d["partition"]) == ("features/summary", "nan_inf", "shard-0001"))
    assert (row["status"], row["severity"], row["blocking"]) == ("failed", "ERROR", True)
    md = (reports_dir / "check_report.md").read_text()
    assert "## Failed blocking checks" in md and "| FAIL | features/summary | nan_inf | shard-0001 | ERROR | yes |" in md
    assert "<td class=\"status\">FAIL</td><td>features/summary</td><td>nan_inf</td><td>shard-0001</td>" in \
        (reports_dir / "check_report.html").read_text()

    # `spinlock report` outside Dagster, from the same instance: the same records, exit 1
    out = tmp_path / "out"
    p = _run([BIN / "spinlock", "report", "--out", out], env)
    assert p.returncode == 1, p.stderr[-3000:]
    assert f"{expected - 1}/{expected} passed, 1 failed (1 blocking), 0 not run" in p.stdout
    assert "FAILED features/summary:nan_inf[shard-0001] (ERROR, blocking)" in p.stderr
    assert sorted(f.name for f in out.iterdir()) == sorted(REPORT_FILES.values())
    assert records_from_json((out / "check_report.json").read_text()) == \
        records_from_json((reports_dir / "check_report.json").read_text())

    # the sensor's tick picked up the failed shard run (in-process runs belong to no other location)
    lines = (paths.root / "failures.log").read_text().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert f"run={bad.run_id}" in line and "partition=shard-0001" in line
    assert "features/summary" in line.split("assets=")[1].split()[0]
    assert "failed_checks=features/summary:nan_inf(ERROR)" in line
    assert "blocking asset check failed" in line


def test_failure_sensor_names_asset_partition_and_error(write_config):
    """Evaluated as the docs show (`build_run_status_sensor_context`): an asset that raises."""
    cfg_path = write_config()
    defs = report_definitions(cfg_path)
    sensor = defs.resolve_sensor_def("run_failure_log")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    log = ExperimentPaths.for_config(load_experiment(cfg_path)).root / "failures.log"
    with dg.instance_for_test() as instance:
        # no parameters yet: the shard's rollouts cannot start
        r = dg.materialize(list(defs.assets), selection=[dg.AssetKey("rollouts")], partition_key="shard-0001",
                           instance=instance, resources=defs.resources, raise_on_error=False)
        assert not r.success
        ctx = dg.build_run_status_sensor_context(
            sensor_name="run_failure_log", dagster_event=r.get_run_failure_event(), dagster_instance=instance,
            dagster_run=r.dagster_run, resources={"storage": defs.resources["storage"]})
        sensor(ctx)
        sensor(ctx)
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]  # appended, never overwritten
    line = lines[0]
    assert line[:20].endswith("Z") and " RUN FAILURE " in line
    assert f"run={r.run_id}" in line and "job=__ephemeral_asset_job__" in line
    assert "partition=shard-0001" in line and "assets=rollouts" in line and "not_materialized=rollouts" in line
    assert "failed_checks=-" in line and "StorageError" in line and "parameters.h5: file not found" in line


def test_cli_dispatch_and_bad_input(tmp_path, monkeypatch, capsys, write_config):
    from spinlock_assets.cli import main

    assert main(["validate", str(ROOT / "configs/experiments/demo.yaml")]) == 0  # core commands still work
    assert capsys.readouterr().out.startswith("OK ")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["report", "--out", str(tmp_path / "o")]) == 2
    assert "DAGSTER_HOME is not set" in capsys.readouterr().err
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "nowhere"))
    assert main(["report", "--out", str(tmp_path / "o")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "o").exists()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    bad = write_config("bad.yaml", sampling__bogus=1)
    assert main(["report", "--out", str(tmp_path / "o"), "--config", str(bad)]) == 2
    assert "sampling.bogus: unknown key" in capsys.readouterr().err
    # an empty instance: every expected check is reported as not run, nothing failed
    assert main(["report", "--out", str(tmp_path / "o"), "--config", str(write_config())]) == 0
    out = capsys.readouterr().out
    assert "0/78 passed, 0 failed (0 blocking), 78 not run" in out
    doc = json.loads((tmp_path / "o" / "check_report.json").read_text())
    assert {d["status"] for d in doc["records"]} == {"not run"}


def test_prefixed_experiments_report_only_their_own_checks(write_config):
    """Several experiments in one UI (key prefixes): each report and sensor keeps to its own."""
    from spinlock_assets import sensors
    from spinlock_assets.assets import reports
    from spinlock_assets.definitions import build_definitions
    from spinlock_assets.experiment import Experiment
    from spinlock_assets.reports import expected_checks

    cfg_path = write_config()
    exp = Experiment(load_experiment(cfg_path), cfg_path, ["a"])
    a, b = (build_definitions(cfg_path, key_prefix=[p]) for p in "ab")
    both = dg.Definitions(assets=[*a.assets, *b.assets], resources=a.resources)
    mine = expected_checks(both, prefix=exp.prefix)
    assert len(mine) == 25 and all(e.key.asset_key.path[0] == "a" for e in mine)
    assert len(expected_checks(both)) == 50
    assert reports.build(exp, ["dataset"])[0].key == dg.AssetKey(["a", "check_report"])
    assert sensors.build(exp)[0].name == "a_run_failure_log"
