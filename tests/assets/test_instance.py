"""Rendering and writing ``$DAGSTER_HOME/dagster.yaml`` (spinlock_assets.instance), validated with
Dagster's own instance-config schema; PostgreSQL itself is exercised in tests/e2e/test_postgres.py."""

from __future__ import annotations

import logging

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import pg_url_from_config

from spinlock_assets import cli
from spinlock_assets.instance import (
    GENERATED_MARK,
    TEMPLATE,
    InstanceConfigError,
    describe_instance,
    instance_yaml,
    main,
    write_instance,
)

PG_VARS = ("SPINLOCK_PG_URL", "SPINLOCK_PG_HOST", "SPINLOCK_PG_PORT", "SPINLOCK_PG_USER", "SPINLOCK_PG_PASSWORD",
           "SPINLOCK_PG_DB", "SPINLOCK_COMPUTE_LOGS")
SECRET = "s3cr@t:/pw"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for v in PG_VARS:
        monkeypatch.delenv(v, raising=False)


def _validated(home, monkeypatch, env):
    """Dagster's instance config of ``home`` and the storage config its storage class would get,
    with ``env`` in the process environment (where Dagster resolves ``{env: VAR}``)."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg, _ = dagster_instance_config(str(home))
    data = InstanceRef.from_dir(str(home)).storage_data
    return cfg, data


def _pg_url(home, monkeypatch, env) -> str:
    """The URL DagsterPostgresStorage would connect to: its config as Dagster processes it."""
    _, data = _validated(home, monkeypatch, env)
    assert (data.module_name, data.class_name) == ("dagster_postgres", "DagsterPostgresStorage")
    result = process_config(DagsterPostgresStorage.config_type(), yaml.safe_load(data.config_yaml))
    assert result.success, result.errors
    return pg_url_from_config(result.value)


def test_sqlite_by_default_keeps_the_template(tmp_path, monkeypatch):
    text = instance_yaml({}, tmp_path)
    assert text.startswith(GENERATED_MARK)
    data = yaml.safe_load(text)
    template = yaml.safe_load(TEMPLATE.read_text())
    assert {k: data[k] for k in template} == template  # pools, run coordinator, telemetry, monitoring
    assert data["storage"] == {"sqlite": {"base_dir": str(tmp_path.resolve())}}
    assert "compute_logs" not in data
    write_instance(tmp_path, {})
    cfg, _ = _validated(tmp_path, monkeypatch, {})
    assert cfg["concurrency"]["pools"]["default_limit"] == template["concurrency"]["pools"]["default_limit"]
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert instance.get_runs_count() == 0
    assert (tmp_path / "history" / "runs.db").exists()  # Dagster's default layout under DAGSTER_HOME


def test_postgres_from_url_references_the_variable(tmp_path, monkeypatch):
    url = "postgresql+psycopg2://spin:s3cr3tpw@db.example:6543/runs"
    env = {"SPINLOCK_PG_URL": url}
    text = instance_yaml(env, tmp_path)
    assert "s3cr3tpw" not in text and "db.example" not in text
    assert yaml.safe_load(text)["storage"] == {"postgres": {"postgres_url": {"env": "SPINLOCK_PG_URL"}}}
    write_instance(tmp_path, env)
    assert _pg_url(tmp_path, monkeypatch, env) == url


def test_postgres_from_host_variables(tmp_path, monkeypatch):
    env = {"SPINLOCK_PG_HOST": "db.example", "SPINLOCK_PG_PORT": "6543", "SPINLOCK_PG_USER": "spinuser",
           "SPINLOCK_PG_PASSWORD": SECRET, "SPINLOCK_PG_DB": "rundb"}
    text = instance_yaml(env, tmp_path)
    for value in env.values():
        assert value not in text
    db = yaml.safe_load(text)["storage"]["postgres"]["postgres_db"]
    assert db == {"scheme": "postgresql+psycopg2", "hostname": {"env": "SPINLOCK_PG_HOST"}, "port": {"env": "SPINLOCK_PG_PORT"},
                  "username": {"env": "SPINLOCK_PG_USER"}, "db_name": {"env": "SPINLOCK_PG_DB"},
                  "password": {"env": "SPINLOCK_PG_PASSWORD"}}
    write_instance(tmp_path, env)
    # the password's @ : / are escaped by dagster-postgres
    assert _pg_url(tmp_path, monkeypatch, env) == "postgresql+psycopg2://spinuser:s3cr%40t%3A/pw@db.example:6543/rundb"


def test_postgres_host_only_uses_defaults_and_no_password(tmp_path, monkeypatch):
    env = {"SPINLOCK_PG_HOST": "db.example"}
    db = yaml.safe_load(instance_yaml(env, tmp_path))["storage"]["postgres"]["postgres_db"]
    assert db == {"scheme": "postgresql+psycopg2", "hostname": {"env": "SPINLOCK_PG_HOST"}, "port": 5432,
                  "username": "spinlock",
                  "db_name": "spinlock"}  # libpq then reads PGPASSWORD / ~/.pgpass
    write_instance(tmp_path, env)
    assert _pg_url(tmp_path, monkeypatch, env) == "postgresql+psycopg2://spinlock@db.example:5432/spinlock"


def test_compute_logs_folder(tmp_path, monkeypatch):
    logs = tmp_path / "shared" / "logs"
    env = {"SPINLOCK_COMPUTE_LOGS": str(logs)}
    home = tmp_path / "dh"
    text = instance_yaml(env, home)
    assert str(logs) not in text
    assert yaml.safe_load(text)["compute_logs"]["config"] == {"base_dir": {"env": "SPINLOCK_COMPUTE_LOGS"}}
    write_instance(home, env)
    _validated(home, monkeypatch, env)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.compute_log_manager.get_captured_local_path(["run", "step"], "out").startswith(str(logs))
    with pytest.raises(InstanceConfigError, match="SPINLOCK_COMPUTE_LOGS='logs' is not an absolute path"):
        instance_yaml({"SPINLOCK_COMPUTE_LOGS": "logs"}, home)


@pytest.mark.parametrize("port", ["abc", "0", "70000", "54.3"])
def test_bad_port_names_the_variable(tmp_path, port):
    with pytest.raises(InstanceConfigError, match=rf"SPINLOCK_PG_PORT='{port}' is not a port number"):
        write_instance(tmp_path, {"SPINLOCK_PG_HOST": "db", "SPINLOCK_PG_PORT": port})
    assert not (tmp_path / "dagster.yaml").exists()


@pytest.mark.parametrize("env, match", [
    ({"SPINLOCK_PG_URL": "postgresql+psycopg2://u:pw@h/d", "SPINLOCK_PG_HOST": "h"}, "both SPINLOCK_PG_URL and SPINLOCK_PG_HOST"),
    ({"SPINLOCK_PG_URL": "postgres://u:hunter2@h/d"}, "SPINLOCK_PG_URL starts with postgres://"),
    ({"SPINLOCK_PG_URL": "mysql://u:hunter2@h/d"}, "SPINLOCK_PG_URL has scheme 'mysql'"),
    ({"SPINLOCK_PG_URL": "postgresql+psycopg2://u:hunter2@h"}, "SPINLOCK_PG_URL needs a host and a database"),
    ({"SPINLOCK_PG_URL": "postgresql+psycopg2://u:hunter2@h:port/d"}, "SPINLOCK_PG_URL is not a valid URL"),
    ({"SPINLOCK_PG_URL": "postgresql+nodriver://u:hunter2@h/d"},
     "SPINLOCK_PG_URL: SQLAlchemy cannot load the driver of scheme 'postgresql\\+nodriver'"),
])
def test_bad_url_errors_name_the_variable_not_the_secret(tmp_path, env, match):
    with pytest.raises(InstanceConfigError, match=match) as e:
        instance_yaml(env, tmp_path)
    assert "hunter2" not in str(e.value)


def test_bare_postgresql_scheme_needs_the_psycopg3_driver(tmp_path):
    """SQLAlchemy 2.1 maps postgresql:// to psycopg 3; without it the error says what to write."""
    import importlib.util

    env = {"SPINLOCK_PG_URL": "postgresql://u:hunter2@h/d"}
    if importlib.util.find_spec("psycopg") is not None:
        assert "postgres_url" in instance_yaml(env, tmp_path)
    else:
        with pytest.raises(InstanceConfigError, match=r"write postgresql\+psycopg2://user:password@host:port/db"):
            instance_yaml(env, tmp_path)


