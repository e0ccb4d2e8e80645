"""The check report: the latest result of every data check, per asset, check and partition,
rendered as Markdown, self-contained HTML and JSON.

Gathering the results needs the orchestrator's event log and lives in ``spinlock_assets.reports``;
this module only renders :class:`CheckRecord` lists, so the same files come out of the
``check_report`` asset and of ``spinlock report``.

A record whose ``passed`` is ``None`` is a check that was expected (the graph defines it for
that partition) but never ran: it is reported as ``not run``, never dropped.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from .report import ERROR, WARN

__all__ = [
    "CheckRecord",
    "PASSED",
    "FAILED",
    "NOT_RUN",
    "REPORT_FORMAT",
    "REPORT_VERSION",
    "REPORT_FILES",
    "summarize",
    "failed_blocking",
    "render_summary_markdown",
    "render_markdown",
    "render_html",
    "render_json",
    "records_from_json",
    "write_report",
]

PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"
REPORT_FORMAT = "spinlock-check-report"
REPORT_VERSION = 1
#: format -> file name written by :func:`write_report`
REPORT_FILES = {"md": "check_report.md", "html": "check_report.html", "json": "check_report.json"}
#: measured values shown per table cell (all of them are in the JSON)
CELL_ITEMS = 6


@dataclass(frozen=True)
class CheckRecord:
    """The latest result of one check on one partition.

    ``asset`` is the asset key as a ``/``-joined string, ``partition`` ``None`` for an
    unpartitioned check. ``passed`` is ``None`` when the check never ran. ``severity`` is
    ``"ERROR"``/``"WARN"`` (``None`` when not run); ``blocking`` comes from the check's
    definition. ``values`` are the measured numbers (or short strings), ``thresholds`` the limits
    they were judged against (the ``threshold/<name>`` metadata of a result). ``timestamp`` is
    seconds since the epoch (UTC) of the evaluation, ``run_id`` the run that produced it.
    """

    asset: str
    check: str
    partition: str | None
    passed: bool | None
    severity: str | None
    blocking: bool
    values: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)
    description: str = ""
    timestamp: float | None = None
    run_id: str | None = None

    def __post_init__(self):
        if not self.asset or not self.check:
            raise ValueError(f"a check record needs an asset and a check name, got {self.asset!r}, {self.check!r}")
        if self.severity not in (ERROR, WARN, None):
            raise ValueError(f"severity must be {ERROR!r}, {WARN!r} or None, got {self.severity!r}")
        if self.passed is None and (self.timestamp is not None or self.run_id is not None):
            raise ValueError(f"{self.asset}:{self.check}: a check that never ran has no timestamp or run id")

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"`` or ``"not run"``."""
        return NOT_RUN if self.passed is None else PASSED if self.passed else FAILED

    @property
    def blocks(self) -> bool:
        """A failed blocking check: its data was kept from readers and downstream work stopped."""
        return self.blocking and self.passed is False

    @property
    def ran_at(self) -> str:
        """The evaluation time as ISO 8601 UTC (``""`` when not run)."""
        return _iso(self.timestamp) if self.timestamp is not None else ""

    @property
    def label(self) -> str:
        """``asset:check[partition]``, the name used in failure lists."""
        return f"{self.asset}:{self.check}" + (f"[{self.partition}]" if self.partition is not None else "")

    def pairs(self) -> list[tuple[str, object, object]]:
        """``(name, measured, threshold)`` rows: every measured value with the threshold of the
        same name (``features.x/undocumented_nan`` matches ``undocumented_nan``) first, then the
        other values, then thresholds no value matched (measured ``None``). Absent entries are
        ``None``."""
        matched, rest, used = [], [], set()
        for k, v in self.values.items():
            t = k if k in self.thresholds else k.rsplit("/", 1)[-1]
            if t in self.thresholds:
                matched.append((k, v, self.thresholds[t]))
                used.add(t)
            else:
                rest.append((k, v, None))
        lone = [(k, None, t) for k, t in self.thresholds.items() if k not in used]
        return matched + lone + rest


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sort_key(r: CheckRecord):
    return (r.asset, r.check, r.partition or "")


def summarize(records: list[CheckRecord]) -> dict:
    """Counts: ``total``, ``passed``, ``failed``, ``not_run``, ``failed_blocking``,
    ``failed_error`` and ``failed_warn`` (failed by severity), ``checks`` (distinct asset/check
    pairs) and ``partitions`` (distinct partition keys, unpartitioned not counted)."""
    status = Counter(r.status for r in records)
    return {
        "total": len(records),
        "passed": status[PASSED],
        "failed": status[FAILED],
        "not_run": status[NOT_RUN],
        "failed_blocking": sum(r.blocks for r in records),
        "failed_error": sum(r.passed is False and r.severity == ERROR for r in records),
        "failed_warn": sum(r.passed is False and r.severity == WARN for r in records),
        "checks": len({(r.asset, r.check) for r in records}),
        "partitions": len({r.partition for r in records if r.partition is not None}),
    }


