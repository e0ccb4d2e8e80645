"""End to end through Celery: a real Redis broker, two real Celery workers, the real Dagster CLI.

Two shards of every shard stage go through the ``celery`` branch of the ``spinlock`` executor
(``execution: {config: {celery: {}}}``, broker and backend from the environment), as two concurrent
runs; the same two shards are then built in-process in a separate home and every file must be
byte-identical.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from benchmarks.procgroup import ProcessGroup
from tests.conftest import ROOT

log = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
REDIS = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
WORKER_YAML = ROOT / "deploy/celery/worker.yaml"
SHARDS = ("shard-0000", "shard-0001")
SELECT = "initial_conditions,rollouts,key:features/*"
WORKERS = ("w1", "w2")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REDIS is None, reason="redis-server is not installed (apt-get install redis-server)"),
]


# ----------------------------------------------------------------------------------------------
# processes: each in its own session, stopped by process group


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def Group(name: str, args: list, env: dict, logfile: Path) -> ProcessGroup:
    """A command in its own process group, in the repository root."""
    return ProcessGroup(name, args, env, logfile, cwd=ROOT)


# ----------------------------------------------------------------------------------------------
# helpers


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _h5_attr_diff(a: Path, b: Path) -> str:
    """Which attributes (of any object) differ between two HDF5 files: for the failure message."""
    import h5py

    def attrs(path):
        out = {}
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                for k, v in obj.attrs.items():
                    out[f"{name}@{k}"] = repr(v)
            visit("/", f)
            f.visititems(visit)
        return out

    x, y = attrs(a), attrs(b)
    diff = [f"{k}: {x.get(k, '<absent>')[:120]} != {y.get(k, '<absent>')[:120]}" for k in sorted(set(x) | set(y))
            if x.get(k) != y.get(k)]
    return "; ".join(diff) or "attributes equal (datasets or layout differ)"


def _shard_files(home: Path, exp: str) -> dict[str, Path]:
    root = home / "data" / exp
    files = {str(p.relative_to(root)): p for p in (root / "shards").rglob("*.h5")}
    files["parameters.h5"] = root / "parameters.h5"
    return files


def _metadata_text(value) -> str:
    return str(getattr(value, "value", getattr(value, "text", value)))


def _celery_steps(dhome: Path) -> dict[str, dict]:
    """Per partition: step key -> Celery worker hostname, from the runs' "Executing steps ... in celery
    worker" engine events; plus the steps that succeeded and the queue each was submitted to."""
    import dagster as dg

    out: dict[str, dict] = {}
    with dg.DagsterInstance.from_config(str(dhome)) as inst:
        for run in inst.get_runs():
            part = run.tags.get("dagster/partition")
            if part not in SHARDS:
                continue
            rec = out.setdefault(part, {"status": run.status.value, "worker": {}, "success": set(), "queue": {}})
            for e in inst.all_logs(run.run_id):
                de = e.dagster_event
                if de is None:
                    continue
                if de.event_type_value == "STEP_SUCCESS":
                    rec["success"].add(de.step_key)
                elif de.event_type_value == "ENGINE_EVENT":
                    m = re.match(r'Submitting celery task for step "(.+)" to queue "(.+)"\.', e.message or "")
                    if m:
                        rec["queue"][m.group(1)] = m.group(2)
                    if "in celery worker" in (e.message or ""):
                        md = de.event_specific_data.metadata
                        rec["worker"][de.step_key] = _metadata_text(md["Celery worker"])
    return out


class ActiveTasks(threading.Thread):
    """Polls the workers (`inspect active`, through the broker) while the runs go on: which worker ran
    which step, delivered from which queue (the task's delivery_info on the consuming side)."""

    def __init__(self, app):
        super().__init__(daemon=True)
        self.app, self.seen, self._halt = app, {}, threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                active = self.app.control.inspect(timeout=0.5).active() or {}
            except Exception as e:  # a poll that fails is retried; the assertions see what was seen
                log.warning("inspect active failed: %s", e)
                active = {}
            for host, tasks in active.items():
                for t in tasks:
                    steps = re.findall(r"'step_keys_to_execute': \[([^\]]*)\]", repr(t.get("kwargs")))
                    self.seen[t["id"]] = (host, (t.get("delivery_info") or {}).get("routing_key"),
                                          steps[0].replace("'", "") if steps else "?")
            self._halt.wait(0.3)

    def stop(self):
        self._halt.set()
        self.join(10)


