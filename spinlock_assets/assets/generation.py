"""``initial_conditions`` and ``rollouts``: partitioned by shard, one HDF5 file per partition."""


import dagster as dg
import numpy as np
from dagster import AssetExecutionContext

from spinlock_core.generation import ic_families, write_initial_conditions, write_rollouts
from spinlock_core.generation.weights import family_weights, policy_weights
from spinlock_core.storage.paths import parse_shard_key
from spinlock_core.storage.shards import check_stage_file
from spinlock_core.validation import label_balance

from ..checks import balance_result, layout_result
from ..experiment import Experiment
from ..resources import SpinlockStorage
from ._progress import progress_logger


def build(exp: Experiment) -> list:
    cfg = exp.cfg
    tol = cfg.sampling.validation.balance_tolerance
    ic_key, ro_key, par_key = exp.key("initial_conditions"), exp.key("rollouts"), exp.key("parameters")

    @dg.asset(
        key=ic_key,
        partitions_def=exp.partitions,
        deps=[par_key],
        group_name="generation",
        kinds={"numpy", "hdf5"},
        check_specs=[
            dg.AssetCheckSpec("ic_balance", asset=ic_key, blocking=True,
                              description="Realised fraction of every IC type within tolerance of its weight"),
            dg.AssetCheckSpec("ic_family_balance", asset=ic_key, blocking=True,
                              description="Realised fraction of every IC family within tolerance"),
            dg.AssetCheckSpec("shard_layout", asset=ic_key, blocking=True,
                              description="Shard file conforms to the storage layout"),
        ],
        description="Initial conditions inputs/fields [n, C, H, W] and their IC types, per shard.",
    )
    def initial_conditions(context: AssetExecutionContext, storage: SpinlockStorage) -> dg.MaterializeResult:
        shard = parse_shard_key(context.partition_key)
        start, stop = cfg.shard_range(shard)
        paths = storage.paths(cfg)
        out = paths.shard("initial_conditions", shard)
        res, types, fields = write_initial_conditions(cfg, paths, shard)
        context.log.info(f"{context.partition_key}: {stop - start} initial conditions -> {out}")
        fam = ic_families(cfg)
        types_rep = label_balance(types, cfg.simulation.input_generation.ic_type_weights, tolerance=tol)
        fam_rep = label_balance([fam[t] for t in types], family_weights(cfg), tolerance=tol)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(out)),
                "operators": f"[{start}, {stop})",
                "n": stop - start,
                "field_std_mean": float(fields.std(axis=(1, 2, 3)).mean()),
                "write_seconds": res.write.seconds,
            },
            check_results=[
                balance_result("ic_balance", types_rep, asset_key=ic_key, what="ic_type"),
                balance_result("ic_family_balance", fam_rep, asset_key=ic_key, what="family"),
                layout_result("shard_layout", check_stage_file(out, "initial_conditions", cfg, start=start, stop=stop),
                              asset_key=ic_key, path=str(out)),
            ],
        )

    @dg.asset(
        key=ro_key,
        partitions_def=exp.partitions,
        deps=[par_key, ic_key],
        group_name="generation",
        kinds={"pytorch", "hdf5"},
        pool="spinlock_rollouts",
        check_specs=[
            dg.AssetCheckSpec("policy_balance", asset=ro_key, blocking=True,
                              description="Realised fraction of every evolution policy within tolerance"),
            dg.AssetCheckSpec("divergence", asset=ro_key,
                              description="Operators whose rollout diverged (non-finite or |u| above the bound)"),
            dg.AssetCheckSpec("shard_layout", asset=ro_key, blocking=True,
                              description="Shard file conforms to the storage layout"),
        ],
        description="Stochastic rollouts [M, T, C, H, W] of every operator of the shard (trajectories kept only "
        "with dataset.storage.store_trajectories), divergence flags and operator metadata.",
    )
    def rollouts(context: AssetExecutionContext, storage: SpinlockStorage) -> dg.MaterializeResult:
        shard = parse_shard_key(context.partition_key)
        start, stop = cfg.shard_range(shard)
        paths = storage.paths(cfg)
        out = paths.shard("rollouts", shard)
        res, sim = write_rollouts(
            cfg, paths, shard, device=storage.device or None, progress=progress_logger(context, context.partition_key)
        )
        pol = label_balance([s.update_policy for s in sim.specs], policy_weights(cfg), tolerance=tol)
        n_div = int(sim.diverged.sum())
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(out)),
                "n": stop - start,
                "device": sim.device,
                "diverged": n_div,
                "rollout_seconds": sim.seconds_rollout,
                "operator_steps_per_second": sim.operator_steps / max(sim.seconds_rollout, 1e-9),
                "conv_gflops": sim.conv_flops / max(sim.seconds_rollout, 1e-9) / 1e9,
                "write_seconds": res.write.seconds,
                "write_share": res.write_share,
            },
            check_results=[
                balance_result("policy_balance", pol, asset_key=ro_key, what="policy"),
                dg.AssetCheckResult(
                    check_name="divergence", asset_key=ro_key, passed=n_div == 0, severity=dg.AssetCheckSeverity.WARN,
                    metadata={"diverged": n_div, "n": stop - start,
                              "diverged_operators": str([int(i) for i in np.arange(start, stop)[sim.diverged]][:50])},
                ),
                layout_result("shard_layout", check_stage_file(out, "rollouts", cfg, start=start, stop=stop),
                              asset_key=ro_key, path=str(out)),
            ],
        )

    return [initial_conditions, rollouts]