def failed_blocking(records: list[CheckRecord]) -> list[CheckRecord]:
    """The failed blocking checks, sorted by asset, check and partition."""
    return sorted((r for r in records if r.blocks), key=_sort_key)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _cell_lines(r: CheckRecord, limit: int = CELL_ITEMS) -> tuple[list[str], list[str]]:
    """Two aligned columns of lines: ``name = measured`` and ``name = threshold``."""
    rows = r.pairs()
    measured = [f"{k} = {_fmt(v)}" if v is not None else f"{k}: -" for k, v, _ in rows[:limit]]
    limits = [f"{k.rsplit('/', 1)[-1]} = {_fmt(t)}" if t is not None else "" for k, _, t in rows[:limit]]
    if len(rows) > limit:
        measured.append(f"... {len(rows) - limit} more")
    return measured, limits


def _header(title: str, generated: float | None, context: dict | None) -> tuple[str, list[tuple[str, str]]]:
    facts = [("generated", _iso(generated if generated is not None else datetime.now(timezone.utc).timestamp()))]
    facts += [(str(k), _fmt(v)) for k, v in (context or {}).items()]
    return title, facts


def _per_check(records: list[CheckRecord]) -> list[dict]:
    """One row per asset/check: counts per status and the failed partitions."""
    out: dict[tuple[str, str], dict] = {}
    for r in sorted(records, key=_sort_key):
        row = out.setdefault((r.asset, r.check), {
            "asset": r.asset, "check": r.check, "blocking": r.blocking, "severities": set(),
            PASSED: 0, FAILED: 0, NOT_RUN: 0, "failed_partitions": []})
        row[r.status] += 1
        if r.severity:
            row["severities"].add(r.severity)
        if r.passed is False:
            row["failed_partitions"].append(r.partition if r.partition is not None else "(unpartitioned)")
    return list(out.values())


def _md(text: str) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(rows_i) + " |" for rows_i in rows]
    return lines


def _summary_line(s: dict) -> str:
    return (f"{s['total']} results ({s['checks']} checks, {s['partitions']} partitions): {s['passed']} passed, "
            f"{s['failed']} failed ({s['failed_blocking']} blocking), {s['not_run']} not run")


def render_summary_markdown(records: list[CheckRecord]) -> str:
    """A compact Markdown summary: the counts, then one row per check with its passed, failed
    and not-run partitions (the table the ``check_report`` asset shows in the UI)."""
    s = summarize(records)
    rows = [[_md(c["asset"]), _md(c["check"]), "yes" if c["blocking"] else "no", "/".join(sorted(c["severities"])) or "-",
             str(c[PASSED]), str(c[FAILED]), str(c[NOT_RUN]), _md(", ".join(c["failed_partitions"]) or "-")]
            for c in _per_check(records)]
    lines = [f"**{_summary_line(s)}**", ""]
    lines += _md_table(["asset", "check", "blocking", "severity", "passed", "failed", "not run", "failed partitions"], rows)
    return "\n".join(lines) + "\n"


_ICON = {PASSED: "PASS", FAILED: "FAIL", NOT_RUN: "NOT RUN"}


