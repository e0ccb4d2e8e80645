"""``orchestration``: how a deployment runs the experiment's steps (no effect on the data).

Only the *default* executor of a run lives here; every run can pick another one in its run config
(the Dagster launchpad's ``execution:`` block). Broker URLs and credentials never go into config
files: the Celery executor reads ``SPINLOCK_CELERY_BROKER`` / ``SPINLOCK_CELERY_BACKEND`` when the
run starts. No stage reads this section, so changing it never makes data stale.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EXECUTORS", "OrchestrationConfig"]

#: in_process: one process (the demo); multiprocess: one process per step on the run's host;
#: celery: steps are tasks on a Celery queue consumed by workers on every host; k8s: one pod per step
EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")


class OrchestrationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    executor: Literal["in_process", "multiprocess", "celery", "k8s"] = "in_process"
    #: multiprocess / k8s: steps of one run at a time (0: as many as the CPU count / no limit)
    max_concurrent: int = Field(default=0, ge=0)
