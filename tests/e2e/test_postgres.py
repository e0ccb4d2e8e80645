"""A Dagster instance on a real PostgreSQL server (issue #9, shared instance storage).

The fixture runs ``initdb`` and ``pg_ctl`` from Debian's ``postgresql`` package (``.ci/run``
installs it) in a temporary folder: a server on 127.0.0.1 at a free port, its unix socket in
that folder, a role with a password. The instance file comes from ``write_instance`` with the
``SPINLOCK_PG_*`` variables, so the password only ever travels through the environment. Two
processes then share the instance at once, as two hosts would: this one materializes
``shard-0000`` in-process while ``dagster asset materialize`` runs ``shard-0001``.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import ROOT

log = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
DEMO = ROOT / "configs/experiments/demo.yaml"
SHARD_ASSETS = ["initial_conditions", "rollouts", "features/summary", "features/temporal", "features/architecture",
                "features/initial"]
SHARDS = ["shard-0000", "shard-0001"]
ROLE = DB = "spinlock_ci"


def _pg_binaries() -> tuple[Path, Path] | None:
    """``(initdb, pg_ctl)``: the newest ``/usr/lib/postgresql/*/bin`` (Debian), else ``PATH``."""
    def version(d: str) -> int:
        m = re.search(r"/postgresql/(\d+)/", d)
        return int(m.group(1)) if m else 0

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin/"), key=version, reverse=True):
        if os.access(Path(d, "initdb"), os.X_OK) and os.access(Path(d, "pg_ctl"), os.X_OK):
            return Path(d, "initdb"), Path(d, "pg_ctl")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return (Path(initdb), Path(pg_ctl)) if initdb and pg_ctl else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One throwaway PostgreSQL cluster under ``root``; as root its programs run as ``postgres``
    (the server refuses to run as root) and ``root`` belongs to that user."""

    def __init__(self, initdb: Path, pg_ctl: Path, root: Path):
        self.initdb, self.pg_ctl, self.root = initdb, pg_ctl, root
        self.data, self.logfile = root / "data", root / "server.log"
        self.port = _free_port()
        self.password = f"p@ss:{secrets.token_hex(8)}/w"  # characters a URL must escape
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root, PostgreSQL needs the `postgres` system user (the Debian package "
                            "creates it): none exists")
            os.chown(root, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, *map(str, args)], check=False, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout)

    def _log_tail(self) -> str:
        return self.logfile.read_text()[-3000:] if self.logfile.exists() else "(no server log)"

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(secrets.token_hex(16) + "\n")  # the superuser's; only the socket (trust) uses it
        if self.as_user:
            shutil.chown(pwfile, "postgres")
        r = self._run(self.initdb, "-D", self.data, "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync",
                      "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}")
        pwfile.unlink()
        assert r.returncode == 0, f"initdb failed:\n{r.stdout}\n{r.stderr}"
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        r = self._run(self.pg_ctl, "-D", self.data, "-l", self.logfile, "-o", opts, "-w", "-t", "60", "start",
                      timeout=90)
        assert r.returncode == 0, f"pg_ctl start failed:\n{r.stdout}\n{r.stderr}\n{self._log_tail()}"
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(host=str(self.root), port=self.port, user="postgres", dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the server does not accept connections:\n{self._log_tail()}") from None
                time.sleep(0.2)
        conn.autocommit = True  # CREATE DATABASE runs outside a transaction (so no `with conn:`)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD %s", (self.password,))
                cur.execute(f"CREATE DATABASE {DB} OWNER {ROLE}")
        finally:
            conn.close()

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        return self._run(self.pg_ctl, "-D", self.data, "status").returncode == 0

    def stop(self) -> None:
        if not self.data.exists():
            return
        pid = self.pid()
        r = self._run(self.pg_ctl, "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop", timeout=60)
        if r.returncode == 0 or pid is None:
            return
        log.warning("pg_ctl stop failed (%s): killing the server's process group %d", r.stderr.strip(), pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)  # pg_ctl starts the postmaster in its own session
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def env(self) -> dict[str, str]:
        return {"SPINLOCK_PG_HOST": "127.0.0.1", "SPINLOCK_PG_PORT": str(self.port), "SPINLOCK_PG_USER": ROLE,
                "SPINLOCK_PG_PASSWORD": self.password, "SPINLOCK_PG_DB": DB}

    def connect(self):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=ROLE, password=self.password, dbname=DB)


@pytest.fixture
def postgres():
    found = _pg_binaries()
    if found is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl under /usr/lib/postgresql/*/bin or on PATH); "
                    ".ci/run installs Debian's `postgresql` package")
    root = Path(tempfile.mkdtemp(prefix="spinlock-pg-"))  # not under pytest's 0700 tmp: `postgres` must enter it
    server = PgServer(*found, root)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_demo_shards_on_a_shared_postgres_instance(postgres, tmp_path, monkeypatch):
    from spinlock_assets.definitions import build_definitions
    from spinlock_assets.instance import write_instance
    from spinlock_assets.reports import gather_check_results
    from spinlock_assets.resources import ComputeResource

    pg_env = postgres.env()
    for k in ("SPINLOCK_PG_URL", "SPINLOCK_COMPUTE_LOGS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in pg_env.items():
        monkeypatch.setenv(k, v)  # where Dagster resolves the {env: VAR} of the instance file
    dhome = tmp_path / "dagster"
    monkeypatch.setenv("DAGSTER_HOME", str(dhome))
    assert write_instance(dhome, os.environ).action == "written"
    text = (dhome / "dagster.yaml").read_text()
    assert postgres.password not in text and "port: {env: SPINLOCK_PG_PORT}" in text
    assert "password: {env: SPINLOCK_PG_PASSWORD}" in text

    defs = build_definitions(DEMO)
    assets = [*defs.assets, *defs.asset_checks]  # with the standalone file_integrity checks
    shard_keys = [dg.AssetKey.from_user_string(k) for k in SHARD_ASSETS]
    one_thread = {**defs.resources, "compute": ComputeResource(threads=1)}  # two runs share 2 cores
    cli_env = {**os.environ, "SPINLOCK_CONFIG": str(DEMO), "DAGSTER_DISABLE_TELEMETRY": "1"}
    t0 = time.perf_counter()
    with dg.DagsterInstance.from_config(str(dhome)) as instance:
        assert "Postgres" in type(instance.run_storage).__name__
        assert "Postgres" in type(instance.event_log_storage).__name__
        r = dg.materialize(assets, selection=[dg.AssetKey("parameters")], instance=instance, resources=one_thread)
        assert r.success
        # shard-0001 through the real CLI in a second process while this one runs shard-0000
        cli = subprocess.Popen(
            [BIN / "dagster", "asset", "materialize", "-m", "spinlock_assets.definitions",
             "--select", ",".join(SHARD_ASSETS), "--partition", SHARDS[1],
             "--config-json", '{"resources": {"compute": {"config": {"threads": 1}}}}'],
            cwd=ROOT, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            r = dg.materialize(assets, selection=shard_keys, partition_key=SHARDS[0], instance=instance,
                               resources=one_thread)
            out, _ = cli.communicate(timeout=300)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert r.success
        assert cli.returncode == 0 and "RUN_SUCCESS" in out, out[-3000:]
        assert "did not pass" not in out
    log.info("parameters + 2 shards on PostgreSQL: %.1fs", time.perf_counter() - t0)

    # read everything back through a new instance object
    with dg.DagsterInstance.from_config(str(dhome)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs()
        assert len(runs) == 3 and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        assert instance.fetch_materializations(dg.AssetKey("parameters"), limit=10).records
        for key in shard_keys:
            recs = instance.fetch_materializations(key, limit=10).records
            assert sorted(rec.partition_key for rec in recs) == SHARDS, key
            assert instance.get_materialized_partitions(key) == set(SHARDS), key
        results = gather_check_results(instance, defs)
    by_key = {(c.asset, c.check, c.partition): c.passed for c in results}
    assert by_key[("parameters", "sobol_discrepancy", None)] is True
    ours = {k: v for k, v in by_key.items() if k[0] in SHARD_ASSETS}
    done = {k: v for k, v in ours.items() if k[2] in SHARDS}
    assert {("initial_conditions", "ic_balance"), ("rollouts", "divergence"), ("features/summary", "nan_inf")} \
        <= {k[:2] for k in done}
    assert all(done.values()), {k: v for k, v in done.items() if not v}
    assert all(v is None for k, v in ours.items() if k[2] not in SHARDS)  # shard-0002/3: not run

    # the records are in the server, not in sqlite files
    with contextlib.closing(postgres.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] == 3
        cur.execute("SELECT DISTINCT partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
                    "AND asset_key = %s", ('["rollouts"]',))
        assert sorted(row[0] for row in cur.fetchall()) == SHARDS
    assert not list(dhome.rglob("*.db")) and not (dhome / "history").exists()

    # `spinlock instance --check`: what the instance uses, no password, and that it reaches the server
    r = subprocess.run([BIN / "spinlock", "instance", "--check"], check=False, cwd=ROOT, env=cli_env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"storage: postgres {ROLE}@127.0.0.1:{postgres.port}/{DB}" in r.stdout
    assert "connected: PostgresRunStorage, 3 runs" in r.stdout
    assert postgres.password not in r.stdout + r.stderr

    postgres.stop()
    assert not postgres.running() and postgres.pid() is None
    import psycopg2

    with pytest.raises(psycopg2.OperationalError):
        postgres.connect()
