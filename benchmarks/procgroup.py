"""Commands started in their own session (process group), output to a log file, stopped by group:
SIGTERM, then SIGKILL after a timeout. Used by ``benchmarks/scale.py`` and the Celery e2e test,
which start Redis, Celery workers and Dagster CLI runs and must leave nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["live_members", "ProcessGroup"]


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are alive (zombies waiting for their reaper excluded)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(d.name))
    return out


class ProcessGroup:
    """``args`` started in a new session in ``cwd``, stdout and stderr to ``logfile``."""

    def __init__(self, name: str, args: list, env: dict, logfile: Path, cwd: Path):
        self.name, self.logfile = name, logfile
        self._fh = open(logfile, "wb")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([str(a) for a in args], cwd=cwd, env=env, stdout=self._fh,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pgid = self.proc.pid
        self.seconds: float | None = None

    def poll(self) -> int | None:
        """The return code (``None`` while running); records ``seconds`` when it has ended."""
        rc = self.proc.poll()
        if rc is not None and self.seconds is None:
            self.seconds = time.perf_counter() - self.t0
        return rc

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def text(self) -> str:
        return self.logfile.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> list[int]:
        """SIGTERM to the group, SIGKILL after ``timeout``; the pids still alive after that."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if not live_members(self.pgid):
                break
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + wait
            while time.monotonic() < end and live_members(self.pgid):
                try:
                    self.proc.wait(0.2)
                except subprocess.TimeoutExpired:
                    pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._fh.close()
        return live_members(self.pgid)