# ----------------------------------------------------------------------------------------------


def test_two_shards_through_two_celery_workers_match_in_process(write_config, tmp_path):
    from dagster_celery.make_app import make_app

    cfg_path = write_config()
    exp = yaml.safe_load(cfg_path.read_text())["metadata"]["name"]
    port = _free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    threads = {"resources": {"compute": {"config": {"threads": 1}}}}
    celery_run = tmp_path / "celery_run.yaml"
    celery_run.write_text(yaml.safe_dump({"execution": {"config": {"celery": {}}}, **threads}))
    local_run = tmp_path / "in_process_run.yaml"
    local_run.write_text(yaml.safe_dump({"execution": {"config": {"in_process": {}}}, **threads}))

    def homes(name):
        import dagster as dg

        home = tmp_path / name
        dhome = home / "dagster"
        dhome.mkdir(parents=True)
        (dhome / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        # create the sqlite storage once, here: processes that open a fresh instance at the same
        # time race on its schema ("table alembic_version already exists")
        with dg.DagsterInstance.from_config(str(dhome)):
            pass
        return home, dhome

    home, dhome = homes("celery")
    ref_home, ref_dhome = homes("in_process")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("SPINLOCK_", "DAGSTER_"))}
    base_env.update({"DAGSTER_DISABLE_TELEMETRY": "1", "SPINLOCK_CONFIG": str(cfg_path),
                     "PATH": f"{BIN}{os.pathsep}{base_env.get('PATH', '')}",
                     "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), base_env.get("PYTHONPATH")]))})
    env = {**base_env, "SPINLOCK_HOME": str(home), "DAGSTER_HOME": str(dhome), "SPINLOCK_CELERY_BROKER": broker}
    # the workers' result backend is the one the runs default to for a Redis broker (the broker)
    worker_env = {**env, "SPINLOCK_CELERY_BACKEND": broker}
    ref_env = {**base_env, "SPINLOCK_HOME": str(ref_home), "DAGSTER_HOME": str(ref_dhome)}
    materialize = [BIN / "dagster", "asset", "materialize", "-m", "spinlock_assets.definitions"]

    groups: list[ProcessGroup] = []

    def start(name, args, e):
        g = Group(name, args, e, tmp_path / f"{name}.log")
        groups.append(g)
        return g

    def finished(g: Group, timeout=300) -> str:
        try:
            rc = g.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{g.name} still running after {timeout}s:\n{g.text()[-3000:]}")
        out = g.text()
        assert rc == 0 and "RUN_SUCCESS" in out, f"{g.name} rc={rc}:\n{out[-4000:]}"
        return out

    t0 = time.monotonic()
    leftovers: dict[str, list[int]] = {}
    poller = None
    try:
        start("redis", [REDIS, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--daemonize", "no", "--dir", tmp_path], base_env)
        workers = [start(w, [BIN / "dagster-celery", "worker", "start", "-A", "dagster_celery.app", "-y", WORKER_YAML,
                             "-q", "dagster,gpu", "-n", w, "--", "--concurrency", "1"], worker_env)
                   for w in WORKERS]
        # parameters (in-process) in both homes while the workers start
        params = [start("params_celery_home", [*materialize, "--select", "parameters"], env),
                  start("params_ref_home", [*materialize, "--select", "parameters"], ref_env)]
        app = make_app({"broker": broker, "backend": broker})
        end = time.monotonic() + 90
        names: set[str] = set()
        while time.monotonic() < end:
            for w in workers:
                assert w.proc.poll() is None, f"worker {w.name} exited:\n{w.text()[-3000:]}"
            try:
                names = {n for reply in app.control.ping(timeout=1.0) for n in reply}
            except Exception as e:  # redis not up yet
                log.info("ping: %s", e)
                time.sleep(0.5)
            if {n.split("@")[0] for n in names} >= set(WORKERS):
                break
        else:
            pytest.fail(f"workers not ready in 90 s (ping: {names}):\n" + "\n".join(w.text()[-2000:] for w in workers))
        for w in workers:  # both workers consume both queues
            banner = w.text()
            assert re.search(r"\.> dagster\s+exchange=", banner) and re.search(r"\.> gpu\s+exchange=", banner), banner[-3000:]
        for g in params:
            finished(g)
        log.info("workers ready, parameters written: %.1fs", time.monotonic() - t0)

        # two partitions at once through Celery, while we watch what the workers run
        poller = ActiveTasks(app)
        poller.start()
        runs = [start(f"celery_{s}", [*materialize, "--select", SELECT, "--partition", s, "-c", celery_run], env)
                for s in SHARDS]
        outs = [finished(g) for g in runs]
        poller.stop()
        log.info("celery runs done: %.1fs", time.monotonic() - t0)

        # the same two shards in-process, in another home
        refs = [start(f"ref_{s}", [*materialize, "--select", SELECT, "--partition", s, "-c", local_run], ref_env)
                for s in SHARDS]
        for g in refs:
            out = finished(g)
            assert "in celery worker" not in out and "Submitting celery task" not in out
        log.info("in-process runs done: %.1fs", time.monotonic() - t0)

        # --- every step of both runs ran in a Celery worker; both workers worked; both queues used
        hostnames = {n for n in names if n.split("@")[0] in WORKERS}
        steps = _celery_steps(dhome)
        assert set(steps) == set(SHARDS), steps
        used = set()
        for part, rec in steps.items():
            assert rec["status"] == "SUCCESS", (part, rec)
            assert "simulate" in rec["success"] and "initial_conditions" in rec["success"], (part, rec)
            assert rec["success"] <= set(rec["worker"]), f"{part}: steps not run in a celery worker: {rec}"
            assert set(rec["worker"].values()) <= hostnames, rec
            used |= set(rec["worker"].values())
            # the GPU steps were submitted to the gpu queue, every other step to dagster's default queue
            assert rec["queue"]["simulate"] == "gpu", rec["queue"]
            assert {q for k, q in rec["queue"].items() if k != "simulate"} == {"dagster"}, rec["queue"]
        assert used == hostnames, f"both workers should have run steps: {steps}"
        # ... and the workers received them from those queues (delivery_info seen by `inspect active`)
        seen = list(poller.seen.values())
        log.info("tasks seen running: %s", seen)
        assert ("simulate" in {s for _, _, s in seen}), seen
        for host, queue, step in seen:
            assert queue == ("gpu" if step == "simulate" else "dagster"), seen
            assert host in hostnames, seen
        assert {q for _, q, _ in seen} == {"gpu", "dagster"}, seen
        received = sum(len(re.findall(r"Task execute_plan\[[0-9a-f-]+\] received", w.text())) for w in workers)
        assert received >= sum(len(r["worker"]) for r in steps.values()), received
        assert all("Task execute_plan" in w.text() for w in workers)
        assert not any("did not pass" in o for o in outs)

        # --- byte identity with the in-process build
        got, want = _shard_files(home, exp), _shard_files(ref_home, exp)
        assert set(got) == set(want), (sorted(got), sorted(want))
        stages = {Path(k).parent.name for k in got if k.startswith("shards/")}
        assert {"initial_conditions", "rollouts", "features_summary", "features_temporal",
                "features_architecture"} <= stages, stages
        assert {Path(k).stem for k in got if k.startswith("shards/")} == set(SHARDS), sorted(got)
        diffs = [f"{k}: {_h5_attr_diff(got[k], want[k])}" for k in sorted(got) if _sha256(got[k]) != _sha256(want[k])]
        assert not diffs, "files differ between the Celery and the in-process build:\n" + "\n".join(diffs)
        assert not list((home / "data" / exp).rglob("*.tmp-*")) and not (home / "data" / exp / "quarantine").exists()
    finally:
        try:
            if poller is not None:
                poller.stop()
        finally:
            for g in reversed(groups):
                left = g.stop()
                if left:
                    leftovers[g.name] = left
    assert not leftovers, f"processes left running: {leftovers}"
    assert all(g.proc.returncode is not None for g in groups)
    log.info("total %.1fs", time.monotonic() - t0)
