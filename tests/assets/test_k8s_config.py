"""The Kubernetes example (``deploy/k8s/``) loaded with the installed dagster-k8s package.

No cluster is contacted: the run launcher and the step handler read a kubeconfig that points at
``https://127.0.0.1:1`` and only build their API clients. What is real: the run config is validated
against the code location's job; the ``spinlock`` executor creates dagster-k8s's own
``StepDelegatingExecutor`` / ``K8sStepHandler`` from it; the step handler's own merge of the
instance's run launcher, the code location's container context, ``step_k8s_config`` and
``per_step_k8s_config`` is called for each step, and ``construct_dagster_k8s_job`` builds the
Kubernetes Job body that ``launch_step`` would submit. The instance file is validated by Dagster's
instance schema and the K8sRunLauncher's own config schema. ``values.yaml`` cannot be rendered here
(no helm): only its structure is checked.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import create_context_free_log_manager
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.init import InitExecutorContext
from dagster._core.executor.step_delegating import StepHandlerContext
from dagster._core.instance.config import dagster_instance_config
from dagster._core.storage.config import pg_config
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._core.test_utils import create_run_for_test, instance_for_test
from dagster._grpc.types import ExecuteStepArgs
from dagster_k8s import K8sRunLauncher
from dagster_k8s.executor import K8sStepHandler
from dagster_k8s.job import construct_dagster_k8s_job

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "k8s"
CONFIG = ROOT / "configs" / "experiments" / "demo.yaml"
GPU_OPS = {"simulate", "feature_matrix", "tokenizer"}
DATA_MOUNT = "/data/spinlock"
PVC = "spinlock-data"


def _load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture(scope="module")
def job():
    from spinlock_assets.definitions import build_definitions

    return build_definitions(CONFIG).resolve_implicit_global_asset_job_def()


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory) -> str:
    """A kubeconfig whose only cluster is a closed local port: nothing can be reached with it."""
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "nobody", "user": {"token": "not-a-credential"}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody", "namespace": "spinlock"}}],
    }))
    return str(path)


def _launcher_config(kubeconfig: str) -> dict:
    """deploy/k8s/dagster.yaml's run launcher config, pointed at the dummy kubeconfig (the file
    itself says load_incluster_config: true, which needs a pod's service account)."""
    config = dict(_load("dagster.yaml")["run_launcher"]["config"])
    assert config["load_incluster_config"] is True
    config.update(load_incluster_config=False, kubeconfig_file=kubeconfig)
    return config


# -- run_config.yaml ------------------------------------------------------------------------------


def test_run_config_validates_against_the_code_location_job(job):
    run_config = _load("run_config.yaml")
    validated = dg.validate_run_config(job, run_config)
    k8s = validated["execution"]["spinlock"]["k8s"]
    assert k8s["job_namespace"] == "spinlock"
    assert set(k8s["per_step_k8s_config"]) == GPU_OPS
    assert validated["resources"]["compute"]["config"]["device"] == "cuda"


def test_per_step_keys_are_ops_of_the_job_and_gpu_ops_take_the_gpu_pool(job):
    """per_step_k8s_config is a Map keyed by op name: a misspelt key would validate and do nothing."""
    per_step = _load("run_config.yaml")["execution"]["config"]["k8s"]["per_step_k8s_config"]
    ops = {node.definition.name: node.definition for node in job.graph.node_dict.values()}
    assert set(per_step) <= set(ops)
    assert {name for name, op in ops.items() if op.pool == "gpu"} == GPU_OPS == set(per_step)


