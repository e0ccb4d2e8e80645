"""Shards per minute through Dagster: the multiprocess executor with 1 and 2 step processes, and the
Celery executor with 1 and 2 workers. Prints one JSON document.

The config is ``configs/experiments/demo.yaml`` (grid 32, T=32, M=3, every feature family) with
``--shards`` shards of ``--operators-per-shard`` operators (default 8 x 16; ``--quick``: 4 x 8),
under another experiment name, CPU, in a temporary folder. Every shard asset
(``initial_conditions``, ``rollouts``, ``features/*``) of every shard is materialized with the real
``dagster asset materialize`` CLI, one run per shard, torch at 1 thread per step
(``resources.compute.config.threads: 1``), in a fresh ``SPINLOCK_HOME`` and sqlite ``DAGSTER_HOME``
per case (``parameters`` is written in-process before the clock starts):

* ``multiprocess_1`` / ``multiprocess_2``: 1 or 2 shard runs at a time, each with
  ``execution.config.multiprocess.max_concurrent: 1`` (one step process at a time per run, each step
  a fresh process): 1 or 2 step processes in all, as with the Celery workers.
* ``celery_1`` / ``celery_2``: a local Redis broker and 1 or 2 ``dagster-celery`` workers
  (``deploy/celery/worker.yaml``, ``-q dagster,gpu``, ``--concurrency 1`` each), started and answering
  ``ping`` before the clock starts (a worker's first task still imports the code location); shard runs
  launched 2 at a time (a backfill under the instance's ``max_concurrent_runs: 2``): the workers are
  the parallel step processes.

Per case: wall seconds, shards per minute, the ratio of shards per minute to the same executor's
1-worker case, and the Dagster overhead per shard = wall seconds x workers / shards - the library's
own time for a shard (the worker-seconds a shard costs beyond the library's work). The library reference is measured first, in a separate process: the same library calls
the assets make (``write_initial_conditions``, ``simulate_shard`` with the rollout families,
``write_feature_family`` for the others) on every shard, torch at 1 thread, no Dagster; the overhead
uses its mean over the shards after the first (the first pays numba/torch warm-up).

    python benchmarks/scale.py [--shards 8] [--operators-per-shard 16] [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procgroup import ProcessGroup  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO = ROOT / "configs/experiments/demo.yaml"
WORKER_YAML = ROOT / "deploy/celery/worker.yaml"
SELECT = "initial_conditions,rollouts,key:features/*"
NAME = "scale_bench"

log = logging.getLogger("scale")


# ----------------------------------------------------------------------------------------------
# processes: each in its own session, stopped by process group


class Group(ProcessGroup):
    """A :class:`ProcessGroup` in the repository root, registered so that :func:`stop_all` stops it."""

    started: list[Group] = []

    def __init__(self, name: str, args: list, env: dict, logfile: Path):
        super().__init__(name, args, env, logfile, cwd=ROOT)
        Group.started.append(self)


def stop_all() -> dict[str, list[int]]:
    left = {}
    for g in reversed(Group.started):
        pids = g.stop()
        if pids:
            left[g.name] = pids
    Group.started.clear()
    return left


class RunFailed(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------------


def bench_config(folder: Path, shards: int, per_shard: int) -> Path:
    d = yaml.safe_load(DEMO.read_text())
    d["metadata"]["name"] = NAME
    d["metadata"]["description"] = f"benchmarks/scale.py: demo.yaml with {shards} shards of {per_shard} operators"
    d["sampling"]["total_samples"] = shards * per_shard
    # the demo's sample-quality thresholds are for its N=128; other sizes are not a sampling study
    d["sampling"]["validation"] = {"max_discrepancy": 1.0, "max_correlation": 1.0}
    d["sampling"]["stratification"]["min_samples_per_stratum"] = 1
    d["dataset"]["storage"]["shard_size"] = per_shard
    d["dataset"]["storage"]["chunk_size"] = min(d["dataset"]["storage"]["chunk_size"], per_shard)
    d["simulation"]["device"] = "cpu"
    d.pop("tokenizer", None)  # not materialized here
    path = folder / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def reference(cfg_path: str, home: str) -> dict:
    """The library alone, one shard after another, torch at 1 thread (run in its own process)."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from spinlock_core.config import load_experiment
    from spinlock_core.features.families import enabled_families
    from spinlock_core.generation import (
        simulate_shard,
        write_feature_family,
        write_initial_conditions,
        write_parameters,
    )
    from spinlock_core.storage.paths import ExperimentPaths

    cfg = load_experiment(cfg_path)
    paths = ExperimentPaths.for_config(cfg, home)
    names = {f.name for f in enabled_families(cfg)}
    rollout_fams = names & {"summary", "temporal"}
    write_parameters(cfg, paths)
    per_shard = []
    for s in range(cfg.num_shards):
        t = time.perf_counter()
        write_initial_conditions(cfg, paths, s)
        simulate_shard(cfg, paths, s, families=rollout_fams)
        for fam in sorted(names - rollout_fams):
            write_feature_family(cfg, paths, s, fam)
        per_shard.append(time.perf_counter() - t)
    return {"families": sorted(names), "seconds_per_shard": per_shard}


