"""``file_integrity``: an asset check per stored file that reads all of its data back.

It runs after each materialization of the asset, and on its own (the ``verify_files`` job, or
"Execute checks" in the UI) to find files damaged on disk since: every dataset is read in full and
compared with the SHA-256 recorded when it was written (``spinlock_core.storage.integrity``). A
damaged shard fails its check, and materializing that partition again regenerates it, byte for
byte as before. The checks of a shard's files run as one step (one process under the multiprocess
executor, one task under Celery), whichever of them a run selects.
"""

import time
import warnings

import dagster as dg

from spinlock_core.features.families import enabled_families
from spinlock_core.storage.integrity import verify_dataset_file, verify_stage_file
from spinlock_core.storage.paths import parse_shard_key

from .experiment import Experiment
from .resources import SpinlockStorage

__all__ = ["build", "NAME"]

NAME = "file_integrity"
DESCRIPTION = ("Reads every dataset of the stored file and compares it with the SHA-256 recorded at write time "
               "(plus the layout, config fingerprint and operator range): fails on a missing, truncated, corrupt "
               "or stale file. Re-materialize the partition to regenerate it.")


def _result(problems: list[str], path, seconds: float, key: dg.AssetKey | None = None) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=NAME,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description=("; ".join(problems))[:2000] if problems else "every dataset matches its digest",
        metadata={"path": dg.MetadataValue.path(str(path)), "problems": len(problems), "seconds": seconds,
                  **({"first_problem": problems[0][:500]} if problems else {})},
    )


def _shard_checks(exp: Experiment, stages: dict[dg.AssetKey, str]):
    """One step for the ``file_integrity`` checks of every shard asset (``stages``: key -> stage)."""
    cfg = exp.cfg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # partitioned checks (see checks.py)
        specs = [dg.AssetCheckSpec(NAME, asset=k, description=DESCRIPTION, partitions_def=exp.partitions)
                 for k in stages]

    @dg.multi_asset_check(specs=specs, can_subset=True, name=exp.op_name("shard_file_integrity"),
                          description="file_integrity of the selected shard files, read back in one step")
    def shard_file_integrity(context: dg.AssetCheckExecutionContext, storage: SpinlockStorage):
        shard = parse_shard_key(context.partition_key)
        start, stop = cfg.shard_range(shard)
        paths = storage.paths(cfg)
        for check in sorted(context.selected_asset_check_keys, key=lambda c: c.asset_key.to_user_string()):
            stage = stages[check.asset_key]
            path = paths.shard(stage, shard)
            t0 = time.perf_counter()
            problems = verify_stage_file(path, stage, cfg, start=start, stop=stop)
            if problems:
                context.log.error(f"{path}: " + "; ".join(problems))
            yield _result(problems, path, time.perf_counter() - t0, check.asset_key)

    return shard_file_integrity


def build(exp: Experiment) -> tuple[list, list]:
    """The ``file_integrity`` checks of every stored stage, and the ``verify_files`` job that runs
    only the shards' ones (launch it per partition, or with a backfill over all shards)."""
    cfg = exp.cfg
    stages = {exp.key("initial_conditions"): "initial_conditions", exp.key("rollouts"): "rollouts"}
    stages.update({exp.key(f"features/{f.name}"): f.stage for f in enabled_families(cfg)})
    shard_checks = _shard_checks(exp, stages)

    @dg.asset_check(asset=exp.key("parameters"), name=NAME, description=DESCRIPTION, blocking=False)
    def parameters_integrity(storage: SpinlockStorage) -> dg.AssetCheckResult:
        path = storage.paths(cfg).parameters
        t0 = time.perf_counter()
        return _result(verify_stage_file(path, "parameters", cfg), path, time.perf_counter() - t0)

    @dg.asset_check(asset=exp.key("dataset"), name=NAME, description=DESCRIPTION, blocking=False)
    def dataset_integrity(storage: SpinlockStorage) -> dg.AssetCheckResult:
        path = storage.paths(cfg).dataset
        t0 = time.perf_counter()
        return _result(verify_dataset_file(path), path, time.perf_counter() - t0)

    name = "_".join([*exp.prefix, "verify_files"]) if exp.prefix else "verify_files"
    with warnings.catch_warnings():
        # a checks-only job has no asset to infer its partitions from
        warnings.simplefilter("ignore", DeprecationWarning)
        job = dg.define_asset_job(name, selection=dg.AssetSelection.checks(shard_checks), partitions_def=exp.partitions,
                                  description="Read every shard file back and compare it with its recorded digests "
                                  "(file_integrity checks only; nothing is re-materialized).")
    return [shard_checks, parameters_integrity, dataset_integrity], [job]