@pytest.fixture(scope="module")
def k8s_jobs(job, kubeconfig):
    """The Kubernetes Job body of every step of the run, as dagster-k8s builds it for launch_step."""
    run_config = _load("run_config.yaml")
    user_deployment = _load("values.yaml")["dagster-user-deployments"]["deployments"][0]
    # what the chart passes as the code server's container context with includeConfigInLaunchedRuns
    container_context = {"k8s": {"env": user_deployment["env"], "volumes": user_deployment["volumes"],
                                 "volume_mounts": user_deployment["volumeMounts"]}}
    origin = ReconstructableRepository.for_module(
        "spinlock_assets.definitions", "defs", working_directory=str(ROOT),
        container_image="registry.example.org/spinlock:0.1.0", container_context=container_context,
    ).get_reconstructable_job(job.name).get_python_origin()

    with instance_for_test(overrides={"run_launcher": {
        "module": "dagster_k8s", "class": "K8sRunLauncher", "config": _launcher_config(kubeconfig),
    }}) as instance:
        assert isinstance(instance.run_launcher, K8sRunLauncher)
        resolved = ResolvedRunConfig.build(job, run_config)
        assert resolved.execution.execution_engine_name == "spinlock"
        executor = job.executor_def.executor_creation_fn(InitExecutorContext(
            job=_in_memory(job), executor_def=job.executor_def,
            executor_config=resolved.execution.execution_engine_config, instance=instance,
        ))
        handler = executor._step_handler
        assert isinstance(handler, K8sStepHandler)

        run = create_run_for_test(instance, job_name=job.name, run_config=run_config, job_code_origin=origin)
        plan = create_execution_plan(job, run_config=run_config)
        plan_context = PlanOrchestrationContext(
            plan_data=PlanData(job=_in_memory(job), dagster_run=run, instance=instance, execution_plan=plan,
                               raise_on_error=True, retry_mode=RetryMode.DISABLED),
            log_manager=create_context_free_log_manager(instance, run), executor=executor, output_capture=None,
        )
        out = {}
        for step in plan.steps:
            ctx = StepHandlerContext(instance=instance, plan_context=plan_context, steps=plan.steps,
                                     execute_step_args=ExecuteStepArgs(origin, run.run_id, [step.key]),
                                     dagster_run=run)
            container_context = handler._get_container_context(ctx)
            job_config = container_context.get_k8s_job_config(None, instance.run_launcher)
            if not job_config.job_image:
                job_config = job_config.with_image(origin.repository_origin.container_image)
            out[step.key] = (container_context, construct_dagster_k8s_job(
                job_config=job_config, args=["dagster", "api", "execute_step"], job_name=f"step-{step.key}",
                pod_name=f"step-{step.key}", component="step_worker",
                user_defined_k8s_config=container_context.run_k8s_config,
                labels={"dagster/op": step.key}, env_vars=[],
            ))
        yield out


def _in_memory(job):
    from dagster._core.definitions.job_base import InMemoryJob

    return InMemoryJob(job)


def _container(k8s_job):
    (container,) = k8s_job.spec.template.spec.containers
    return container


