"""Jobs and the one scheduled rebuild (it starts STOPPED: turn it on in the UI's Automation page).

Day-to-day rebuilds are declarative (:mod:`spinlock_assets.conditions`): changed shards are rebuilt
and the consolidated assets refresh once their shards have landed. ``weekly_full_rebuild`` is the
scheduled rebuild of the whole graph, for when something outside the code and config may have
changed (a library upgrade, a new machine): every Sunday at 02:00 UTC it regenerates every shard, one
run per partition (the parameters are deterministic and rebuilt by their condition when the
sampling config or code changes, never concurrently with the shards that read them); with the automation sensor on, ``dataset``,
``feature_matrix``, ``tokens``, the dashboards and the check report refresh once the last shard has
landed, and the tokenizer retrains at its weekly tick (05:00 UTC) when its input changed.
"""

import dagster as dg

from .experiment import Experiment

__all__ = ["build", "FULL_REBUILD_CRON"]

FULL_REBUILD_CRON = "0 2 * * 0"


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

    @dg.schedule(
        name=name("weekly_full_rebuild"), target=dg.AssetSelection.assets(*shard_keys),
        cron_schedule=FULL_REBUILD_CRON, execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Regenerate every shard (one run per partition); the automation "
        "sensor refreshes dataset, feature_matrix, tokens, dashboards and the check report after the last shard.",
    )
    def weekly_full_rebuild(context: dg.ScheduleEvaluationContext):
        day = f"{context.scheduled_execution_time:%Y%m%d}"
        for key in exp.partitions.get_partition_keys():
            yield dg.RunRequest(run_key=f"{day}-{key}", partition_key=key, asset_selection=shard_keys)

    return [generate, rebuild_features, sample, consolidate_job], [weekly_full_rebuild]
