"""``rollouts`` and the rollout-derived feature families (``features/summary``,
``features/temporal``): one op per shard, because features are extracted inside the rollout loop
(trajectories are too large to store). Selecting only the feature keys re-runs the (deterministic)
rollouts and writes only the feature files; selecting only ``rollouts`` skips feature extraction."""

import dagster as dg
import numpy as np
from dagster import AssetExecutionContext

from spinlock_core.features.families import FAMILIES
from spinlock_core.generation import simulate_shard
from spinlock_core.storage.paths import parse_shard_key
from spinlock_core.storage.shards import check_stage_file

from ..checks import WARN, feature_check_results, feature_check_specs, layout_result, policy_balance_result
from ..experiment import Experiment
from ..resources import SpinlockStorage
from ._progress import progress_logger

ROLLOUT_FAMILIES = ("summary", "temporal")


def build(exp: Experiment) -> list:
    cfg = exp.cfg
    ro_key = exp.key("rollouts")
    fam_keys = {f: exp.key(f"features/{f}") for f in ROLLOUT_FAMILIES if FAMILIES[f].enabled(cfg)}
    specs = [
        dg.AssetSpec(ro_key, deps=[exp.key("parameters"), exp.key("initial_conditions")], group_name="generation",
                     kinds={"pytorch", "hdf5"}, skippable=True,
                     description="Stochastic rollouts [M, T, C, H, W] of every operator of the shard: divergence flags and "
                     "operator metadata (trajectories kept only with dataset.storage.store_trajectories)."),
        *[
            dg.AssetSpec(k, deps=[exp.key("parameters"), exp.key("initial_conditions")], group_name="features",
                         kinds={"pytorch", "hdf5"}, skippable=True,
                         description=f"{f.upper()} features, extracted batch by batch inside the rollout loop "
                         f"({', '.join(FAMILIES[f].datasets(cfg))}).")
            for f, k in fam_keys.items()
        ],
    ]
    check_specs = [
        dg.AssetCheckSpec("policy_balance", asset=ro_key, blocking=True,
                          description="Realised fraction of every evolution policy within tolerance"),
        dg.AssetCheckSpec("divergence", asset=ro_key, description="Operators whose rollout diverged"),
        dg.AssetCheckSpec("shard_layout", asset=ro_key, blocking=True, description="Shard file conforms to the storage layout"),
        *[c for k in fam_keys.values() for c in feature_check_specs(k)],
    ]

    @dg.multi_asset(
        name=exp.op_name("simulate"),
        specs=specs,
        check_specs=check_specs,
        partitions_def=exp.partitions,
        can_subset=True,
        pool="spinlock_rollouts",
        description="Roll out the shard's operators and describe each batch of trajectories as it is produced.",
    )
    def simulate(context: AssetExecutionContext, storage: SpinlockStorage):
        shard = parse_shard_key(context.partition_key)
        start, stop = cfg.shard_range(shard)
        paths = storage.paths(cfg)
        selected = context.selected_asset_keys
        families = {f for f, k in fam_keys.items() if k in selected}
        write_ro = ro_key in selected
        storage.apply_threads()
        context.log.info(f"{context.partition_key}: operators [{start}, {stop}), families {sorted(families) or 'none'}")
        res = simulate_shard(cfg, paths, shard, families=families, write_rollout_file=write_ro,
                             device=storage.device or None, progress=progress_logger(context, context.partition_key))
        sim = res.simulation
        rollout_s = max(sim.seconds_rollout, 1e-9)
        if write_ro:
            out = paths.shard("rollouts", shard)
            n_div = int(sim.diverged.sum())
            yield dg.MaterializeResult(
                asset_key=ro_key,
                metadata={
                    "path": dg.MetadataValue.path(str(out)),
                    "n": stop - start,
                    "device": sim.device,
                    "diverged": n_div,
                    "rollout_seconds": sim.seconds_rollout,
                    "operator_steps_per_second": sim.operator_steps / rollout_s,
                    "conv_gflops": sim.conv_flops / rollout_s / 1e9,
                    "write_seconds": res.stages["rollouts"].write.seconds,
                    "write_share": res.write_seconds / max(res.seconds_total, 1e-9),
                },
                check_results=[
                    policy_balance_result(cfg, [s.update_policy for s in sim.specs], asset_key=ro_key),
                    dg.AssetCheckResult(
                        check_name="divergence", asset_key=ro_key, passed=n_div == 0, severity=WARN,
                        metadata={"diverged": n_div, "n": stop - start,
                                  "diverged_operators": str([int(i) for i in np.arange(start, stop)[sim.diverged]][:50])},
                    ),
                    layout_result("shard_layout", check_stage_file(out, "rollouts", cfg, start=start, stop=stop),
                                  asset_key=ro_key, path=str(out)),
                ],
            )
        for fam in sorted(families):
            stage = FAMILIES[fam].stage
            out = paths.shard(stage, shard)
            arrays = res.features[stage]
            extra = {"state_features_seconds": res.feature_seconds.get("state_features", 0.0)}
            if fam == "summary":
                extra["summary_seconds"] = res.feature_seconds.get("summary", 0.0)
                extra["sensitivity_seconds"] = res.feature_seconds.get("sensitivity", 0.0)
            yield dg.MaterializeResult(
                asset_key=fam_keys[fam],
                metadata={
                    "path": dg.MetadataValue.path(str(out)),
                    "n": stop - start,
                    "version": FAMILIES[fam].version,
                    "shapes": ", ".join(f"{p} {list(a.shape)}" for p, a in arrays.items()),
                    "feature_seconds_over_rollout": sum(res.feature_seconds.values()) / rollout_s,
                    "write_seconds": res.stages[stage].write.seconds,
                    **extra,
                },
                check_results=feature_check_results(fam_keys[fam], fam, arrays, cfg),
            )

    return [simulate]
