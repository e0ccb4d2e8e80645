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
