"""Progress lines in the Dagster run log for long loops."""

from __future__ import annotations

import time

import dagster as dg


def progress_logger(context: "dg.AssetExecutionContext", label: str, every_s: float = 5.0):
    """``progress(done, total)`` that logs at most every ``every_s`` seconds, and at the end."""
    t0 = time.perf_counter()
    last = [t0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - last[0] >= every_s:
            last[0] = now
            rate = done / max(now - t0, 1e-9)
            eta = (total - done) / rate if rate > 0 else float("inf")
            context.log.info(f"{label}: {done}/{total} operators ({100 * done / total:.0f}%), {rate:.2f} op/s, eta {eta:.0f}s")

    return progress