def test_gpu_limit_node_selector_and_toleration_reach_only_the_gpu_steps(k8s_jobs):
    assert GPU_OPS < set(k8s_jobs)
    for key, (_ctx, k8s_job) in k8s_jobs.items():
        resources = _container(k8s_job).resources
        limits, requests = resources.limits or {}, resources.requests or {}
        pod = k8s_job.spec.template.spec
        if key in GPU_OPS:
            assert str(limits.get("nvidia.com/gpu")) == "1", key  # a Kubernetes quantity
            # step_k8s_config (CPU defaults) and per_step_k8s_config are deep-merged, the step wins
            assert requests["cpu"] in {"2", "4"} and limits["memory"] == "32Gi", key
            assert pod.node_selector == {"nvidia.com/gpu.present": "true"}, key
            assert [t.key for t in pod.tolerations] == ["nvidia.com/gpu"], key
        else:
            assert "nvidia.com/gpu" not in limits and "nvidia.com/gpu" not in requests, key
            assert requests == {"cpu": "1", "memory": "4Gi"} and limits == {"memory": "8Gi"}, key
            assert not pod.node_selector and not pod.tolerations, key
    ctx, _ = k8s_jobs["initial_conditions"]
    assert "nvidia.com/gpu" not in ctx.run_k8s_config.container_config["resources"].get("limits", {})
    assert k8s_jobs["simulate"][0].run_k8s_config.container_config["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_every_step_pod_mounts_the_shared_volume_once_with_spinlock_home(k8s_jobs):
    """The PVC comes from three places (run launcher, code location, executor): one volume, one mount."""
    for key, (ctx, k8s_job) in k8s_jobs.items():
        pod, container = k8s_job.spec.template.spec, _container(k8s_job)
        assert [v.name for v in pod.volumes] == [PVC], key
        assert pod.volumes[0].persistent_volume_claim.claim_name == PVC, key
        assert [(m.name, m.mount_path) for m in container.volume_mounts] == [(PVC, DATA_MOUNT)], key
        names = [e.name for e in container.env]
        assert len(names) == len(set(names)), f"{key}: the sources disagree on a variable: {names}"
        env = {e.name: e for e in container.env}
        assert env["SPINLOCK_HOME"].value == DATA_MOUNT, key
        assert env["SPINLOCK_CONFIG"].value == "/opt/spinlock/configs/experiments/demo.yaml", key
        # the instance ConfigMap and the PostgreSQL password Secret of the run launcher
        assert env["DAGSTER_PG_PASSWORD"].value_from.secret_key_ref.name == "dagster-postgresql-secret", key
        assert env["DAGSTER_PG_PASSWORD"].value_from.secret_key_ref.key == "postgresql-password", key
        assert ctx.namespace == "spinlock", key
        assert container.image == "registry.example.org/spinlock:0.1.0", key


# -- dagster.yaml ---------------------------------------------------------------------------------


def test_run_launcher_block_is_accepted_by_k8s_run_launcher(kubeconfig):
    block = _load("dagster.yaml")["run_launcher"]
    assert (block["module"], block["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = process_config(resolve_to_config_type(K8sRunLauncher.config_type()), block["config"])
    assert result.success, result.errors
    launcher = K8sRunLauncher(**{**result.value, "load_incluster_config": False, "kubeconfig_file": kubeconfig})
    assert launcher.job_namespace == "spinlock"
    assert launcher.instance_config_map == "dagster-instance"
    assert launcher.postgres_password_secret == "dagster-postgresql-secret"
    assert launcher.dagster_home == "/opt/dagster/dagster_home"
    assert [m["mount_path"] for m in launcher.volume_mounts] == [DATA_MOUNT]
    assert [v["persistentVolumeClaim"]["claimName"] for v in launcher.volumes] == [PVC]
    assert "SPINLOCK_HOME=/data/spinlock" in launcher.env_vars


def test_instance_file_validates_and_postgres_reads_its_settings_from_env(tmp_path, monkeypatch):
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    assert config["concurrency"]["pools"]["granularity"] == "op"

    block = _load("dagster.yaml")["storage"]["postgres"]
    env = {"SPINLOCK_PG_HOST": "pg.example", "SPINLOCK_PG_PORT": "6543", "SPINLOCK_PG_USER": "spinlock",
           "SPINLOCK_PG_DB": "spinlock", "DAGSTER_PG_PASSWORD": "from-the-secret"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    result = process_config(resolve_to_config_type(pg_config()), block)
    assert result.success, result.errors
    db = result.value["postgres_db"]
    assert (db["hostname"], db["port"], db["password"], db["scheme"]) == ("pg.example", 6543, "from-the-secret",
                                                                         "postgresql+psycopg2")
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    assert not process_config(resolve_to_config_type(pg_config()), block).success


# -- values.yaml (structure only: no helm here) ---------------------------------------------------


def test_helm_values_structure():
    values = _load("values.yaml")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]

    # external PostgreSQL, password only from the Secret
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"] == "dagster-postgresql-secret"

    # the PVC at SPINLOCK_HOME in the user code and in the run pods
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["SPINLOCK_HOME"] == DATA_MOUNT and env["SPINLOCK_CONFIG"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    for holder in (deployment, launcher):
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in holder["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in holder["volumeMounts"]}
        assert claims == {PVC: PVC} and mounts == {PVC: DATA_MOUNT}
    assert "SPINLOCK_HOME=/data/spinlock" in launcher["envVars"]

    # run limits in `concurrency` only (the chart fails when the run coordinator sets them too)
    assert values["concurrency"]["enabled"] is True
    assert not values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]


# -- no credential in deploy/ ---------------------------------------------------------------------

_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api[_-]?key|access[_-]?key)", re.IGNORECASE)


def _literal_credentials(node, path=""):
    """(path, value) of every scalar under a credential-like key, except the names of Secrets
    (``{env: VAR}`` references are maps, not scalars)."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}"
            scalar = isinstance(value, (str, int, float)) and not isinstance(value, bool)
            # a key naming a Secret (postgresqlSecretName, postgres_password_secret) holds a name
            names_a_secret = str(key).lower().endswith(("secret", "secretname"))
            if scalar and _SECRET_KEY.search(str(key)) and not names_a_secret:
                yield sub, value
            yield from _literal_credentials(value, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _literal_credentials(value, f"{path}[{i}]")


@pytest.mark.parametrize("name", ["values.yaml", "dagster.yaml", "run_config.yaml"])
def test_no_literal_credentials_in_yaml(name):
    assert list(_literal_credentials(_load(name))) == []


def test_no_credentials_in_any_deploy_file():
    """Every file under deploy/ (YAML, Dockerfile, README), comments included: no URL with a
    password, no ``...password: <literal>`` (only ``{env: VAR}``, or the *name* of a Secret), and
    the ``kubectl create secret`` examples take the value from a shell variable."""
    url_with_password = re.compile(r"://[^/\s:@]+:[^@\s/]+@")
    password_key = re.compile(r"^\s*-?\s*([\w.-]*password[\w.-]*)\s*:\s*(\S.*)?$", re.IGNORECASE)
    from_literal = re.compile(r"--from-literal=[\w.-]*(password|token|secret)[\w.-]*=(\S*)", re.IGNORECASE)
    files = [p for p in (ROOT / "deploy").rglob("*") if p.is_file()]
    assert DEPLOY / "values.yaml" in files
    for path in files:
        text = path.read_text()
        assert not url_with_password.search(text), path
        for line in text.splitlines():
            m = password_key.match(line.lstrip("# "))
            if m and m.group(2) and not m.group(1).lower().endswith(("secret", "secretname")):
                assert m.group(2).startswith(("{env:", "~")), f"{path}: {line}"
            for m in from_literal.finditer(line):
                assert m.group(2).lstrip('"').startswith("$"), f"{path}: {line}"
