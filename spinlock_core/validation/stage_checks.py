"""The checks every stage runs on the arrays it is about to write, before they reach readers.

:data:`CHECKS` lists them per stage (the Dagster layer builds one asset check per entry, per
partition); the ``*_checks`` functions compute them on in-memory arrays and return
:class:`CheckReport` objects. A failed blocking check sends the write to quarantine
(:func:`spinlock_core.storage.shards.commit_stage_file`).
"""

from __future__ import annotations

import numpy as np

from ..config.experiment import ExperimentConfig
from ..storage.layout import PATHS
from .balance import BalanceReport, label_balance
from .report import ERROR, WARN, CheckDef, CheckReport, markdown_table

__all__ = [
    "CHECKS",
    "checks_for",
    "parameter_checks",
    "initial_condition_checks",
    "rollout_checks",
    "feature_checks",
    "dataset_checks",
]

_LAYOUT = CheckDef("shard_layout", True, "The shard's datasets have the layout's names, shapes and dtypes")

#: stage -> the checks it runs (feature families share the ``features`` entry)
CHECKS: dict[str, tuple[CheckDef, ...]] = {
    "parameters": (
        CheckDef("sobol_discrepancy", True,
                 "CD^2 of the Sobol prefix and of every shard block far below i.i.d. points (ratio <= max_discrepancy_ratio)"),
        CheckDef("sobol_correlation", False, "Max |Pearson r| between parameter dimensions below max_correlation"),
        CheckDef("stratum_coverage", False, "Every stratum of every dimension holds min_samples_per_stratum points"),
    ),
    "initial_conditions": (
        CheckDef("ic_balance", True, "Realised fraction of every IC type within tolerance of its weight"),
        CheckDef("ic_family_balance", True, "Realised fraction of every IC family within tolerance"),
        _LAYOUT,
    ),
    "rollouts": (
        CheckDef("policy_balance", True, "Realised fraction of every evolution policy within tolerance"),
        CheckDef("divergence", False, "Operators whose rollout diverged (non-finite or above divergence_threshold)"),
        _LAYOUT,
    ),
    "features": (
        CheckDef("nan_inf", True, "NaN only in documented columns, no Inf"),
        CheckDef("constant_columns", False,
                 "No undocumented constant feature (ERROR) and no saturated one: one value on half the rows (WARN)"),
        CheckDef("value_ranges", False, "Values inside each feature's declared range"),
        _LAYOUT,
    ),
    "dataset": (
        CheckDef("ic_balance", True, "IC type fractions over the whole dataset"),
        CheckDef("ic_family_balance", True, "IC family fractions over the whole dataset"),
        CheckDef("policy_balance", True, "Evolution-policy fractions over the whole dataset"),
        CheckDef("divergence", False, "Diverged operators in the whole dataset"),
    ),
    "tokenizer": (
        CheckDef("quality_and_utilization", True,
                 "Validation quality and utilization at or above the tokenizer config's thresholds, no dead codebook"),
        CheckDef("category_report", False,
                 "Per-category utilization (train and validation) and AMI of level-0 tokens with the IC type"),
    ),
    "tokens": (
        CheckDef("tokens_in_codebook", True, "Every token lies inside its own codebook [0, K)"),
    ),
}


def checks_for(stage: str) -> tuple[CheckDef, ...]:
    """The checks of a storage stage (``features_*`` stages share the feature checks)."""
    key = "features" if stage.startswith("features_") else stage
    if key not in CHECKS:
        raise ValueError(f"no checks for stage {stage!r}; known: {sorted(CHECKS)}")
    return CHECKS[key]


def _def(stage: str, name: str) -> CheckDef:
    return next(c for c in checks_for(stage) if c.name == name)


def _report(stage: str, name: str, passed: bool, description: str, *, severity: str | None = None, **kw) -> CheckReport:
    d = _def(stage, name)
    sev = severity or (ERROR if d.blocking else WARN)
    return CheckReport(name, bool(passed), d.blocking, sev, description, **kw)


