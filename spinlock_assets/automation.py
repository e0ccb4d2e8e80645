"""Jobs and schedules (schedules start STOPPED; turn them on in the UI's Automation page)."""

import dagster as dg

from .experiment import Experiment

__all__ = ["build"]


def _per_shard_schedule(exp: Experiment, name: str, job, cron: str, description: str):
    """A schedule that fans out one run per shard partition at each tick."""

    @dg.schedule(name=name, job=job, cron_schedule=cron, execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.STOPPED, description=description)
    def _schedule(context: dg.ScheduleEvaluationContext):
        for key in exp.partitions.get_partition_keys():
            yield dg.RunRequest(run_key=f"{context.scheduled_execution_time:%Y%m%d}-{key}", partition_key=key)

    return _schedule


def build(exp: Experiment) -> tuple[list, list]:
    def name(s: str) -> str:
        return "_".join([*exp.prefix, s]) if exp.prefix else s

    shard_keys = [exp.key("initial_conditions"), exp.key("rollouts"), *exp.feature_keys]
    generate = dg.define_asset_job(
        name("generate_shards"), selection=dg.AssetSelection.assets(*shard_keys),
        description="Initial conditions, rollouts and every feature family of one shard.",
    )
    rebuild_features = dg.define_asset_job(
        name("rebuild_features"), selection=dg.AssetSelection.assets(*exp.feature_keys),
        description="Re-extract every feature family of one shard (re-runs its deterministic rollouts).",
    )
    sample = dg.define_asset_job(name("sample_parameters"), selection=dg.AssetSelection.assets(exp.key("parameters")))
    consolidate_job = dg.define_asset_job(name("consolidate_dataset"), selection=dg.AssetSelection.assets(exp.key("dataset")))
    schedules = [
        _per_shard_schedule(exp, name("weekly_regeneration"), generate, "0 2 * * 0",
                            "Re-generate every shard weekly (one run per partition)."),
        _per_shard_schedule(exp, name("nightly_feature_rebuild"), rebuild_features, "0 1 * * *",
                            "Re-extract features for every shard nightly (after a feature-code change)."),
        dg.ScheduleDefinition(
            name=name("nightly_consolidation"), job=consolidate_job, cron_schedule="0 4 * * *", execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.STOPPED, description="Rebuild the consolidated dataset file nightly.",
        ),
    ]
    return [generate, rebuild_features, sample, consolidate_job], schedules
