"""Turn library check reports into ``AssetCheckResult``s (shared by the assets)."""

from __future__ import annotations

import dagster as dg

from spinlock_core.validation import BalanceReport

__all__ = ["balance_result", "layout_result", "ERROR", "WARN"]

ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


def balance_result(check_name: str, report: BalanceReport, *, asset_key: dg.AssetKey, what: str) -> dg.AssetCheckResult:
    meta = {
        "n": report.n,
        "tolerance": float(report.tolerance),
        "max_deviation": float(report.max_deviation),
        "worst": report.worst(),
        "fractions": dg.MetadataValue.md(report.table()),
    }
    for label, (expected, realised, count) in report.rows.items():
        meta[f"{what}/{label}"] = float(realised)
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=report.passed,
        severity=ERROR,
        metadata=meta,
        description=f"{what} balance: max deviation {report.max_deviation:.4f} (tolerance {report.tolerance:.4f})",
    )


def layout_result(check_name: str, problems: list[str], *, asset_key: dg.AssetKey, path: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=not problems,
        severity=ERROR,
        metadata={"path": dg.MetadataValue.path(path), "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")},
    )


def feature_check_results(asset_key: dg.AssetKey, family: str, arrays: dict, cfg) -> list[dg.AssetCheckResult]:
    """``nan_inf`` (blocking), ``constant_columns`` and ``value_ranges`` for one feature family."""
    from spinlock_core.features.families import feature_names
    from spinlock_core.features.quality import feature_report

    names = feature_names(family, cfg)
    reports = [feature_report(path, values, names[path], cfg) for path, values in arrays.items()]

    def table(rows: dict, header: str) -> str:
        if not rows:
            return "none"
        lines = [f"| feature | {header} |", "|---|---|"] + [f"| {k} | {v} |" for k, v in list(rows.items())[:200]]
        return "\n".join(lines)

    nan_meta, const_meta, range_meta = {}, {}, {}
    for r in reports:
        short = r.path.removeprefix("features/").replace("/", ".")
        nan_meta[f"{short}/nan_total"] = int(sum(r.nan_per_feature.values()))
        nan_meta[f"{short}/inf_total"] = int(sum(r.inf_per_feature.values()))
        nan_meta[f"{short}/undocumented_nan"] = dg.MetadataValue.md(table(r.undocumented_nan, "NaN count"))
        nan_meta[f"{short}/nan_per_feature"] = dg.MetadataValue.md(table(r.nan_per_feature, "NaN count"))
        nan_meta[f"{short}/inf_per_feature"] = dg.MetadataValue.md(table(r.inf_per_feature, "Inf count"))
        const_meta[f"{short}/constant"] = len(r.constant)
        const_meta[f"{short}/unexpected_constant"] = ", ".join(r.unexpected_constant) or "none"
        const_meta[f"{short}/excused_constant"] = ", ".join(c for c in r.constant if c not in r.unexpected_constant) or "none"
        range_meta[f"{short}/violations"] = dg.MetadataValue.md(
            table({k: f"declared [{lo}, {hi}], observed [{a:.4g}, {b:.4g}]" for k, (lo, hi, a, b) in r.range_violations.items()}, "range")
        )
    return [
        dg.AssetCheckResult(check_name="nan_inf", asset_key=asset_key, passed=all(r.nan_ok for r in reports), severity=ERROR,
                            metadata=nan_meta, description="NaN only in documented columns, no Inf"),
        dg.AssetCheckResult(check_name="constant_columns", asset_key=asset_key, passed=all(r.constant_ok for r in reports),
                            severity=ERROR, metadata=const_meta,
                            description="No feature constant across the shard unless documented or its parameter is single-valued"),
        dg.AssetCheckResult(check_name="value_ranges", asset_key=asset_key, passed=all(r.ranges_ok for r in reports),
                            severity=ERROR, metadata=range_meta, description="Values inside each feature's declared range"),
    ]


def feature_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("nan_inf", asset=asset_key, blocking=True, description="NaN only in documented columns, no Inf"),
        dg.AssetCheckSpec("constant_columns", asset=asset_key, description="No undocumented constant feature across the shard"),
        dg.AssetCheckSpec("value_ranges", asset=asset_key, description="Values inside declared ranges"),
    ]


def ic_balance_results(cfg, ic_types, *, asset_key: dg.AssetKey) -> list[dg.AssetCheckResult]:
    """``ic_balance`` and ``ic_family_balance`` of realised IC types against the config's weights."""
    from spinlock_core.generation import ic_families
    from spinlock_core.generation.weights import family_weights, ic_type_weights
    from spinlock_core.validation import label_balance

    tol = cfg.sampling.validation.balance_tolerance
    types = [t.decode() if isinstance(t, bytes) else str(t) for t in ic_types]
    fam = ic_families(cfg)
    return [
        balance_result("ic_balance", label_balance(types, ic_type_weights(cfg), tolerance=tol), asset_key=asset_key, what="ic_type"),
        balance_result("ic_family_balance", label_balance([fam[t] for t in types], family_weights(cfg), tolerance=tol),
                       asset_key=asset_key, what="family"),
    ]


def policy_balance_result(cfg, policies, *, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
    """``policy_balance`` of realised evolution policies against the ``update_policy`` weights."""
    from spinlock_core.generation.weights import policy_weights
    from spinlock_core.validation import label_balance

    report = label_balance(policies, policy_weights(cfg), tolerance=cfg.sampling.validation.balance_tolerance)
    return balance_result("policy_balance", report, asset_key=asset_key, what="policy")
