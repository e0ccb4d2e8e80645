"""The check report renders hand-made records: rows, values next to thresholds, escaping, JSON
round trip, atomic writes."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from html.parser import HTMLParser

import pytest

from spinlock_core.validation.check_report import (
    REPORT_FILES,
    CheckRecord,
    failed_blocking,
    records_from_json,
    render_html,
    render_json,
    render_markdown,
    render_summary_markdown,
    summarize,
    write_report,
)

T0 = datetime(2026, 11, 18, 8, 26, 40, tzinfo=timezone.utc).timestamp()
GENERATED = T0 + 3600


def _records() -> list[CheckRecord]:
    return [
        CheckRecord("rollouts", "policy_balance", "shard-0000", True, "ERROR", True,
                    values={"n": 8, "max_deviation": 0.0625, "policy/residual": 0.75},
                    thresholds={"tolerance": 0.1}, description="policy balance: max deviation 0.0625",
                    timestamp=T0, run_id="run-aaaaaaaaaaaa"),
        CheckRecord("features/summary", "nan_inf", "shard-0001", False, "ERROR", True,
                    values={"summary.aggregated/undocumented_nan": 1, "summary.aggregated/nan_total": 3},
                    thresholds={"undocumented_nan": 0, "inf": 0},
                    description="undocumented NaN or Inf in energy_growth", timestamp=T0 + 60, run_id="run-bbbbbbbbbbbb"),
        CheckRecord("features/summary", "nan_inf", "shard-0000", True, "ERROR", True,
                    values={"summary.aggregated/undocumented_nan": 0}, thresholds={"undocumented_nan": 0},
                    description="NaN only in documented columns, no Inf", timestamp=T0, run_id="run-aaaaaaaaaaaa"),
        CheckRecord("features/summary", "constant_columns", "shard-0001", False, "WARN", False,
                    values={"summary.aggregated/saturated": 2}, thresholds={"saturation_share": 0.5},
                    description="saturated <b>x</b> | y & z", timestamp=T0 + 60, run_id="run-bbbbbbbbbbbb"),
        CheckRecord("rollouts", "policy_balance", "shard-0002", None, None, True,
                    description="Realised fraction of every evolution policy within tolerance"),
        CheckRecord("dataset", "divergence", None, True, "WARN", False, values={"diverged": 0, "n": 24},
                    thresholds={"diverged": 0}, description="0 of 24 operators diverged", timestamp=T0 + 120,
                    run_id="run-cccccccccccc"),
    ]


def test_summary_counts_and_failed_blocking():
    recs = _records()
    s = summarize(recs)
    assert s == {"total": 6, "passed": 3, "failed": 2, "not_run": 1, "failed_blocking": 1, "failed_error": 1,
                 "failed_warn": 1, "checks": 4, "partitions": 3}
    assert [r.label for r in failed_blocking(recs)] == ["features/summary:nan_inf[shard-0001]"]
    assert [r.status for r in recs] == ["passed", "failed", "passed", "failed", "not run", "passed"]
    assert recs[0].ran_at == "2026-11-18T08:26:40Z" and recs[4].ran_at == ""


def test_values_pair_with_their_thresholds():
    r = _records()[1]
    assert r.pairs() == [("summary.aggregated/undocumented_nan", 1, 0), ("inf", None, 0),
                         ("summary.aggregated/nan_total", 3, None)]
    bal = _records()[0].pairs()
    assert bal[0] == ("tolerance", None, 0.1) and ("max_deviation", 0.0625, None) in bal


def test_markdown_rows_values_next_to_thresholds():
    md = render_markdown(_records(), title="Report | tiny", generated=GENERATED, context={"experiment": "tiny"})
    assert md.startswith("# Report \\| tiny\n")
    assert "- **generated**: 2026-11-18T09:26:40Z" in md and "- **experiment**: tiny" in md
    assert "## Failed blocking checks\n\n- `features/summary:nan_inf[shard-0001]` (ERROR): undocumented NaN" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| FAIL") or ln.startswith("| PASS") or ln.startswith("| NOT RUN")]
    assert len(rows) == 6
    bad = next(ln for ln in rows if "nan_inf" in ln and "shard-0001" in ln)
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", bad)[1:-1]]
    assert cells[:6] == ["FAIL", "features/summary", "nan_inf", "shard-0001", "ERROR", "yes"]
    # measured and threshold columns line up entry by entry
    assert cells[6].split("<br>")[0] == "summary.aggregated/undocumented_nan = 1"
    assert cells[7].split("<br>")[0] == "undocumented_nan = 0"
    assert cells[8] == "2026-11-18T08:27:40Z" and cells[9] == "run-bbbb"
    not_run = next(ln for ln in rows if ln.startswith("| NOT RUN"))
    assert "shard-0002" in not_run and "| - | yes |" in not_run
    assert "saturated <b>x</b> \\| y & z" in md  # the pipe cannot break the table
    unpart = next(ln for ln in rows if "divergence" in ln)
    assert "| dataset | divergence | - | WARN | no |" in unpart


def test_summary_markdown_per_check():
    md = render_summary_markdown(_records())
    assert md.startswith("**6 results (4 checks, 3 partitions): 3 passed, 2 failed (1 blocking), 1 not run**")
    assert "| features/summary | nan_inf | yes | ERROR | 1 | 1 | 0 | shard-0001 |" in md
    assert "| rollouts | policy_balance | yes | ERROR | 1 | 0 | 1 | - |" in md
    assert "| dataset | divergence | no | WARN | 1 | 0 | 0 | - |" in md


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.tags, self._row, self._cell = [], set(), None, None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "tr":
            self._row = []
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td":
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row:
            self.rows.append(self._row)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_html_is_self_contained_and_escaped():
    page = render_html(_records(), title="<script>alert(1)</script>", generated=GENERATED, context={"experiment": "a&b"})
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "saturated &lt;b&gt;x&lt;/b&gt; | y &amp; z" in page and "a&amp;b" in page
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page)  # nothing fetched from elsewhere
    p = _Cells()
    p.feed(page)
    assert "script" not in p.tags
    results = [r for r in p.rows if len(r) == 11]
    assert len(results) == 6
    bad = next(r for r in results if r[2] == "nan_inf" and r[3] == "shard-0001")
    assert bad[:6] == ["FAIL", "features/summary", "nan_inf", "shard-0001", "ERROR", "yes"]
    assert bad[6].startswith("summary.aggregated/undocumented_nan = 1") and bad[7].startswith("undocumented_nan = 0")
    assert 'class="failed"' in page and 'class="not-run"' in page


def test_json_round_trip_and_strict():
    recs = _records() + [CheckRecord("parameters", "sobol_discrepancy", None, True, "ERROR", True,
                                     values={"worst_shard_ratio": float("nan")}, timestamp=T0, run_id="r")]
    text = render_json(recs, generated=GENERATED, context={"experiment": "tiny"})
    doc = json.loads(text)  # strict JSON: no bare NaN
    assert ": NaN" not in text
    assert doc["format"] == "spinlock-check-report" and doc["version"] == 1
    assert doc["generated"] == "2026-11-18T09:26:40Z" and doc["summary"]["failed_blocking"] == 1
    row = next(d for d in doc["records"] if d["check"] == "nan_inf" and d["partition"] == "shard-0001")
    assert row["status"] == "failed" and row["severity"] == "ERROR" and row["ran_at"] == "2026-11-18T08:27:40Z"
    assert row["values"]["summary.aggregated/undocumented_nan"] == 1 and row["thresholds"]["undocumented_nan"] == 0
    back = records_from_json(text)
    key = lambda r: (r.asset, r.check, r.partition or "")  # noqa: E731
    assert [b for b in back if b.asset != "parameters"] == sorted(recs[:-1], key=key)
    assert next(b for b in back if b.asset == "parameters").values == {"worst_shard_ratio": "nan"}
    with pytest.raises(ValueError, match="not a spinlock-check-report"):
        records_from_json('{"records": []}')
    with pytest.raises(ValueError, match="version 9 is not supported"):
        records_from_json(json.dumps({**doc, "version": 9}))


def test_record_validation():
    with pytest.raises(ValueError, match="severity must be"):
        CheckRecord("a", "c", None, True, "FATAL", False)
    with pytest.raises(ValueError, match="never ran has no timestamp"):
        CheckRecord("a", "c", None, None, None, False, timestamp=T0)
    with pytest.raises(ValueError, match="needs an asset and a check"):
        CheckRecord("", "c", None, True, "WARN", False)


def test_write_report_atomic(tmp_path):
    out = tmp_path / "nested" / "reports"
    paths = write_report(_records(), out, generated=GENERATED)
    assert {k: p.name for k, p in paths.items()} == REPORT_FILES
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES.values())  # no temp files left
    import os
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in paths.values())  # readable like any file
    assert records_from_json(paths["json"].read_text()) == sorted(_records(), key=lambda r: (r.asset, r.check, r.partition or ""))
    assert "nan_inf" in paths["md"].read_text() and "nan_inf" in paths["html"].read_text()
    write_report(_records()[:1], out, generated=GENERATED)  # replaced, not appended
    assert len(records_from_json(paths["json"].read_text())) == 1
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        write_report(_records(), tmp_path / "file")
