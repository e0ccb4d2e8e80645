"""``parameters``: the experiment's Sobol sample, with its quality checks."""

import dagster as dg
from dagster import AssetExecutionContext

from spinlock_core.generation import write_parameters
from spinlock_core.sampling import quality_verdicts

from ..experiment import Experiment
from ..resources import SpinlockStorage

SAMPLING_CHECKS = {
    "discrepancy": "sobol_discrepancy",
    "correlation": "sobol_correlation",
    "stratification": "stratum_coverage",
}


def build(exp: Experiment) -> list:
    cfg = exp.cfg
    key = exp.key("parameters")
    specs = [
        dg.AssetCheckSpec(name, asset=key, description=f"Sobol sample quality: {what} within sampling.validation")
        for what, name in SAMPLING_CHECKS.items()
    ]

    @dg.asset(
        key=key,
        group_name="sampling",
        kinds={"numpy", "hdf5"},
        check_specs=specs,
        description=(
            f"Scrambled Sobol sample of the {cfg.parameter_space.dim}-D parameter space for "
            f"{cfg.sampling.total_samples} operators (unit-cube values, parameters/params [N, P])."
        ),
    )
    def parameters(context: AssetExecutionContext, storage: SpinlockStorage) -> dg.MaterializeResult:
        paths = storage.paths(cfg)
        res, unit, q = write_parameters(cfg, paths)
        verdicts = quality_verdicts(q, cfg)
        quality = {
            "discrepancy_cd2": q.discrepancy,
            "discrepancy_points": q.discrepancy_n,
            "max_abs_correlation": q.max_abs_correlation,
            "mean_abs_correlation": q.mean_abs_correlation,
            "min_stratum_count": q.min_stratum_count,
        }
        thresholds = {
            "threshold_discrepancy": cfg.sampling.validation.max_discrepancy,
            "threshold_correlation": cfg.sampling.validation.max_correlation,
            "required_per_stratum": cfg.sampling.stratification.min_samples_per_stratum,
        }
        checks = []
        for what, name in SAMPLING_CHECKS.items():
            passed, reason = verdicts.get(what, (True, "disabled in sampling.validation"))
            checks.append(
                dg.AssetCheckResult(
                    check_name=name, asset_key=key, passed=bool(passed), severity=dg.AssetCheckSeverity.WARN,
                    description=reason, metadata={**quality, **thresholds},
                )
            )
        context.log.info(f"parameters {unit.shape} -> {paths.parameters}; CD^2={q.discrepancy:.3g}, max|corr|={q.max_abs_correlation:.3g}")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(paths.parameters)),
                "n": unit.shape[0],
                "dim": unit.shape[1],
                "parameter_names": ", ".join(cfg.parameter_space.names),
                **quality,
                "write_seconds": res.write.seconds,
            },
            check_results=checks,
        )

    return [parameters]