def render_markdown(records: list[CheckRecord], *, title: str = "Spinlock check report",
                    generated: float | None = None, context: dict | None = None) -> str:
    """The full report as Markdown: header facts (``generated`` time, then ``context`` such as
    the experiment), the failed blocking checks, the per-check summary and one row per check and
    partition with the measured values next to their thresholds."""
    title, facts = _header(title, generated, context)
    lines = [f"# {_md(title)}", ""] + [f"- **{_md(k)}**: {_md(v)}" for k, v in facts] + [""]
    blocked = failed_blocking(records)
    if blocked:
        lines += ["## Failed blocking checks", ""] + [f"- `{r.label}` ({r.severity}): {_md(r.description)}" for r in blocked] + [""]
    lines += ["## Summary", "", render_summary_markdown(records), "## Results", ""]
    rows = []
    for r in sorted(records, key=_sort_key):
        measured, limits = _cell_lines(r)
        rows.append([_ICON[r.status], _md(r.asset), _md(r.check), _md(r.partition or "-"), r.severity or "-",
                     "yes" if r.blocking else "no", "<br>".join(_md(m) for m in measured) or "-",
                     "<br>".join(_md(t) for t in limits) or "-", r.ran_at or "-", _md(r.run_id[:8] if r.run_id else "-"),
                     _md(r.description)])
    lines += _md_table(["status", "asset", "check", "partition", "severity", "blocking", "measured", "threshold",
                        "ran (UTC)", "run", "description"], rows)
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em;color:#1d2330}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em} th,td{border:1px solid #ccd;padding:.25em .5em;vertical-align:top;text-align:left}
th{background:#eef0f5} td.num{text-align:right}
tr.passed td.status{background:#dff3e3} tr.failed td.status{background:#f8d7da;font-weight:bold}
tr.not-run td.status{background:#fff3cd} .muted{color:#6b7280} code{font-size:.95em}
""".strip()


def _h(v) -> str:
    return html.escape(str(v), quote=True)


def render_html(records: list[CheckRecord], *, title: str = "Spinlock check report",
                generated: float | None = None, context: dict | None = None) -> str:
    """The full report as one self-contained HTML page (inline CSS, no scripts, no external
    resources); every value is HTML-escaped."""
    title, facts = _header(title, generated, context)
    s = summarize(records)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{_h(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{_h(title)}</h1>", "<ul>"]
    out += [f"<li><b>{_h(k)}</b>: {_h(v)}</li>" for k, v in facts]
    out += ["</ul>", f"<p><b>{_h(_summary_line(s))}</b></p>"]
    blocked = failed_blocking(records)
    if blocked:
        out += ["<h2>Failed blocking checks</h2>", "<ul>"]
        out += [f"<li><code>{_h(r.label)}</code> ({_h(r.severity)}): {_h(r.description)}</li>" for r in blocked]
        out += ["</ul>"]
    out += ["<h2>Summary</h2>", "<table><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in ("asset", "check", "blocking", "severity", "passed", "failed", "not run",
                                                "failed partitions"))
            + "</tr></thead><tbody>"]
    for c in _per_check(records):
        out.append("<tr>" + "".join(f"<td>{_h(v)}</td>" for v in (c["asset"], c["check"], "yes" if c["blocking"] else "no",
                                                                   "/".join(sorted(c["severities"])) or "-"))
                   + "".join(f'<td class="num">{c[k]}</td>' for k in (PASSED, FAILED, NOT_RUN))
                   + f"<td>{_h(', '.join(c['failed_partitions']) or '-')}</td></tr>")
    out += ["</tbody></table>", "<h2>Results</h2>", "<table><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in ("status", "asset", "check", "partition", "severity", "blocking",
                                                "measured", "threshold", "ran (UTC)", "run", "description"))
            + "</tr></thead><tbody>"]
    for r in sorted(records, key=_sort_key):
        measured, limits = _cell_lines(r)
        cells = [_h(r.asset), _h(r.check), _h(r.partition or "-"), _h(r.severity or "-"), "yes" if r.blocking else "no",
                 "<br>".join(_h(m) for m in measured) or "-", "<br>".join(_h(t) for t in limits) or "-",
                 _h(r.ran_at or "-"), f'<span title="{_h(r.run_id or "")}">{_h(r.run_id[:8] if r.run_id else "-")}</span>',
                 _h(r.description)]
        out.append(f'<tr class="{r.status.replace(" ", "-")}"><td class="status">{_ICON[r.status]}</td>'
                   + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out += ["</tbody></table>", "</body></html>"]
    return "\n".join(out) + "\n"


def _jsonable(v):
    """Strict JSON: non-finite floats become their string (``"nan"``, ``"inf"``)."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def render_json(records: list[CheckRecord], *, generated: float | None = None, context: dict | None = None) -> str:
    """``{"format", "version", "generated", "context", "summary", "records": [...]}`` as strict
    JSON (non-finite floats written as strings); :func:`records_from_json` reads it back.
    Each record carries its fields plus ``status`` and ``ran_at``."""
    ts = generated if generated is not None else datetime.now(timezone.utc).timestamp()
    doc = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "generated": _iso(ts),
        "context": _jsonable(context or {}),
        "summary": summarize(records),
        "records": [_jsonable(asdict(r)) | {"status": r.status, "ran_at": r.ran_at}
                    for r in sorted(records, key=_sort_key)],
    }
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def records_from_json(text: str) -> list[CheckRecord]:
    """The records of a :func:`render_json` document. Raises ``ValueError`` for another format
    or version."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("format") != REPORT_FORMAT:
        raise ValueError(f"not a {REPORT_FORMAT} document")
    if doc.get("version") != REPORT_VERSION:
        raise ValueError(f"{REPORT_FORMAT} version {doc.get('version')!r} is not supported (expected {REPORT_VERSION})")
    names = {f.name for f in fields(CheckRecord)}
    return [CheckRecord(**{k: v for k, v in d.items() if k in names}) for d in doc["records"]]


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` next to ``path`` and rename it into place: readers see the old file or
    the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        # mkstemp creates 0600; a report is for everyone who may read the folder (umask applies)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(records: list[CheckRecord], out_dir: Path | str, *, title: str = "Spinlock check report",
                 generated: float | None = None, context: dict | None = None) -> dict[str, Path]:
    """Write ``check_report.md``, ``check_report.html`` and ``check_report.json`` into
    ``out_dir`` (created if missing), each atomically (temp file + rename). Returns
    ``{"md": path, "html": path, "json": path}``. Raises ``ValueError`` when ``out_dir`` is a
    file."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"report folder {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    ts = generated if generated is not None else datetime.now(timezone.utc).timestamp()
    texts = {
        "md": render_markdown(records, title=title, generated=ts, context=context),
        "html": render_html(records, title=title, generated=ts, context=context),
        "json": render_json(records, generated=ts, context=context),
    }
    paths = {}
    for fmt, text in texts.items():
        paths[fmt] = out / REPORT_FILES[fmt]
        _write_atomic(paths[fmt], text)
    return paths