def test_regenerates_its_own_file_and_keeps_a_hand_written_one(tmp_path, caplog):
    path = tmp_path / "dagster.yaml"
    assert write_instance(tmp_path, {}).action == "written"
    assert write_instance(tmp_path, {}).action == "unchanged"
    pg = {"SPINLOCK_PG_HOST": "db", "SPINLOCK_PG_PASSWORD": SECRET}
    assert write_instance(tmp_path, pg).action == "regenerated"  # sqlite -> postgres needs only the env
    assert "postgres" in yaml.safe_load(path.read_text())["storage"]
    assert write_instance(tmp_path, {}).action == "regenerated"
    assert "sqlite" in yaml.safe_load(path.read_text())["storage"]
    assert write_instance(tmp_path, pg, overwrite=False).action == "kept"
    assert "sqlite" in yaml.safe_load(path.read_text())["storage"]

    own = "# mine\ntelemetry:\n  enabled: false\nstorage:\n  sqlite:\n    base_dir: /somewhere\n"
    path.write_text(own)
    with caplog.at_level(logging.INFO, logger="spinlock.instance"):
        assert write_instance(tmp_path, pg).action == "kept"
    assert path.read_text() == own
    assert any("written by hand" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert write_instance(tmp_path, pg, overwrite=True).action == "replaced"
    assert (tmp_path / "dagster.yaml.bak").read_text() == own
    assert "postgres" in yaml.safe_load(path.read_text())["storage"]
    assert SECRET not in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dagster.yaml", "dagster.yaml.bak"]  # no temp files


def test_a_plain_template_copy_is_regenerated(tmp_path):
    """What `make instance` used to write (`cp -n dagster.yaml`) gets its storage block."""
    (tmp_path / "dagster.yaml").write_text(TEMPLATE.read_text())
    assert write_instance(tmp_path, {"SPINLOCK_PG_URL": "postgresql+psycopg2://u@h/d"}).action == "regenerated"


def test_template_must_leave_storage_to_the_module(tmp_path):
    bad = tmp_path / "template.yaml"
    bad.write_text(TEMPLATE.read_text() + "storage:\n  sqlite:\n    base_dir: /x\n")
    with pytest.raises(InstanceConfigError, match=rf"{bad}: the template must not set storage"):
        instance_yaml({}, tmp_path / "dh", template=bad)


def test_module_main_and_cli_report_without_secrets(tmp_path, monkeypatch, capsys):
    home = tmp_path / "dh"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SPINLOCK_PG_HOST", "db.example")
    monkeypatch.setenv("SPINLOCK_PG_PORT", "nope")
    assert main([]) == 2
    assert "SPINLOCK_PG_PORT='nope' is not a port number" in capsys.readouterr().err
    monkeypatch.setenv("SPINLOCK_PG_PORT", "6543")
    monkeypatch.setenv("SPINLOCK_PG_PASSWORD", SECRET)
    assert main([]) == 0
    assert cli.main(["instance"]) == 0
    out = capsys.readouterr().out
    assert "storage: postgres spinlock@db.example:6543/spinlock, password from $SPINLOCK_PG_PASSWORD (set)" in out
    assert SECRET not in out
    monkeypatch.delenv("SPINLOCK_PG_PASSWORD")
    lines = describe_instance(home)
    assert "UNSET: SPINLOCK_PG_PASSWORD" in lines[-1]
    # back to sqlite through the CLI
    for v in ("SPINLOCK_PG_HOST", "SPINLOCK_PG_PORT"):
        monkeypatch.delenv(v)
    assert cli.main(["instance", "--write", "--check"]) == 0
    out = capsys.readouterr().out
    assert f"storage: sqlite under {home}" in out and "connected: SqliteRunStorage, 0 runs" in out
