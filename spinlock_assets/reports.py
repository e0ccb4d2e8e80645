"""The latest result of every asset check of a code location, read from a Dagster instance.

Expected results come from the definitions (every check key of the asset graph, times the
partitions of the check's ``partitions_def``); actual results come from the instance's event log
through ``DagsterInstance.get_event_records(EventRecordsFilter(ASSET_CHECK_EVALUATION))``, the
instance's query API (not its storage tables). An expected result that has no evaluation becomes
a ``not run`` record instead of vanishing.

What a record shows is the latest *evaluation*. A later run that failed before it evaluated the
check (the asset raised) leaves the earlier result in place, which still describes the file on
disk, because every write is gated and atomic. The run-failure sensor (:mod:`.sensors`) reports
the failed run.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from spinlock_core.validation.check_report import CheckRecord

__all__ = ["ExpectedCheck", "expected_checks", "gather_check_results", "record_from_evaluation"]

_PAGE = 1000


@dataclass(frozen=True)
class ExpectedCheck:
    """A check the graph defines: its key, the partitions it has results for (``[None]`` when
    unpartitioned), whether it blocks, and what it guarantees."""

    key: dg.AssetCheckKey
    partitions: tuple[str | None, ...]
    blocking: bool
    description: str


def _asset_graph(source):
    """The asset graph of a ``dg.Definitions``, a repository definition, or a graph itself."""
    if hasattr(source, "resolve_asset_graph"):
        return source.resolve_asset_graph()
    if hasattr(source, "asset_graph"):
        return source.asset_graph
    if hasattr(source, "asset_check_keys"):
        return source
    raise ValueError(f"expected dg.Definitions, a RepositoryDefinition or an AssetGraph, got {type(source).__name__}")


def expected_checks(source, *, instance: dg.DagsterInstance | None = None,
                    prefix: Iterable[str] | None = None) -> list[ExpectedCheck]:
    """Every check of ``source`` (``dg.Definitions``, repository definition or asset graph)
    whose asset key starts with ``prefix``, sorted by asset and check name. ``instance`` resolves
    dynamic partitions (not needed for the static shard partitions)."""
    graph = _asset_graph(source)
    pre = list(prefix or [])
    out = []
    for key in graph.asset_check_keys:
        if key.asset_key.path[: len(pre)] != pre:
            continue
        node = graph.get(key)
        pdef = node.partitions_def
        parts = tuple(pdef.get_partition_keys(dynamic_partitions_store=instance)) if pdef is not None else (None,)
        out.append(ExpectedCheck(key, parts, bool(node.blocking), node.description or ""))
    return sorted(out, key=lambda e: (e.key.asset_key.to_user_string(), e.key.name))


def _split_metadata(metadata) -> tuple[dict, dict]:
    """Measured values and ``threshold/<name>`` limits of a check result; Markdown tables are
    detail for the UI and stay out of the report."""
    values, thresholds = {}, {}
    for k, mv in (metadata or {}).items():
        if isinstance(mv, dg.MarkdownMetadataValue):
            continue
        v = mv.value if isinstance(mv, dg.MetadataValue) else mv
        if not (v is None or isinstance(v, (bool, int, float, str))):
            v = str(v)
        if k.startswith("threshold/"):
            thresholds[k.removeprefix("threshold/")] = v
        else:
            values[k] = v
    return values, thresholds


def record_from_evaluation(ev: dg.AssetCheckEvaluation, *, timestamp: float, run_id: str,
                           blocking: bool | None = None, description: str = "") -> CheckRecord:
    """A :class:`CheckRecord` from one ``AssetCheckEvaluation``; ``blocking`` and the fallback
    ``description`` come from the check's definition when given."""
    values, thresholds = _split_metadata(ev.metadata)
    return CheckRecord(
        asset=ev.asset_key.to_user_string(),
        check=ev.check_name,
        partition=ev.partition,
        passed=bool(ev.passed),
        severity=ev.severity.value,
        blocking=bool(ev.blocking if blocking is None else blocking),
        values=values,
        thresholds=thresholds,
        description=ev.description or description,
        timestamp=float(timestamp),
        run_id=run_id,
    )


def _evaluation_records(instance: dg.DagsterInstance, after_timestamp: float | None, page_size: int):
    """Check evaluations, newest first, a page at a time."""
    cursor = None
    while True:
        flt = dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                                    before_cursor=cursor, after_timestamp=after_timestamp)
        with warnings.catch_warnings():
            # deprecated for 2.0 without a replacement for check evaluations in 1.13
            # (fetch_materializations/fetch_observations cover only their own event types)
            warnings.simplefilter("ignore", DeprecationWarning)
            page = instance.get_event_records(flt, limit=page_size, ascending=False)
        yield from page
        if len(page) < page_size:
            return
        cursor = page[-1].storage_id


def gather_check_results(instance: dg.DagsterInstance, source, *, prefix: Iterable[str] | None = None,
                         after_timestamp: float | None = None, page_size: int = _PAGE) -> list[CheckRecord]:
    """The latest result of every check of ``source`` for every partition, from ``instance``.

    Returns one :class:`CheckRecord` per expected (check, partition), sorted by asset, check and
    partition; ``passed`` is ``None`` where no evaluation exists (after ``after_timestamp`` when
    given). Evaluations of checks or partitions the graph no longer defines are ignored. Reads
    newest first and stops as soon as every expected result is found.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    expected = expected_checks(source, instance=instance, prefix=prefix)
    wanted = {(e.key, p): e for e in expected for p in e.partitions}
    found: dict[tuple[dg.AssetCheckKey, str | None], CheckRecord] = {}
    if wanted:
        for rec in _evaluation_records(instance, after_timestamp, page_size):
            entry = rec.event_log_entry
            ev = entry.dagster_event.event_specific_data
            k = (dg.AssetCheckKey(ev.asset_key, ev.check_name), ev.partition)
            if k in wanted and k not in found:
                e = wanted[k]
                found[k] = record_from_evaluation(ev, timestamp=entry.timestamp, run_id=entry.run_id,
                                                  blocking=e.blocking, description=e.description)
                if len(found) == len(wanted):
                    break
    out = []
    for k, e in wanted.items():
        out.append(found.get(k) or CheckRecord(
            asset=k[0].asset_key.to_user_string(), check=k[0].name, partition=k[1], passed=None, severity=None,
            blocking=e.blocking, description=e.description))
    return sorted(out, key=lambda r: (r.asset, r.check, r.partition or ""))