def _run_env(base: dict, home: Path, dhome: Path, **extra) -> dict:
    return {**base, "SPINLOCK_HOME": str(home), "DAGSTER_HOME": str(dhome), **extra}


def _new_homes(work: Path, case: str) -> tuple[Path, Path]:
    import dagster as dg

    home = work / case
    dhome = home / "dagster"
    dhome.mkdir(parents=True)
    (dhome / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(dhome)):  # create the sqlite schema once, before any process races on it
        pass
    return home, dhome


def _materialize(args_extra: list, env: dict, logs: Path, name: str) -> Group:
    return Group(name, [BIN / "dagster", "asset", "materialize", "-m", "spinlock_assets.definitions", *args_extra],
                 env, logs / f"{name}.log")


def _check_run(g: Group) -> None:
    rc = g.poll()
    if rc != 0 or "RUN_SUCCESS" not in g.text():
        raise RunFailed(f"{g.name} failed (rc={rc}); log {g.logfile}:\n{g.text()[-3000:]}")


def run_shards(keys: list[str], run_yaml: Path, env: dict, logs: Path, case: str, in_flight: int) -> tuple[float, list[float]]:
    """Materialize every shard asset of ``keys``, one run per shard, at most ``in_flight`` at a time.
    Returns the wall seconds and the seconds of each run."""
    pending, running, done = list(keys), [], []
    t0 = time.perf_counter()
    while pending or running:
        while pending and len(running) < in_flight:
            key = pending.pop(0)
            running.append(_materialize(["--select", SELECT, "--partition", key, "-c", run_yaml], env, logs,
                                        f"{case}_{key}"))
        for g in list(running):
            if g.poll() is not None:
                _check_run(g)
                running.remove(g)
                done.append(g.seconds)
        time.sleep(0.1)
    return time.perf_counter() - t0, done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_workers(n: int, env: dict, broker: str, logs: Path, case: str) -> list[Group]:
    from dagster_celery.make_app import make_app

    names = [f"{case}_w{i + 1}" for i in range(n)]
    workers = [Group(w, [BIN / "dagster-celery", "worker", "start", "-A", "dagster_celery.app", "-y", WORKER_YAML,
                         "-q", "dagster,gpu", "-n", w, "--", "--concurrency", "1"], env, logs / f"{w}.log")
               for w in names]
    app = make_app({"broker": broker, "backend": broker})
    end = time.monotonic() + 120
    while time.monotonic() < end:
        for w in workers:
            if w.poll() is not None:
                raise RunFailed(f"worker {w.name} exited:\n{w.text()[-3000:]}")
        try:
            up = {k.split("@")[0] for reply in app.control.ping(timeout=1.0) for k in reply}
        except Exception as e:  # the broker is starting
            log.info("ping: %s", e)
            time.sleep(0.5)
            continue
        if up >= set(names):
            return workers
    raise RunFailed(f"workers {names} not ready in 120 s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=None, help="number of shards (default 8; --quick: 4)")
    ap.add_argument("--operators-per-shard", type=int, default=None, help="operators per shard (default 16; --quick: 8)")
    ap.add_argument("--quick", action="store_true", help="4 shards of 8 operators")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (logs, data)")
    ap.add_argument("--reference", nargs=2, metavar=("CONFIG", "HOME"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    if a.reference:
        print(json.dumps(reference(*a.reference)))
        return 0
    shards = a.shards or (4 if a.quick else 8)
    per_shard = a.operators_per_shard or (8 if a.quick else 16)
    redis = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)

    def _terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)
    work = a.keep or Path(tempfile.mkdtemp(prefix="spinlock-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    cfg_path = bench_config(work, shards, per_shard)
    keys = [f"shard-{s:04d}" for s in range(shards)]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPINLOCK_", "DAGSTER_"))}
    base.update({"SPINLOCK_CONFIG": str(cfg_path), "DAGSTER_DISABLE_TELEMETRY": "1",
                 "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))})
    threads = {"resources": {"compute": {"config": {"threads": 1}}}}
    out: dict = {
        "config": {"base": "configs/experiments/demo.yaml", "name": NAME, "shards": shards,
                   "operators_per_shard": per_shard, "grid": 32, "timesteps": 32, "realizations": 3, "device": "cpu",
                   "torch_threads_per_step": 1,
                   "assets_per_shard": "initial_conditions, rollouts, features/* (with their asset checks)"},
        "setup": {
            "multiprocess": "one run per shard, N runs in flight (the dagster CLI), each with multiprocess max_concurrent 1: "
                            "N step processes in all, each step a fresh process",
            "celery": "local redis-server; N dagster-celery workers (-q dagster,gpu, --concurrency 1, "
                      "deploy/celery/worker.yaml) up before the clock starts; one run per shard, 2 runs in flight "
                      "(a backfill under max_concurrent_runs: 2); the workers are the parallel step processes",
            "overhead": "dagster_overhead_per_shard_s = wall_s * workers / shards - library.seconds_per_shard_warm",
            "library": "the assets' library calls on every shard in one process without Dagster, torch 1 thread",
        },
        "machine": {"cpus": os.cpu_count(), "loadavg_start": list(os.getloadavg())},
    }
    left: dict = {}
    try:
        # --- the library alone
        ref_home = work / "library"
        t = time.perf_counter()
        r = subprocess.run([sys.executable, __file__, "--reference", str(cfg_path), str(ref_home)], cwd=ROOT,
                           env=_run_env(base, ref_home, ref_home / "dagster"), capture_output=True, text=True,
                           timeout=3600, start_new_session=True)
        if r.returncode != 0:
            raise RunFailed(f"library reference failed:\n{r.stderr[-3000:]}")
        lib = json.loads(r.stdout.strip().splitlines()[-1])
        per = lib["seconds_per_shard"]
        warm = per[1:] or per
        lib_warm = sum(warm) / len(warm)
        out["library"] = {"families": lib["families"], "seconds_per_shard": [round(x, 2) for x in per],
                          "seconds_per_shard_first": round(per[0], 2), "seconds_per_shard_warm": round(lib_warm, 2),
                          "wall_s": round(time.perf_counter() - t, 1)}
        log.info("library: %s", out["library"])

        cases: dict[str, dict] = {}

        def record(case: str, wall: float, runs: list[float], workers: int):
            cases[case] = {"workers": workers, "wall_s": round(wall, 1), "shards_per_minute": round(60 * shards / wall, 3),
                           "run_seconds_mean": round(sum(runs) / len(runs), 1),
                           "dagster_overhead_per_shard_s": round(wall * workers / shards - lib_warm, 1)}
            log.info("%s: %s", case, cases[case])

        def prepare(case: str) -> tuple[Path, Path, dict]:
            home, dhome = _new_homes(work, case)
            env = _run_env(base, home, dhome)
            g = _materialize(["--select", "parameters"], env, logs, f"{case}_parameters")
            g.proc.wait(600)
            _check_run(g)
            return home, dhome, env

        # --- multiprocess
        for k in (1, 2):
            case = f"multiprocess_{k}"
            _, _, env = prepare(case)
            run_yaml = work / f"{case}.yaml"
            run_yaml.write_text(yaml.safe_dump({"execution": {"config": {"multiprocess": {"max_concurrent": 1}}}, **threads}))
            wall, runs = run_shards(keys, run_yaml, env, logs, case, in_flight=k)
            record(case, wall, runs, k)

        # --- celery
        if redis is None:
            out["celery_skipped"] = "redis-server is not installed"
        else:
            port = _free_port()
            Group("redis", [redis, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                            "--daemonize", "no", "--dir", work], base, logs / "redis.log")
            for db, k in enumerate((1, 2)):
                case = f"celery_{k}"
                broker = f"redis://127.0.0.1:{port}/{db}"
                _, _, env = prepare(case)
                env = {**env, "SPINLOCK_CELERY_BROKER": broker}
                workers = start_workers(k, {**env, "SPINLOCK_CELERY_BACKEND": broker}, broker, logs, case)
                run_yaml = work / f"{case}.yaml"
                run_yaml.write_text(yaml.safe_dump({"execution": {"config": {"celery": {}}}, **threads}))
                wall, runs = run_shards(keys, run_yaml, env, logs, case, in_flight=2)
                record(case, wall, runs, k)
                used = [w.name for w in workers if "Task execute_plan" in w.text()]
                cases[case]["workers_that_ran_steps"] = used
                for w in workers:
                    pids = w.stop()
                    if pids:
                        left[w.name] = pids
                    Group.started.remove(w)

        for kind in ("multiprocess", "celery"):
            one = cases.get(f"{kind}_1")
            for k in (1, 2):
                c = cases.get(f"{kind}_{k}")
                if one and c:
                    c["ratio_to_1_worker"] = round(c["shards_per_minute"] / one["shards_per_minute"], 3)
        out["cases"] = cases
        out["machine"]["loadavg_end"] = list(os.getloadavg())
        out["work_dir"] = str(work) if a.keep else None
    except (RunFailed, KeyboardInterrupt) as e:
        log.error("%s", e)
        out["error"] = str(e)[-2000:]
    finally:
        left.update(stop_all())
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    if left:
        out["processes_left_running"] = left
    print(json.dumps(out, indent=2))
    return 1 if ("error" in out or left) else 0


if __name__ == "__main__":
    sys.exit(main())
