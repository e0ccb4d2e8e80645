"""Realised vs configured label fractions (IC types, IC families, evolution policies)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sampling import balance_tolerance

__all__ = ["BalanceReport", "label_balance"]


@dataclass
class BalanceReport:
    n: int
    tolerance: float
    #: label -> (configured fraction, realised fraction, count)
    rows: dict[str, tuple[float, float, int]]
    #: labels present that have no configured weight
    unexpected: list[str]

    @property
    def max_deviation(self) -> float:
        return max((abs(r - e) for e, r, _ in self.rows.values()), default=0.0)

    @property
    def passed(self) -> bool:
        return not self.unexpected and self.max_deviation <= self.tolerance

    def worst(self) -> str:
        if self.unexpected:
            return f"unexpected labels {self.unexpected}"
        if not self.rows:
            return "no labels"
        k = max(self.rows, key=lambda k: abs(self.rows[k][1] - self.rows[k][0]))
        e, r, c = self.rows[k]
        return f"{k}: {r:.4f} realised vs {e:.4f} configured ({c} of {self.n})"

    def table(self) -> str:
        """A Markdown table, one row per label."""
        lines = ["| label | configured | realised | count | deviation |", "|---|---|---|---|---|"]
        for k, (e, r, c) in self.rows.items():
            lines.append(f"| {k} | {e:.4f} | {r:.4f} | {c} | {r - e:+.4f} |")
        return "\n".join(lines)


def label_balance(labels, weights: dict[str, float], *, tolerance: float | None = None) -> BalanceReport:
    """Compare realised fractions of ``labels [n]`` with ``weights``.

    The tolerance defaults to :func:`spinlock_core.sampling.balance_tolerance` (1 percentage
    point, widened to 3 counts for small ``n``).
    """
    labels = np.asarray([x.decode() if isinstance(x, bytes) else str(x) for x in labels])
    n = len(labels)
    if n == 0:
        raise ValueError("label_balance needs at least one label")
    tol = balance_tolerance(n) if tolerance is None else tolerance
    names, counts = np.unique(labels, return_counts=True)
    got = dict(zip(names.tolist(), counts.tolist()))
    rows = {k: (float(w), got.get(k, 0) / n, int(got.get(k, 0))) for k, w in weights.items()}
    return BalanceReport(n, tol, rows, sorted(set(got) - set(weights)))
