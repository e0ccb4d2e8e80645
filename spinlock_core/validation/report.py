"""The outcome of one data check, as the library computes it (the Dagster layer only renders it)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CheckDef", "CheckReport", "markdown_table"]

ERROR = "ERROR"
WARN = "WARN"


@dataclass(frozen=True)
class CheckDef:
    """A check a stage runs on every write: its ``name``, whether a failure keeps the data from
    readers (``blocking``), and what it guarantees (``description``)."""

    name: str
    blocking: bool
    description: str


@dataclass
class CheckReport:
    """One check's verdict on one write (a shard, the parameters, the dataset).

    ``severity`` is ``"ERROR"`` or ``"WARN"``; a failed blocking check (always ERROR) sends the
    write to quarantine. ``values`` are numbers (or short strings) shown next to ``thresholds``;
    ``tables`` are Markdown tables (per-feature details).
    """

    name: str
    passed: bool
    blocking: bool
    severity: str
    description: str
    values: dict = field(default_factory=dict)
    thresholds: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.severity not in (ERROR, WARN):
            raise ValueError(f"severity must be {ERROR!r} or {WARN!r}, got {self.severity!r}")
        if self.blocking and self.severity != ERROR:
            raise ValueError(f"check {self.name!r}: a blocking check has severity ERROR")

    @property
    def blocks(self) -> bool:
        """True when this report keeps the data from readers."""
        return self.blocking and not self.passed

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "passed": self.passed,
            "blocking": self.blocking,
            "severity": self.severity,
            "description": self.description,
            "values": self.values,
            "thresholds": self.thresholds,
        }


def markdown_table(rows: dict, header: tuple[str, str], limit: int = 200) -> str:
    """``{key: value}`` as a two-column Markdown table (``"none"`` when empty), at most
    ``limit`` rows (the rest counted)."""
    if not rows:
        return "none"
    items = list(rows.items())
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"] + [f"| {k} | {v} |" for k, v in items[:limit]]
    if len(items) > limit:
        lines.append(f"| ... | {len(items) - limit} more |")
    return "\n".join(lines)
