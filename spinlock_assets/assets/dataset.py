"""``dataset``: the consolidated, user-facing HDF5 file in the seed layout."""


import dagster as dg
from dagster import AssetExecutionContext

from spinlock_core.storage.dataset import consolidate
from spinlock_core.storage.layout import PATHS
from spinlock_core.storage.shards import open_h5

from ..checks import ic_balance_results, policy_balance_result
from ..experiment import Experiment
from ..resources import SpinlockStorage


def build(exp: Experiment, stages: list[str], upstream: list[str]) -> list:
    cfg = exp.cfg
    key = exp.key("dataset")

    @dg.asset(
        key=key,
        deps=[exp.key(u) for u in upstream],
        group_name="dataset",
        kinds={"hdf5"},
        check_specs=[
            dg.AssetCheckSpec("ic_balance", asset=key, blocking=True, description="IC type fractions over the whole dataset"),
            dg.AssetCheckSpec("ic_family_balance", asset=key, blocking=True, description="IC family fractions over the whole dataset"),
            dg.AssetCheckSpec("policy_balance", asset=key, blocking=True, description="Evolution-policy fractions over the whole dataset"),
            dg.AssetCheckSpec("divergence", asset=key, description="Diverged operators in the whole dataset"),
        ],
        description=f"Consolidated dataset at dataset.output_path ({cfg.dataset.output_path}) in the seed layout.",
    )
    def dataset(context: AssetExecutionContext, storage: SpinlockStorage) -> dg.MaterializeResult:
        paths = storage.paths(cfg)
        stats = consolidate(cfg, paths, stages)
        with open_h5(paths.dataset) as f:
            ic = f[PATHS.IC_TYPES][()].astype(str)
            pol = f[PATHS.POLICIES][()].astype(str)
            div = f[PATHS.DIVERGED][()]
        context.log.info(f"dataset: {cfg.sampling.total_samples} operators -> {paths.dataset}")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(paths.dataset)),
                "n": cfg.sampling.total_samples,
                "size_mb": stats.bytes / 2**20,
                "write_seconds": stats.seconds,
                "stages": ", ".join(stages),
            },
            check_results=[
                *ic_balance_results(cfg, ic, asset_key=key),
                policy_balance_result(cfg, pol, asset_key=key),
                dg.AssetCheckResult(check_name="divergence", asset_key=key, passed=int(div.sum()) == 0,
                                    severity=dg.AssetCheckSeverity.WARN, metadata={"diverged": int(div.sum())}),
            ],
        )

    return [dataset]
