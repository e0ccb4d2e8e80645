"""The executor of a run is a per-run choice (in_process, multiprocess, celery, k8s) whose default
comes from the experiment's ``orchestration`` section; the device and threads of a run are the
``compute`` resource's settings (shown in the launchpad), never read from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def _job(defs):
    return defs.resolve_implicit_global_asset_job_def()


def _executor_schema_default(defs):
    field = _job(defs).executor_def.config_schema.as_field()
    return field.default_value


def test_default_executor_comes_from_the_experiment_and_every_engine_is_a_run_config_choice(write_config):
    from spinlock_assets.definitions import build_definitions

    demo = build_definitions(ROOT / "configs/experiments/demo.yaml")
    assert _job(demo).executor_def.name == "spinlock"
    assert _executor_schema_default(demo) == {"in_process": {}}
    multi = build_definitions(write_config(orchestration={"executor": "multiprocess", "max_concurrent": 2}))
    assert _executor_schema_default(multi) == {"multiprocess": {"max_concurrent": 2}}
    celery = build_definitions(write_config("c.yaml", orchestration={"executor": "celery"}))
    assert _executor_schema_default(celery) == {"celery": {}}  # the broker is never written into a file

    job = _job(demo)
    for choice in ({"in_process": {}}, {"multiprocess": {"max_concurrent": 2}},
                   {"celery": {"broker": "redis://127.0.0.1:6379/0"}}, {"k8s": {"job_namespace": "spinlock"}}):
        assert dg.validate_run_config(job, {"execution": {"config": choice}}), choice
    with pytest.raises(dg.DagsterInvalidConfigError, match="dask"):
        dg.validate_run_config(job, {"execution": {"config": {"dask": {}}}})
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurent"):
        dg.validate_run_config(job, {"execution": {"config": {"multiprocess": {"max_concurent": 2}}}})


def test_orchestration_section_is_validated_and_never_changes_the_data(write_config):
    from spinlock_core.config import ConfigError, load_experiment
    from spinlock_core.storage.fingerprints import code_version

    with pytest.raises(ConfigError, match=r"orchestration\.executor"):
        load_experiment(write_config("bad.yaml", orchestration={"executor": "slurm"}))
    a = load_experiment(write_config("a.yaml"))
    b = load_experiment(write_config("b.yaml", orchestration={"executor": "celery", "max_concurrent": 4}))
    for stage in ("parameters", "initial_conditions", "rollouts", "features_summary", "dataset"):
        assert code_version(a, stage) == code_version(b, stage)


def test_celery_broker_and_backend_come_from_the_environment_when_the_run_starts():
    from spinlock_assets.executors import celery_urls

    env = {"SPINLOCK_CELERY_BROKER": "redis://10.0.0.5:6379/0"}
    assert celery_urls({}, env) == {"broker": "redis://10.0.0.5:6379/0", "backend": "redis://10.0.0.5:6379/0"}
    assert celery_urls({"backend": "rpc://"}, {**env, "SPINLOCK_CELERY_BACKEND": "redis://10.0.0.5:6379/1"})["backend"] \
        == "redis://10.0.0.5:6379/1"
    # an explicit run config wins; an AMQP broker keeps Celery's rpc:// backend
    assert celery_urls({"broker": "pyamqp://h//", "backend": "rpc://"}, env) == {"broker": "pyamqp://h//", "backend": "rpc://"}
    with pytest.raises(dg.Failure, match="SPINLOCK_CELERY_BROKER"):
        celery_urls({}, {})


def test_gpu_steps_take_the_gpu_pool_and_queue_and_cpu_steps_take_neither():
    from spinlock_assets.definitions import build_definitions

    job = _job(build_definitions(ROOT / "configs/experiments/demo.yaml"))
    gpu, cpu = set(), set()
    for node in job.graph.node_defs:
        (gpu if node.tags.get("dagster-celery/queue") == "gpu" else cpu).add(node.name)
        assert (node.pool == "gpu") == (node.tags.get("dagster-celery/queue") == "gpu"), node.name
    assert gpu == {"simulate", "feature_matrix", "tokenizer"}
    assert {"parameters", "initial_conditions", "dataset", "tokens"} <= cpu


def test_compute_resource_is_explicit_run_config_not_environment(monkeypatch):
    from spinlock_assets.definitions import build_definitions
    from spinlock_assets.resources import ComputeResource

    monkeypatch.setenv("SPINLOCK_DEVICE", "cuda")  # the old variable: ignored now
    defs = build_definitions(ROOT / "configs/experiments/demo.yaml")
    compute = defs.resources["compute"]
    assert compute.device == "auto" and compute.threads == 0
    fields = compute.get_resource_definition().config_schema.as_field().config_type.fields
    assert {"device", "threads"} <= set(fields)  # the launchpad's resources.compute.config
    assert ComputeResource(device="cpu").torch_device() == "cpu"
    assert ComputeResource(device="cuda:1").torch_device() == "cuda:1"
    assert ComputeResource().torch_device() is None  # each stage's config decides
    with pytest.raises(dg.Failure, match=r"resources\.compute\.config\.device: 'gpu'"):
        ComputeResource(device="gpu").torch_device()


@pytest.mark.slow
def test_a_run_config_switches_one_run_to_the_multiprocess_executor(write_config, tmp_path):
    """The real CLI: the same code location runs one materialization in-process and the next one
    with one subprocess per step, chosen by the run config alone."""
    home = tmp_path / "sl"
    dhome = home / "dagster"
    dhome.mkdir(parents=True)
    (dhome / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    run_cfg = tmp_path / "mp.yaml"
    run_cfg.write_text("execution:\n  config:\n    multiprocess:\n      max_concurrent: 2\n"
                       "resources:\n  compute:\n    config:\n      threads: 1\n")
    env = {**os.environ, "SPINLOCK_CONFIG": str(write_config()), "SPINLOCK_HOME": str(home), "DAGSTER_HOME": str(dhome),
           "DAGSTER_DISABLE_TELEMETRY": "1"}
    base = [str(BIN / "dagster"), "asset", "materialize", "-m", "spinlock_assets.definitions"]
    r1 = subprocess.run([*base, "--select", "parameters"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r1.returncode == 0, r1.stderr[-3000:]
    assert "Executing steps in process" in r1.stderr
    r2 = subprocess.run([*base, "--select", "initial_conditions,features/architecture", "--partition", "shard-0000",
                         "-c", str(run_cfg)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "Executing steps using multiprocess executor" in r2.stderr
    assert r2.stderr.count("Launching subprocess for") >= 2
    assert (home / "data/tiny").exists()


def test_the_executor_choice_never_changes_a_file(write_config, tmp_path):
    from spinlock_core.config import load_experiment
    from spinlock_core.generation import write_parameters
    from spinlock_core.storage.paths import ExperimentPaths

    a = load_experiment(write_config("a.yaml"))
    b = load_experiment(write_config("b.yaml", orchestration={"executor": "celery"}))
    pa, pb = ExperimentPaths.for_config(a, tmp_path / "a"), ExperimentPaths.for_config(b, tmp_path / "b")
    write_parameters(a, pa)
    write_parameters(b, pb)
    assert pa.parameters.read_bytes() == pb.parameters.read_bytes()
