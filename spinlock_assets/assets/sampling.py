"""``parameters``: the experiment's Sobol sample, with its quality checks."""

import dagster as dg
from dagster import AssetExecutionContext

from spinlock_core.generation import write_parameters
from spinlock_core.storage.fingerprints import code_version

from ..checks import check_results, check_specs
from ..conditions import PARAMETERS
from ..experiment import Experiment
from ..metadata import OWNERS, file_metadata, parameter_schema, tags
from ..resources import SpinlockStorage


def build(exp: Experiment) -> list:
    cfg = exp.cfg
    key = exp.key("parameters")

    @dg.asset(
        key=key,
        group_name="sampling",
        automation_condition=PARAMETERS,
        kinds={"numpy", "hdf5"},
        check_specs=check_specs("parameters", key),
        code_version=code_version(cfg, "parameters"),
        owners=OWNERS, tags=tags("sampling"), metadata=parameter_schema(cfg),
        description=(
            f"Scrambled Sobol sample of the {cfg.parameter_space.dim}-D parameter space for "
            f"{cfg.sampling.total_samples} operators (unit-cube values, parameters/params [N, P]). "
            "Quarantined, not written, when its discrepancy is no better than i.i.d. points."
        ),
    )
    def parameters(context: AssetExecutionContext, storage: SpinlockStorage) -> dg.MaterializeResult:
        paths = storage.paths(cfg)
        res, unit, q = write_parameters(cfg, paths)
        context.log.info(
            f"parameters {unit.shape} -> {res.write.path}; CD^2={q.discrepancy:.3g} "
            f"({q.discrepancy_ratio:.3f} x i.i.d. on the first {q.discrepancy_n} points), max|corr|={q.max_abs_correlation:.3g}"
        )
        return dg.MaterializeResult(
            metadata={
                **file_metadata(None if res.quarantined else res.write.path),
                "quarantined": res.quarantined,
                "n": unit.shape[0],
                "dim": unit.shape[1],
                "parameter_names": dg.MetadataValue.json(list(cfg.parameter_space.names)),
                "discrepancy_cd2": q.discrepancy,
                "discrepancy_ratio": q.discrepancy_ratio,
                "max_abs_correlation": q.max_abs_correlation,
                "min_stratum_count": q.min_stratum_count,
                "write_seconds": res.write.seconds,
            },
            check_results=check_results(res.checks, key),
        )

    return [parameters]
