"""Asset checks from the library's check registry: specs (partitioned like their asset, so every
shard keeps its own history) and results (rendered from :class:`CheckReport`)."""

from __future__ import annotations

import math
import warnings

import dagster as dg

from spinlock_core.validation import CheckReport, checks_for

__all__ = ["check_specs", "check_results", "ERROR", "WARN"]

ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


def check_specs(stage: str, asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition | None = None) -> list[dg.AssetCheckSpec]:
    """One spec per check of ``stage`` (:data:`spinlock_core.validation.CHECKS`). On a partitioned
    asset the checks are partitioned too: a failed shard stays failed in the UI after later
    shards pass."""
    with warnings.catch_warnings():
        # partitioned checks are a preview feature of Dagster 1.13: the behaviour we rely on
        # (results stored per partition) is tested in tests/assets/test_gating.py
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(c.name, asset=asset_key, blocking=c.blocking, description=c.description,
                              partitions_def=partitions_def)
            for c in checks_for(stage)
        ]


def _value(v):
    if isinstance(v, bool):
        return dg.MetadataValue.bool(v)
    if isinstance(v, int):
        return dg.MetadataValue.int(v)
    if isinstance(v, float):
        return dg.MetadataValue.float(v) if math.isfinite(v) else dg.MetadataValue.text(str(v))
    return dg.MetadataValue.text(str(v))


def check_result(report: CheckReport, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
    """A library check report as an ``AssetCheckResult``: measured values next to their
    thresholds (``threshold/<name>``), Markdown tables for per-feature details (``table/<name>``)."""
    meta = {k: _value(v) for k, v in report.values.items()}
    meta.update({f"threshold/{k}": _value(v) for k, v in report.thresholds.items()})
    # tables under their own prefix: a table and a value may share a name (a count and its list)
    meta.update({f"table/{k}": dg.MetadataValue.md(v) for k, v in report.tables.items()})
    return dg.AssetCheckResult(
        check_name=report.name,
        asset_key=asset_key,
        passed=report.passed,
        severity=ERROR if report.severity == "ERROR" else WARN,
        description=report.description[:2000],
        metadata=meta,
    )


def check_results(reports: list[CheckReport], asset_key: dg.AssetKey) -> list[dg.AssetCheckResult]:
    return [check_result(r, asset_key) for r in reports]
