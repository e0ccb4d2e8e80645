"""``initial_conditions``: partitioned by shard, one HDF5 file per partition."""

import dagster as dg
from dagster import AssetExecutionContext

from spinlock_core.generation import write_initial_conditions
from spinlock_core.storage.paths import parse_shard_key
from spinlock_core.storage.shards import check_stage_file

from ..checks import ic_balance_results, layout_result
from ..experiment import Experiment
from ..resources import SpinlockStorage


def build(exp: Experiment) -> list:
    cfg = exp.cfg
    ic_key, par_key = exp.key("initial_conditions"), exp.key("parameters")

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
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(out)),
                "operators": f"[{start}, {stop})",
                "n": stop - start,
                "field_std_mean": float(fields.std(axis=(1, 2, 3)).mean()),
                "write_seconds": res.write.seconds,
            },
            check_results=[
                *ic_balance_results(cfg, types, asset_key=ic_key),
                layout_result("shard_layout", check_stage_file(out, "initial_conditions", cfg, start=start, stop=stop),
                              asset_key=ic_key, path=str(out)),
            ],
        )

    return [initial_conditions]