def _labels(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _balance(stage: str, name: str, report: BalanceReport, what: str) -> CheckReport:
    values = {"n": report.n, "max_deviation": float(report.max_deviation), "worst": report.worst()}
    values.update({f"{what}/{label}": float(r) for label, (_, r, _) in report.rows.items()})
    return _report(
        stage, name, report.passed,
        f"{what} balance: max deviation {report.max_deviation:.4f} (tolerance {report.tolerance:.4f})"
        + (f"; unexpected labels {report.unexpected}" if report.unexpected else ""),
        values=values, thresholds={"tolerance": float(report.tolerance)}, tables={"fractions": report.table()},
    )


def _layout(stage: str, cfg: ExperimentConfig, arrays: dict, n: int) -> CheckReport:
    from ..storage.shards import check_stage_arrays

    problems = check_stage_arrays(stage, cfg, arrays, n=n)
    return _report(stage, "shard_layout", not problems, "; ".join(problems) or "conforms to the storage layout",
                   values={"problems": len(problems)}, tables={"problems": "\n".join(f"- {p}" for p in problems) or "none"})


def _ic_balance(stage: str, cfg: ExperimentConfig, ic_types) -> list[CheckReport]:
    from ..generation.initial import ic_families
    from ..generation.weights import family_weights, ic_type_weights

    tol = cfg.sampling.validation.balance_tolerance
    types = _labels(ic_types)
    fam = ic_families(cfg)
    return [
        _balance(stage, "ic_balance", label_balance(types, ic_type_weights(cfg), tolerance=tol), "ic_type"),
        _balance(stage, "ic_family_balance",
                 label_balance([fam.get(t, t) for t in types], family_weights(cfg), tolerance=tol), "family"),
    ]


def _policy_balance(stage: str, cfg: ExperimentConfig, policies) -> CheckReport:
    from ..generation.weights import policy_weights

    report = label_balance(_labels(policies), policy_weights(cfg), tolerance=cfg.sampling.validation.balance_tolerance)
    return _balance(stage, "policy_balance", report, "policy")


def _divergence(stage: str, diverged: np.ndarray, start: int) -> CheckReport:
    diverged = np.asarray(diverged, dtype=bool)
    which = (np.flatnonzero(diverged) + start).tolist()
    return _report(stage, "divergence", not which, f"{len(which)} of {len(diverged)} operators diverged",
                   values={"diverged": len(which), "n": len(diverged), "diverged_operators": str(which[:50])},
                   thresholds={"diverged": 0})


def parameter_checks(cfg: ExperimentConfig, quality) -> list[CheckReport]:
    """``sobol_discrepancy`` (blocking), ``sobol_correlation``, ``stratum_coverage`` of a
    :class:`~spinlock_core.sampling.SamplingQuality`."""
    from ..sampling import quality_verdicts

    v, st = cfg.sampling.validation, cfg.sampling.stratification
    verdicts = quality_verdicts(quality, cfg)
    blocks = {f"[{b.start}, {b.start + b.n})": f"CD^2 {b.discrepancy:.3g}, ratio {b.ratio:.3f}" for b in quality.blocks}
    judged = [b.ratio for b in quality.blocks if b.n >= v.discrepancy_min_points]
    specs = {
        "discrepancy": ("sobol_discrepancy", {
            "discrepancy_cd2": quality.discrepancy, "discrepancy_points": quality.discrepancy_n,
            "discrepancy_iid_expectation": quality.discrepancy_iid, "discrepancy_ratio": quality.discrepancy_ratio,
            "worst_shard_ratio": max(judged) if judged else float("nan"),
        }, {"max_discrepancy": v.max_discrepancy, "max_discrepancy_ratio": v.max_discrepancy_ratio,
            "discrepancy_min_points": v.discrepancy_min_points}, {"shard_blocks": markdown_table(blocks, ("operators", "discrepancy"))}),
        "correlation": ("sobol_correlation", {"max_abs_correlation": quality.max_abs_correlation,
                                              "mean_abs_correlation": quality.mean_abs_correlation},
                        {"max_correlation": v.max_correlation}, {}),
        "stratification": ("stratum_coverage", {"min_stratum_count": quality.min_stratum_count},
                           {"min_samples_per_stratum": st.min_samples_per_stratum}, {}),
    }
    out = []
    for what, (name, values, thresholds, tables) in specs.items():
        passed, reason = verdicts.get(what, (True, "disabled in sampling.validation"))
        out.append(_report("parameters", name, passed, reason, values=values, thresholds=thresholds, tables=tables))
    return out


def initial_condition_checks(cfg: ExperimentConfig, arrays: dict, start: int, stop: int) -> list[CheckReport]:
    """``ic_balance``, ``ic_family_balance`` and ``shard_layout`` of a shard's IC arrays."""
    stage = "initial_conditions"
    return [*_ic_balance(stage, cfg, arrays[PATHS.IC_TYPES]), _layout(stage, cfg, arrays, stop - start)]


def rollout_checks(cfg: ExperimentConfig, arrays: dict, start: int, stop: int) -> list[CheckReport]:
    """``policy_balance``, ``divergence`` and ``shard_layout`` of a shard's rollout arrays."""
    stage = "rollouts"
    return [
        _policy_balance(stage, cfg, arrays[PATHS.POLICIES]),
        _divergence(stage, arrays[PATHS.DIVERGED], start),
        _layout(stage, cfg, arrays, stop - start),
    ]


def feature_checks(cfg: ExperimentConfig, family: str, arrays: dict, start: int, stop: int) -> list[CheckReport]:
    """``nan_inf`` (blocking), ``constant_columns`` (undocumented constant: ERROR; saturated:
    WARN), ``value_ranges`` and ``shard_layout`` of one family's arrays ``{path: [n, ..., F]}``."""
    from ..features.families import FAMILIES, feature_names
    from ..features.quality import SATURATION_SHARE, feature_report

    stage = FAMILIES[family].stage
    names = feature_names(family, cfg)
    reports = [feature_report(path, values, names[path], cfg) for path, values in arrays.items() if path in names]
    nan_v, nan_t, const_v, const_t, range_v, range_t = {}, {}, {}, {}, {}, {}
    for r in reports:
        short = r.path.removeprefix("features/").replace("/", ".")
        nan_v[f"{short}/nan_total"] = int(sum(r.nan_per_feature.values()))
        nan_v[f"{short}/inf_total"] = int(sum(r.inf_per_feature.values()))
        nan_v[f"{short}/undocumented_nan"] = int(sum(r.undocumented_nan.values()))
        nan_t[f"{short}/undocumented_nan"] = markdown_table(r.undocumented_nan, ("feature", "NaN count"))
        nan_t[f"{short}/nan_per_feature"] = markdown_table(r.nan_per_feature, ("feature", "NaN count"))
        nan_t[f"{short}/inf_per_feature"] = markdown_table(r.inf_per_feature, ("feature", "Inf count"))
        const_v[f"{short}/constant"] = len(r.constant)
        const_v[f"{short}/unexpected_constant"] = len(r.unexpected_constant)
        const_v[f"{short}/saturated"] = len(r.unexpected_saturated)
        const_t[f"{short}/unexpected_constant"] = ", ".join(r.unexpected_constant) or "none"
        const_t[f"{short}/excused_constant"] = ", ".join(c for c in r.constant if c not in r.unexpected_constant) or "none"
        const_t[f"{short}/saturated"] = markdown_table(
            {k: f"{v:.6g} on {s:.0%} of rows" for k, (v, s) in r.unexpected_saturated.items()}, ("feature", "modal value"))
        const_t[f"{short}/saturated_by_construction"] = markdown_table(
            {k: f"{v:.6g} on {s:.0%} of rows ({r.expected_saturated[k]})" for k, (v, s) in r.saturated_by_construction.items()},
            ("feature", "modal value (why)"))
        range_v[f"{short}/violations"] = len(r.range_violations)
        range_t[f"{short}/violations"] = markdown_table(
            {k: f"declared [{lo}, {hi}], observed [{a:.4g}, {b:.4g}]" for k, (lo, hi, a, b) in r.range_violations.items()},
            ("feature", "range"))
    undoc = sorted({k for r in reports for k in r.undocumented_nan} | {k for r in reports for k in r.inf_per_feature})
    constant = sorted({k for r in reports for k in r.unexpected_constant})
    saturated = sorted({k for r in reports for k in r.unexpected_saturated})
    out_of_range = sorted({k for r in reports for k in r.range_violations})
    return [
        _report(stage, "nan_inf", not undoc,
                f"undocumented NaN or Inf in {', '.join(undoc)}" if undoc else "NaN only in documented columns, no Inf",
                values=nan_v, thresholds={"undocumented_nan": 0, "inf": 0}, tables=nan_t),
        _report(stage, "constant_columns", not constant and not saturated,
                (f"constant: {', '.join(constant)}" if constant else "")
                + ("; " if constant and saturated else "")
                + (f"saturated (one value on >= {SATURATION_SHARE:.0%} of rows): {', '.join(saturated)}" if saturated else "")
                or "no undocumented constant or saturated column",
                severity=ERROR if constant else WARN, values=const_v,
                thresholds={"saturation_share": SATURATION_SHARE}, tables=const_t),
        _report(stage, "value_ranges", not out_of_range,
                f"outside the declared range: {', '.join(out_of_range)}" if out_of_range else "all values inside their declared ranges",
                severity=ERROR, values=range_v, tables=range_t),
        _layout(stage, cfg, arrays, stop - start),
    ]


def dataset_checks(cfg: ExperimentConfig, ic_types, policies, diverged) -> list[CheckReport]:
    """IC type, IC family and policy balance, and divergence, over the whole dataset."""
    stage = "dataset"
    return [*_ic_balance(stage, cfg, ic_types), _policy_balance(stage, cfg, policies), _divergence(stage, diverged, 0)]
