"""The executor of a run, chosen per run: in-process, multiprocess, Celery or Kubernetes.

The code location has one executor definition, ``spinlock``, whose run config is a choice between
the engines Dagster ships (nothing is re-implemented here: each branch hands its config to the
engine's own executor function):

.. code-block:: yaml

    execution:
      config:
        in_process: {}                # the demo: every step in the run's process
    # or
        multiprocess: {max_concurrent: 2}
    # or (a fleet of lab machines; broker/backend default to $SPINLOCK_CELERY_BROKER/_BACKEND)
        celery: {}
    # or (one pod per step; see deploy/k8s/)
        k8s: {job_namespace: spinlock, ...}

The default branch is the experiment's ``orchestration.executor`` (the demo: ``in_process``), so
schedules and automation launch with it; the UI launchpad shows the block and any run can change it.

Steps that hold a GPU (rollouts, tokenizer training) carry the tag
``dagster-celery/queue: gpu`` (:data:`GPU_QUEUE_TAGS`): Celery routes them to workers started
with ``-q dagster,gpu`` (one comma-separated argument: a repeated ``-q`` keeps only the last
queue); every other step goes to the ``dagster`` queue, which CPU-only hosts consume alone.
"""

from __future__ import annotations

import os

import dagster as dg
from dagster._core.executor.init import InitExecutorContext

from spinlock_core.config.orchestration import EXECUTORS, OrchestrationConfig

__all__ = ["GPU_QUEUE", "GPU_QUEUE_TAGS", "CPU_QUEUE", "BROKER_ENV", "BACKEND_ENV", "engine", "celery_urls", "spinlock_executor"]

GPU_QUEUE = "gpu"
CPU_QUEUE = "dagster"  # dagster-celery's default queue
#: op tags of the steps that hold a GPU (Celery queue routing)
GPU_QUEUE_TAGS = {"dagster-celery/queue": GPU_QUEUE}
BROKER_ENV = "SPINLOCK_CELERY_BROKER"
BACKEND_ENV = "SPINLOCK_CELERY_BACKEND"


def engine(kind: str) -> dg.ExecutorDefinition:
    """Dagster's executor definition for ``kind`` (imported on use: the Celery and Kubernetes
    packages are only needed where they are chosen)."""
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "celery":
        from dagster_celery import celery_executor

        return celery_executor
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"executor {kind!r} is not one of {list(EXECUTORS)}")


def _default_config(kind: str, orch: OrchestrationConfig) -> dict:
    if kind == "multiprocess":
        return {"max_concurrent": orch.max_concurrent}
    if kind == "k8s":
        return {"max_concurrent": orch.max_concurrent} if orch.max_concurrent else {}
    # celery: broker and backend are resolved when a run starts (:func:`celery_urls`)
    return {}


def celery_urls(config: dict, environ=None) -> dict:
    """The Celery branch's config with ``broker`` / ``backend`` filled from ``$SPINLOCK_CELERY_BROKER``
    / ``$SPINLOCK_CELERY_BACKEND`` where the run config leaves them out (the backend defaults to the
    broker for a Redis broker: Celery's ``rpc://`` backend needs AMQP)."""
    env = os.environ if environ is None else environ
    out = dict(config)
    if not out.get("broker"):
        broker = env.get(BROKER_ENV, "")
        if not broker:
            raise dg.Failure(
                description=f"the celery executor needs a broker: set {BROKER_ENV} (e.g. redis://host:6379/0) on the "
                "host that runs the run, or execution.config.celery.broker in the run config",
                allow_retries=False,
            )
        out["broker"] = broker
    if not out.get("backend") or out["backend"] == "rpc://":
        backend = env.get(BACKEND_ENV, "")
        if backend:
            out["backend"] = backend
        elif str(out["broker"]).startswith(("redis://", "rediss://")):
            out["backend"] = out["broker"]
    return out


def _requirements(config) -> list:
    kind = next(iter(config))
    return [] if kind == "in_process" else list(dg.multiple_process_executor_requirements())


def spinlock_executor(orch: OrchestrationConfig) -> dg.ExecutorDefinition:
    """The ``spinlock`` executor: a ``Selector`` over :data:`EXECUTORS` whose default is
    ``orch.executor``. Each choice is validated by, and created through, that engine's own
    executor definition."""
    fields = {kind: engine(kind).config_schema.as_field() for kind in EXECUTORS}
    default = {orch.executor: _default_config(orch.executor, orch)}

    @dg.executor(
        name="spinlock",
        config_schema=dg.Field(dg.Selector(fields), default_value=default,
                               description=f"in_process, multiprocess, celery or k8s (default: {orch.executor})"),
        requirements=_requirements,
    )
    def _spinlock(init_context: InitExecutorContext) -> dg.Executor:
        ((kind, sub),) = init_context.executor_config.items()
        if kind == "celery":
            sub = celery_urls(sub)
        inner = engine(kind)
        ctx = InitExecutorContext(job=init_context.job, executor_def=inner, executor_config=sub,
                                  instance=init_context.instance)
        return inner.executor_creation_fn(ctx)  # type: ignore[misc]

    return _spinlock
