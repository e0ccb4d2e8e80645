"""Jobs and schedules (schedules start STOPPED; turn them on in the UI's Automation page)."""


import dagster as dg

from .experiment import Experiment

__all__ = ["build"]


def build(exp: Experiment) -> tuple[list, list]:
    pre = exp.prefix
    name = lambda s: "_".join([*pre, s]) if pre else s  # noqa: E731
    shard_keys = [exp.key("initial_conditions"), exp.key("rollouts")]
    feature_keys = [k for k in exp.feature_keys]
    generate = dg.define_asset_job(
        name("generate_shards"),
        selection=dg.AssetSelection.assets(*shard_keys, *feature_keys),
        description="Initial conditions, rollouts and every feature family of one shard.",
    )
    rebuild_features = dg.define_asset_job(
        name("rebuild_features"),
        selection=dg.AssetSelection.assets(*feature_keys),
        description="Re-extract every feature family of one shard (re-runs its deterministic rollouts).",
    )
    sample = dg.define_asset_job(name("sample_parameters"), selection=dg.AssetSelection.assets(exp.key("parameters")))
    consolidate_job = dg.define_asset_job(name("consolidate_dataset"), selection=dg.AssetSelection.assets(exp.key("dataset")))

    @dg.schedule(
        name=name("weekly_regeneration"),
        job=generate,
        cron_schedule="0 2 * * 0",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Re-generate every shard weekly (one run per partition).",
    )
    def weekly_regeneration(context: dg.ScheduleEvaluationContext):
        for key in exp.partitions.get_partition_keys():
            yield dg.RunRequest(run_key=f"{context.scheduled_execution_time:%Y%m%d}-{key}", partition_key=key)

    nightly_dataset = dg.ScheduleDefinition(
        name=name("nightly_consolidation"),
        job=consolidate_job,
        cron_schedule="0 4 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Rebuild the consolidated dataset file nightly.",
    )
    @dg.schedule(
        name=name("nightly_feature_rebuild"),
        job=rebuild_features,
        cron_schedule="0 1 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Re-extract features for every shard nightly (after a feature-code change).",
    )
    def nightly_feature_rebuild(context: dg.ScheduleEvaluationContext):
        for key in exp.partitions.get_partition_keys():
            yield dg.RunRequest(run_key=f"{context.scheduled_execution_time:%Y%m%d}-{key}", partition_key=key)

    return [generate, rebuild_features, sample, consolidate_job], [weekly_regeneration, nightly_feature_rebuild, nightly_dataset]
