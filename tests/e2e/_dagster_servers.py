"""Real Dagster processes for end-to-end tests: ``dagster-webserver`` and ``dagster-daemon`` on
127.0.0.1, each in its own session (process group), queried through GraphQL and stopped by process
group only (SIGTERM, then SIGKILL after a timeout).

Usage::

    web = start([BIN / "dagster-webserver", "-h", "127.0.0.1", "-p", str(port), ...], log, env)
    try:
        wait_http(port, web, log)
        gql(port, "{ ... }")
    finally:
        stop(web)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import ROOT

BIN = Path(sys.executable).parent

__all__ = ["BIN", "DAEMON", "free_port", "gql", "gql_data", "start", "stop", "wait_http", "group_alive", "tail"]

#: ``dagster-daemon`` itself (its console script's ``main``), with the backfill daemon's loop
#: interval at 2 s instead of Dagster's fixed 30 s (``dagster._daemon.controller``'s
#: ``DEFAULT_DAEMON_INTERVAL_SECONDS``, read by the backfill loop on each pass; no setting exposes
#: it). A backfill then waits about 2 s, not up to 30, to be picked up and again to be marked
#: completed; everything else is the real daemon, in the real process layout.
DAEMON = [sys.executable, "-c",
          "import sys, dagster._daemon.controller as c; c.DEFAULT_DAEMON_INTERVAL_SECONDS = 2; "
          "from dagster._daemon.cli import main; sys.argv[0] = 'dagster-daemon'; sys.exit(main())"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gql(port: int, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
    """POST ``query`` to the webserver's ``/graphql``; the whole JSON answer."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                 data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def gql_data(port: int, query: str, variables: dict | None = None) -> dict:
    """``data`` of a GraphQL answer; fails the test on GraphQL ``errors``."""
    r = gql(port, query, variables)
    assert not r.get("errors"), json.dumps(r["errors"], indent=1)[:3000]
    return r["data"]


def _default_signals():
    # a parent started in the background may ignore SIGINT (bash does this for `&` jobs); the
    # servers must die of the signals `stop` sends
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(cmd: list, log: Path, env: dict, cwd: Path = ROOT) -> subprocess.Popen:
    """Start ``cmd`` in a new session (its own process group), output to ``log``."""
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_default_signals)


def tail(log: Path, n: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return ""


def wait_http(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> float:
    """Wait until ``/server_info`` answers; the seconds it took. Fails if ``proc`` exits first."""
    t0 = time.time()
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).read()
            return time.time() - t0
        except Exception:
            assert proc.poll() is None, f"exited rc={proc.returncode}:\n{tail(log)}"
            assert time.time() - t0 < timeout, f"no /server_info after {timeout} s:\n{tail(log)}"
            time.sleep(0.5)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we cannot signal: still alive
        return True


def stop(*procs: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop each process and everything in its process group (code servers, run workers): ``sig``
    to every group at once, then SIGKILL for whatever is left after ``timeout`` seconds. Only these
    groups are signalled (``start`` put each in its own session: the leader's pid is the group id)."""
    procs = [p for p in procs if p is not None]
    for p in procs:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pass
    while any(group_alive(p.pid) for p in procs) and time.time() < deadline:
        time.sleep(0.2)
    for p in procs:
        if group_alive(p.pid):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait()
