"""``check_report``: the latest result of every check, for every partition, in one place.

Writes ``check_report.{md,html,json}`` under ``<experiment>/reports/``, shows the per-check
summary as its metadata, and fails (after writing the files) while any blocking check has failed.
"""

from datetime import datetime, timezone

import dagster as dg
from dagster import AssetExecutionContext

from spinlock_core.validation.check_report import failed_blocking, render_summary_markdown, summarize, write_report

from ..conditions import REFRESH
from ..experiment import Experiment
from ..metadata import OWNERS, tags
from ..reports import gather_check_results
from ..resources import SpinlockStorage

__all__ = ["build", "report_context"]


def report_context(exp: Experiment, instance: dg.DagsterInstance | None = None) -> dict:
    """Header facts of a report: the experiment, its config file and the instance it was read from."""
    ctx = {"experiment": exp.cfg.metadata.name, "config": str(exp.config_path)}
    if exp.prefix:
        ctx["key prefix"] = "/".join(exp.prefix)
    root = getattr(instance, "root_directory", None) if instance is not None else None
    if root:
        ctx["dagster instance"] = str(root)
    return ctx


def _check_source(context: AssetExecutionContext, exp: Experiment):
    """``(source, how)``: where the expected checks come from. A code-location run (UI, daemon,
    ``dagster asset materialize``) has the repository it was loaded from; in-process execution
    (``dg.materialize``, ``execute_in_process``) has none, so the experiment's definitions are
    built again from its config, as ``spinlock report`` does."""
    try:
        return context.repository_def, "the code location's repository"
    except Exception:  # dagster raises a bare invariant error when no repository is attached
        from ..definitions import build_definitions  # not at module level: definitions imports this module

        return build_definitions(exp.config_path, key_prefix=exp.prefix or None), f"the definitions of {exp.config_path}"


def build(exp: Experiment, upstream_keys: list) -> list:
    """``check_report`` downstream of ``upstream_keys`` (names such as ``"dataset"``, resolved
    under the experiment's key prefix, or ``dg.AssetKey``s)."""
    cfg = exp.cfg
    key = exp.key("check_report")
    deps = [k if isinstance(k, dg.AssetKey) else exp.key(k) for k in upstream_keys]

    @dg.asset(
        key=key,
        deps=deps,
        group_name="reports",
        automation_condition=REFRESH,
        kinds={"html", "json", "markdown"},
        owners=OWNERS, tags=tags("reports"),
        description="The latest result of every asset check for every shard (passed, failed or not run), with "
        "severity, measured values next to their thresholds and when each ran: check_report.md/.html/.json "
        "under the experiment's reports/ folder. Fails, after writing them, while a blocking check has failed.",
    )
    def check_report(context: AssetExecutionContext, storage: SpinlockStorage) -> dg.MaterializeResult:
        source, how = _check_source(context, exp)
        records = gather_check_results(context.instance, source, prefix=exp.prefix)
        paths = write_report(records, storage.paths(cfg).root / "reports",
                             title=f"Spinlock check report: {cfg.metadata.name}",
                             generated=datetime.now(timezone.utc).timestamp(),
                             context=report_context(exp, context.instance))
        s = summarize(records)
        metadata = {
            "summary": dg.MetadataValue.md(render_summary_markdown(records)),
            **{k: s[k] for k in ("total", "passed", "failed", "not_run", "failed_blocking")},
            **{f"path/{fmt}": dg.MetadataValue.path(str(p)) for fmt, p in paths.items()},
        }
        context.log.info(f"check report ({s['checks']} checks expected by {how}): {s['passed']}/{s['total']} passed, "
                         f"{s['failed']} failed, {s['not_run']} not run -> {paths['html']}")
        if s["not_run"]:
            missing = [r.label for r in records if r.passed is None]
            context.log.warning(f"{len(missing)} expected check result(s) never ran: {', '.join(missing[:20])}"
                                + (" ..." if len(missing) > 20 else ""))
        blocked = failed_blocking(records)
        if blocked:
            lines = [f"{r.label} ({r.severity}, ran {r.ran_at}, run {r.run_id}): {r.description}" for r in blocked]
            raise dg.Failure(
                description=f"{len(blocked)} blocking check(s) failed:\n" + "\n".join(lines),
                metadata={**metadata, "failed_blocking_checks": dg.MetadataValue.md("\n".join(f"- {ln}" for ln in lines))},
                allow_retries=False,
            )
        return dg.MaterializeResult(metadata=metadata)

    return [check_report]
