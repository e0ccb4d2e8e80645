"""``dataset``: the consolidated, user-facing HDF5 file in the seed layout."""


import dagster as dg
from dagster import AssetExecutionContext

from spinlock_core.storage.dataset import consolidate, shard_problems
from spinlock_core.storage.fingerprints import code_version
from spinlock_core.storage.shards import StorageError

from ..checks import check_results, check_specs
from ..conditions import REFRESH
from ..experiment import Experiment
from ..metadata import OWNERS, tags
from ..resources import SpinlockStorage


def build(exp: Experiment, stages: list[str], upstream: list[str]) -> list:
    cfg = exp.cfg
    key = exp.key("dataset")

    @dg.asset(
        key=key,
        deps=[exp.key(u) for u in upstream],
        group_name="dataset",
        automation_condition=REFRESH,
        kinds={"hdf5"},
        check_specs=check_specs("dataset", key),
        code_version=code_version(cfg, "dataset"),
        owners=OWNERS, tags=tags("dataset"),
        description=f"Consolidated dataset at dataset.output_path ({cfg.dataset.output_path}) in the seed layout; "
        "refuses to consolidate while any shard is missing, quarantined or made from another config.",
    )
    def dataset(context: AssetExecutionContext, storage: SpinlockStorage) -> dg.MaterializeResult:
        paths = storage.paths(cfg)
        # metadata only: consolidate verifies every shard's digests while it copies (one read)
        problems = shard_problems(cfg, paths, stages, verify_data=False)
        if problems:
            raise dg.Failure(
                description=f"dataset not consolidated: {len(problems)} shard problem(s):\n" + "\n".join(problems[:50]),
                metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems)), "count": len(problems)},
                allow_retries=False,
            )
        try:
            res = consolidate(cfg, paths, stages)
        except StorageError as e:  # a shard changed between the check and the copy
            raise dg.Failure(description=str(e), allow_retries=False) from None
        context.log.info(f"dataset: {cfg.sampling.total_samples} operators -> {res.write.path}")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(res.write.path)),
                "quarantined": res.quarantined,
                "n": cfg.sampling.total_samples,
                "size_mb": res.write.bytes / 2**20,
                "write_seconds": res.write.seconds,
                "stages": dg.MetadataValue.json(stages),
            },
            check_results=check_results(res.checks, key),
        )

    return [dataset]
