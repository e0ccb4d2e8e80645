"""``initial_conditions``: partitioned by shard, one HDF5 file per partition."""

import time

import dagster as dg
import numpy as np
from dagster import AssetExecutionContext

from spinlock_core.generation import write_initial_conditions
from spinlock_core.storage.fingerprints import code_version
from spinlock_core.storage.paths import parse_shard_key

from ..checks import check_results, check_specs
from ..conditions import SHARD
from ..experiment import Experiment
from ..metadata import OWNERS, file_metadata, tags
from ..resources import SpinlockStorage


def build(exp: Experiment) -> list:
    cfg = exp.cfg
    ic_key, par_key = exp.key("initial_conditions"), exp.key("parameters")

    @dg.asset(
        key=ic_key,
        partitions_def=exp.partitions,
        deps=[par_key],
        group_name="generation",
        automation_condition=SHARD,
        kinds={"numpy", "hdf5"},
        check_specs=check_specs("initial_conditions", ic_key, exp.partitions),
        code_version=code_version(cfg, "initial_conditions"),
        owners=OWNERS, tags=tags("generation"),
        description="Initial conditions inputs/fields [n, C, H, W] and their IC types, per shard "
        "(quarantined, not written, when the IC balance or the layout check fails).",
    )
    def initial_conditions(context: AssetExecutionContext, storage: SpinlockStorage) -> dg.MaterializeResult:
        shard = parse_shard_key(context.partition_key)
        start, stop = cfg.shard_range(shard)
        t0 = time.perf_counter()
        res, types, fields = write_initial_conditions(cfg, storage.paths(cfg), shard)
        seconds = time.perf_counter() - t0
        context.log.info(f"{context.partition_key}: {stop - start} initial conditions -> {res.write.path}")
        return dg.MaterializeResult(
            metadata={
                **file_metadata(None if res.quarantined else res.write.path),
                "quarantined": res.quarantined,
                "operators": dg.MetadataValue.json([start, stop]),
                "n": stop - start,
                "shape": dg.MetadataValue.json(list(fields.shape)),
                "ic_type_counts": dg.MetadataValue.json({str(k): int(v) for k, v in zip(*np.unique(types, return_counts=True))}),
                "seconds": seconds,
                "operators_per_second": (stop - start) / max(seconds, 1e-9),
                "field_std_mean": float(fields.std(axis=(1, 2, 3)).mean()),
                "write_seconds": res.write.seconds,
            },
            check_results=check_results(res.checks, ic_key),
        )

    return [initial_conditions]
