"""``dataset``: the consolidated, user-facing HDF5 file in the seed layout."""


import dagster as dg
from dagster import AssetExecutionContext

from spinlock_core.generation import ic_families
from spinlock_core.storage.dataset import consolidate
from spinlock_core.storage.layout import PATHS
from spinlock_core.storage.shards import open_h5
from spinlock_core.validation import label_balance

from ..checks import balance_result
from ..experiment import Experiment
from ..resources import SpinlockStorage
from spinlock_core.generation.weights import family_weights, policy_weights


def build(exp: Experiment, stages: list[str], upstream: list[str]) -> list:
    cfg = exp.cfg
    tol = cfg.sampling.validation.balance_tolerance
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
        fam = ic_families(cfg)
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
                balance_result("ic_balance", label_balance(ic, cfg.simulation.input_generation.ic_type_weights, tolerance=tol), asset_key=key, what="ic_type"),
                balance_result("ic_family_balance", label_balance([fam[t] for t in ic], family_weights(cfg), tolerance=tol), asset_key=key, what="family"),
                balance_result("policy_balance", label_balance(pol, policy_weights(cfg), tolerance=tol), asset_key=key, what="policy"),
                dg.AssetCheckResult(check_name="divergence", asset_key=key, passed=int(div.sum()) == 0,
                                    severity=dg.AssetCheckSeverity.WARN, metadata={"diverged": int(div.sum())}),
            ],
        )

    return [dataset]
