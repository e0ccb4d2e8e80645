"""``rollouts`` and the rollout-derived feature families (``features/summary``,
``features/temporal``): one op per shard, because features are extracted inside the rollout loop
(trajectories are too large to store). Selecting only the feature keys re-runs the (deterministic)
rollouts and writes only the feature files; selecting only ``rollouts`` skips feature extraction."""

import dagster as dg
from dagster import AssetExecutionContext

from spinlock_core.features.families import FAMILIES
from spinlock_core.generation import simulate_shard
from spinlock_core.storage.fingerprints import code_version
from spinlock_core.storage.paths import parse_shard_key

from ..checks import check_results, check_specs
from ..conditions import SHARD
from ..experiment import Experiment
from ..metadata import OWNERS, feature_schema, file_metadata, tags
from ..executors import GPU_QUEUE_TAGS
from ..resources import ComputeResource, SpinlockStorage
from ..retries import RETRY, bad_input_fails_once
from ._progress import progress_logger

ROLLOUT_FAMILIES = ("summary", "temporal")


def build(exp: Experiment) -> list:
    cfg = exp.cfg
    ro_key = exp.key("rollouts")
    fam_keys = {f: exp.key(f"features/{f}") for f in ROLLOUT_FAMILIES if FAMILIES[f].enabled(cfg)}
    specs = [
        dg.AssetSpec(ro_key, deps=[exp.key("parameters"), exp.key("initial_conditions")], group_name="generation",
                     kinds={"pytorch", "hdf5"}, skippable=True, code_version=code_version(cfg, "rollouts"), automation_condition=SHARD,
                     owners=OWNERS, tags=tags("generation"),
                     description="Stochastic rollouts [M, T, C, H, W] of every operator of the shard: divergence flags and "
                     "operator metadata (trajectories kept only with dataset.storage.store_trajectories)."),
        *[
            dg.AssetSpec(k, deps=[exp.key("parameters"), exp.key("initial_conditions")], group_name="features",
                         kinds={"pytorch", "hdf5"}, skippable=True, code_version=code_version(cfg, FAMILIES[f].stage),
                         automation_condition=SHARD,
                         owners=OWNERS, tags=tags("features", family=f), metadata=feature_schema(cfg, f),
                         description=f"{f.upper()} features, extracted batch by batch inside the rollout loop "
                         f"({', '.join(FAMILIES[f].datasets(cfg))}).")
            for f, k in fam_keys.items()
        ],
    ]
    specs_of_checks = [
        *check_specs("rollouts", ro_key, exp.partitions),
        *[c for f, k in fam_keys.items() for c in check_specs(FAMILIES[f].stage, k, exp.partitions)],
    ]

    @dg.multi_asset(
        name=exp.op_name("simulate"),
        specs=specs,
        check_specs=specs_of_checks,
        partitions_def=exp.partitions,
        can_subset=True,
        pool="gpu",
        op_tags=GPU_QUEUE_TAGS,
        retry_policy=RETRY,
        description="Roll out the shard's operators and describe each batch of trajectories as it is produced.",
    )
    def simulate(context: AssetExecutionContext, storage: SpinlockStorage, compute: ComputeResource):
        shard = parse_shard_key(context.partition_key)
        start, stop = cfg.shard_range(shard)
        paths = storage.paths(cfg)
        selected = context.selected_asset_keys
        families = {f for f, k in fam_keys.items() if k in selected}
        write_ro = ro_key in selected
        compute.apply_threads()
        context.log.info(f"{context.partition_key}: operators [{start}, {stop}), families {sorted(families) or 'none'}")
        with bad_input_fails_once():
            res = simulate_shard(cfg, paths, shard, families=families, write_rollout_file=write_ro,
                                 device=compute.torch_device(), progress=progress_logger(context, context.partition_key))
        sim = res.simulation
        rollout_s = max(sim.seconds_rollout, 1e-9)
        if write_ro:
            ro = res.stages["rollouts"]
            n_div = int(sim.diverged.sum())
            yield dg.MaterializeResult(
                asset_key=ro_key,
                metadata={
                    **file_metadata(None if ro.quarantined else ro.write.path),
                    "quarantined": ro.quarantined,
                    "n": stop - start,
                    "device": sim.device,
                    "diverged": n_div,
                    "rollout_seconds": sim.seconds_rollout,
                    "operator_steps_per_second": sim.operator_steps / rollout_s,
                    "conv_gflops": sim.conv_flops / rollout_s / 1e9,
                    "group_size": int(sim.timings.get("group_size", 1)),
                    "rollout_calls": int(sim.timings.get("groups", stop - start)),
                    "write_seconds": ro.write.seconds,
                    "write_share": res.write_seconds / max(res.seconds_total, 1e-9),
                },
                check_results=check_results(ro.checks, ro_key),
            )
        for fam in sorted(families):
            stage = FAMILIES[fam].stage
            written = res.stages[stage]
            arrays = res.features[stage]
            extra = {"state_features_seconds": res.feature_seconds.get("state_features", 0.0)}
            if fam == "summary":
                extra["summary_seconds"] = res.feature_seconds.get("summary", 0.0)
                extra["sensitivity_seconds"] = res.feature_seconds.get("sensitivity", 0.0)
            yield dg.MaterializeResult(
                asset_key=fam_keys[fam],
                metadata={
                    **file_metadata(None if written.quarantined else written.write.path),
                    "quarantined": written.quarantined,
                    "n": stop - start,
                    "version": FAMILIES[fam].version,
                    "shapes": dg.MetadataValue.json({p: list(a.shape) for p, a in arrays.items()}),
                    "columns": int(next(iter(arrays.values())).shape[-1]),
                    "feature_seconds_over_rollout": sum(res.feature_seconds.values()) / rollout_s,
                    "write_seconds": written.write.seconds,
                    **extra,
                },
                check_results=check_results(written.checks, fam_keys[fam]),
            )

    return [simulate]
