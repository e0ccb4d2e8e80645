"""``features/architecture`` and ``features/initial``: the families that need no rollout."""

import dagster as dg
from dagster import AssetExecutionContext

from spinlock_core.features.families import FAMILIES
from spinlock_core.generation import write_feature_family
from spinlock_core.storage.fingerprints import code_version
from spinlock_core.storage.paths import parse_shard_key

from ..checks import check_results, check_specs
from ..conditions import SHARD
from ..experiment import Experiment
from ..metadata import OWNERS, feature_schema, file_metadata, tags
from ..resources import SpinlockStorage

_DEPS = {"architecture": ["parameters"], "initial": ["initial_conditions"]}
_DESCRIPTIONS = {
    "architecture": "ARCHITECTURE features [n, P]: each sampled parameter decoded and normalised to [0, 1].",
    "initial": "INITIAL features [n, 42]: 14 statistics of each channel of the initial condition.",
}


def _family_asset(exp: Experiment, family: str):
    cfg = exp.cfg
    key = exp.key(f"features/{family}")
    fam = FAMILIES[family]

    @dg.asset(
        key=key,
        partitions_def=exp.partitions,
        deps=[exp.key(d) for d in _DEPS[family]],
        group_name="features",
        automation_condition=SHARD,
        kinds={"numpy", "hdf5"},
        check_specs=check_specs(fam.stage, key, exp.partitions),
        code_version=code_version(cfg, fam.stage),
        owners=OWNERS, tags=tags("features", family=family), metadata=feature_schema(cfg, family),
        description=_DESCRIPTIONS[family],
    )
    def _asset(context: AssetExecutionContext, storage: SpinlockStorage) -> dg.MaterializeResult:
        shard = parse_shard_key(context.partition_key)
        res, values = write_feature_family(cfg, storage.paths(cfg), shard, family)
        context.log.info(f"{context.partition_key}: {family} features {values.shape} -> {res.write.path}")
        return dg.MaterializeResult(
            metadata={
                **file_metadata(None if res.quarantined else res.write.path),
                "quarantined": res.quarantined,
                "shape": dg.MetadataValue.json(list(values.shape)),
                "n": int(values.shape[0]),
                "columns": int(values.shape[-1]),
                "version": fam.version,
                "seconds": res.seconds_total,
            },
            check_results=check_results(res.checks, key),
        )

    return _asset


def build(exp: Experiment) -> list:
    return [_family_asset(exp, f) for f in ("architecture", "initial") if FAMILIES[f].enabled(exp.cfg)]
