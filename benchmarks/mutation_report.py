"""Mutation-testing report: reads mutmut 3's results for the modules ``[tool.mutmut]`` mutates
(its ``mutants/<file>.meta`` files, through mutmut's own reader), subtracts the equivalent mutants
listed in ``mutation/equivalent.toml`` and writes ``benchmarks/results/mutation.json`` and a short
``benchmarks/results/mutation.md``; prints the JSON summary (without the diffs) to stdout.

    make mutation                 # mutmut run (incremental), then this script
    python benchmarks/mutation_report.py [--no-diffs]

Statuses are mutmut's (``mutmut.stats.status_by_exit_code``). Counting:

* killed = mutmut's ``killed`` + ``timeout`` (a mutant that makes the tests run past mutmut's time
  limit was detected) + ``segfault`` (the test process died: -11, or -9 = SIGKILL at the hard CPU
  limit, i.e. a timeout) + ``caught by type check``;
* score = killed / (total - equivalent - skipped - not checked - interrupted); ``survived``,
  ``no tests`` (no selected test reaches the function) and ``suspicious`` count against it.

Sampling (``mutation/scope.toml``, ``mutation/sample.py``): the modules it names are run on a fixed
sample of their mutants; a mutant left out reads ``not sampled`` here (mutmut's ``skipped``) and is
not counted. Each module gets its sample score with a 95% Wilson interval, and the scope gets a
stratified estimate: ``sum_m N_m p_m / sum_m N_m`` over the modules with checked mutants, ``N_m``
the module's mutants less its equivalent share, ``p_m`` its score on what was checked, with the
standard error ``sqrt(sum_m (N_m/N)^2 p_m (1 - p_m) / n_m (1 - n_m/N_m))`` (zero for a module run
in full).

``mutation/equivalent.toml`` is a table ``"<mutant name>" = "one-line reason"``; an entry that names
no existing mutant, has an empty reason, or names a mutant the tests kill (so it is not
equivalent) makes the script exit with status 1, naming the entry.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tomllib
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / "mutation" / "equivalent.toml"
OUT = ROOT / "benchmarks" / "results"

sys.path.insert(0, str(ROOT / "mutation"))  # mutation/sample.py: the sampling groups and membership

log = logging.getLogger("mutation_report")

KILLED = {"killed", "timeout", "segfault", "caught by type check"}
EXCLUDED = {"skipped", "not sampled", "outside sample", "not checked", "check was interrupted by user"}
NOT_KILLED = {"survived", "no tests", "suspicious"}


class BadEquivalent(Exception):
    pass


def load_results() -> dict[str, dict]:
    """``{mutant name: {"file", "function", "status", "exit_code", "rate"}}`` for every mutant of
    every file ``[tool.mutmut]`` mutates (mutmut's config, meta files and status names); ``rate``
    is the file's sampling rate (1.0: run in full), ``status`` is ``not sampled`` for a mutant that
    ``mutation/sample.py`` left out."""
    from sample import group_of, in_sample, load_scope, rate_of

    groups = load_scope()
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    results = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, exit_code in data.exit_code_by_key.items():
            func, cls = orig_function_and_class_names_from_key(name)
            status = status_by_exit_code[exit_code]
            if not in_sample(name, str(path), groups):
                # left out (skipped), or checked before the sample shrank: not part of the estimate
                status = "not sampled" if status == "skipped" else "outside sample"
            results[name] = {
                "file": str(path),
                "function": f"{cls}.{func}" if cls else func,
                "status": status,
                "exit_code": exit_code,
                "rate": rate_of(str(path), groups),
                "group": group_of(str(path), groups),
            }
    return results


def load_equivalent(results: dict[str, dict]) -> dict[str, str]:
    if not EQUIVALENT.exists():
        log.info("no %s: no equivalent mutants", EQUIVALENT.relative_to(ROOT))
        return {}
    try:
        table = tomllib.loads(EQUIVALENT.read_text("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise BadEquivalent(f"{EQUIVALENT.relative_to(ROOT)}: not valid TOML: {e}") from e
    rel = EQUIVALENT.relative_to(ROOT)
    for name, reason in table.items():
        if not isinstance(reason, str) or not reason.strip():
            raise BadEquivalent(f"{rel}: {name!r}: the reason must be a non-empty string, got {reason!r}")
        if "\n" in reason.strip():
            raise BadEquivalent(f"{rel}: {name!r}: the reason must be one line")
        if name not in results:
            raise BadEquivalent(f"{rel}: {name!r} names no existing mutant")
        if results[name]["status"] == "timeout":
            # a time limit hit on a loaded machine is not a kill that proves the entry wrong; an
            # equivalent mutant runs every covering test, the slowest case (sample.py --retest re-runs it)
            log.warning("%s: %r timed out; re-run it on a quiet machine (MUTATION_RETEST=1 make mutation) "
                        "to confirm it is equivalent", rel, name)
        elif results[name]["status"] in KILLED:
            raise BadEquivalent(f"{rel}: {name!r} is {results[name]['status']} by the tests, so not equivalent")
    return dict(table)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of ``k`` successes in ``n`` trials (95% for z = 1.96)."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(centre - half, 4), round(centre + half, 4)


def counts(mutants: list[dict]) -> dict:
    """One module's (or any set's) counts: ``checked`` = killed + not killed (the denominator),
    ``population`` = its mutants less the equivalent ones (those found in a sample scaled up to
    the module), ``score`` with its 95% Wilson interval."""
    by_status = Counter(m["status"] for m in mutants)
    # an equivalent mutant not (yet) checked is already out of the denominator as "not checked"
    equivalent = sum(m["equivalent"] and m["status"] not in EXCLUDED for m in mutants)
    killed = sum(by_status[s] for s in KILLED)
    excluded = sum(by_status[s] for s in EXCLUDED)
    denominator = len(mutants) - equivalent - excluded
    sampled = len(mutants) - by_status["not sampled"] - by_status["outside sample"]
    population = len(mutants) - (equivalent * len(mutants) / sampled if sampled else 0)
    return {
        "total": len(mutants),
        "rate": max((m["rate"] for m in mutants), default=1.0),
        "by_status": dict(sorted(by_status.items())),
        "checked": denominator,
        "population": round(population, 1),
        "killed_incl_timeouts": killed,
        "equivalent": equivalent,
        "not_killed": sum(1 for m in mutants if m["status"] in NOT_KILLED and not m["equivalent"]),
        "score": round(killed / denominator, 4) if denominator else None,
        "interval95": wilson(killed, denominator),
    }


def stratified(mutants: list[dict], groups: list[tuple[float, list[str]]], fresh_from: dict[int, float] | None = None) -> dict:
    """The score over the whole scope, stratified by sampling group: the files run in full form
    one stratum (their exact counts), each ``[[sampled]]`` group of ``mutation/scope.toml``
    another (a self-weighting sample: the pooled score of its checked mutants). Each stratum is
    weighted by its population ``N_h`` (its mutants less the equivalent share), with the standard
    error ``sqrt(sum_h (N_h/N)^2 p_h (1 - p_h) / n_h (1 - n_h/N_h))``; a stratum run in full and
    wholly checked adds no error. A stratum with nothing checked is listed, not guessed.

    ``fresh_from`` (``{group: u}``): tests were written against the survivors of that group's
    mutants with ``unit(name) < u``, so their verdicts overstate the group's score; its ``p_h``
    and ``n_h`` then come from the fresh draw alone (``u <= unit(name) < rate``), an unbiased
    sample of the tests as they are (``N_h`` stays the group's population)."""
    from sample import unit

    fresh_from = fresh_from or {}
    strata: dict[str, list[dict]] = defaultdict(list)
    for m in mutants:
        strata["full" if m["rate"] >= 1.0 else f"sampled at {m['rate']:g}: {', '.join(groups[m['group']][1])}"].append(m)
    rows = {h: counts(ms) for h, ms in strata.items()}
    scored = {}  # the counts each stratum's p_h and n_h come from
    for h, ms in strata.items():
        g = ms[0]["group"]
        if g in fresh_from:
            scored[h] = counts([m for m in ms if m["status"] in {"not sampled", "outside sample"} or unit(m["name"]) >= fresh_from[g]])
            rows[h]["scored_on"] = f"fresh draw (u >= {fresh_from[g]:g}): {scored[h]['checked']} checked, score {scored[h]['score']}"
        else:
            scored[h] = rows[h]
    checked = {h: c for h, c in rows.items() if scored[h]["checked"]}
    total = sum(c["population"] for c in checked.values())
    if not total:
        return {"score": None, "strata": rows}
    est = sum(c["population"] * scored[h]["score"] for h, c in checked.items()) / total
    var = 0.0
    for h, c in checked.items():
        n, big_n, p = scored[h]["checked"], c["population"], scored[h]["score"]
        fpc = max(0.0, 1.0 - n / big_n) if big_n else 0.0
        var += (big_n / total) ** 2 * p * (1 - p) / n * fpc
    se = math.sqrt(var)
    return {
        "score": round(est, 4),
        "interval95": (round(est - 1.96 * se, 4), round(est + 1.96 * se, 4)),
        "population": round(total, 1),
        "checked": sum(scored[h]["checked"] for h in checked),
        "fresh_from": {str(g): f for g, f in fresh_from.items()},
        "strata": rows,
        "strata_not_checked": sorted(h for h in rows if h not in checked),
        "not_yet_checked": sum(c["by_status"].get("not checked", 0) for c in rows.values()),
    }


def fresh_draws(mutants: list[dict], groups: list[tuple[float, list[str]]], fresh_from: dict[int, float]) -> list[dict]:
    """For each sampled group whose rate was raised after tests were written against its earlier
    survivors (``fresh_from`` in ``mutation/scope.toml``): the counts of the earlier draw
    (``u < fresh_from``, the mutants those tests were written against) and of the fresh draw
    (``fresh_from <= u < rate``, mutants no test was written for), so that the estimate can be
    checked for overfitting to its own sample."""
    from sample import unit

    out = []
    for i, f in sorted(fresh_from.items()):
        ms = [m for m in mutants if m["group"] == i and m["status"] not in {"not sampled", "outside sample"}]
        out.append({
            "group": ", ".join(groups[i][1]),
            "fresh_from": f,
            "rate": groups[i][0],
            "earlier": counts([m for m in ms if unit(m["name"]) < f]),
            "fresh": counts([m for m in ms if unit(m["name"]) >= f]),
        })
    return out


def describe(diff: str) -> str:
    """The changed lines of a mutant's diff as ``old -> new`` (one line)."""
    minus = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return f"{' / '.join(minus) or '(nothing)'} -> {' / '.join(plus) or '(nothing)'}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-diffs", action="store_true", help="leave out the surviving mutants' diffs")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.chdir(ROOT)  # mutmut reads pyproject.toml and mutants/ relative to the working directory

    import mutmut

    if not Path("mutants").is_dir():
        log.error("no mutants/ folder: run `mutmut run` (make mutation) first")
        return 1
    results = load_results()
    from sample import load_fresh_from, load_scope

    groups = load_scope()
    if not results:
        log.error("mutants/ holds no results for the files [tool.mutmut] mutates: run `mutmut run`")
        return 1
    try:
        equivalent = load_equivalent(results)
    except BadEquivalent as e:
        log.error("%s", e)
        return 1

    mutants = [{"name": n, **r, "equivalent": n in equivalent} for n, r in sorted(results.items())]
    by_file = defaultdict(list)
    for m in mutants:
        by_file[m["file"]].append(m)

    survivors = []
    if not args.no_diffs:
        from mutmut.mutation.diff_apply import get_diff_for_mutant
    for m in mutants:
        if m["status"] not in NOT_KILLED or m["equivalent"]:
            continue
        s = {k: m[k] for k in ("name", "file", "function", "status")}
        if not args.no_diffs:
            try:
                s["diff"] = get_diff_for_mutant(m["name"], path=m["file"])
                s["mutation"] = describe(s["diff"])
            except Exception as e:  # a stale mutants/ copy: report, do not fail the whole report
                log.warning("no diff for %s: %s", m["name"], e)
        survivors.append(s)

    no_tests = sorted({m["file"] + "::" + m["function"] for m in mutants if m["status"] == "no tests"})
    if no_tests:
        # mutmut records which tests reach which function only in its full stats run (and for new
        # tests): a function that became mutable later (a decorator removed, a function added)
        # has no entry, so every mutant of it reads "no tests" until that run is repeated
        log.warning("%d function(s) with 'no tests' mutants: %s. If tests do reach them, delete "
                    "mutants/mutmut-stats.json and run `mutmut run` again (a full stats run).",
                    len(no_tests), ", ".join(no_tests))
    meta = ROOT / "mutants" / "mutmut-stats.json"
    per_module = {f: counts(ms) for f, ms in sorted(by_file.items())}
    report = {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mutmut_version": getattr(mutmut, "__version__", None),
        "counting": "killed = killed + timeout + segfault + caught by type check (timeouts count as killed); "
                    "score = killed / (total - equivalent - skipped - not checked - interrupted)",
        "overall": counts(mutants),
        "per_module": per_module,
        "estimate": stratified(mutants, groups, load_fresh_from()),
        "estimate_whole_sample": stratified(mutants, groups),
        "fresh_draws": fresh_draws(mutants, groups, load_fresh_from()),
        "equivalent": equivalent,
        "survivors": survivors,
        "stats_file": str(meta.relative_to(ROOT)) if meta.exists() else None,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "mutation.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    (OUT / "mutation.md").write_text(markdown(report), "utf-8")
    log.info("wrote %s and %s", (OUT / "mutation.json").relative_to(ROOT), (OUT / "mutation.md").relative_to(ROOT))

    summary = {k: v for k, v in report.items() if k != "survivors"}
    summary["survivors"] = [{k: s[k] for k in ("name", "status", "mutation") if k in s} for s in survivors]
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


def markdown(report: dict) -> str:
    o, e = report["overall"], report["estimate"]
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    score = lambda c: "n/a" if c["score"] is None else pct(c["score"])  # noqa: E731
    interval = lambda c: "" if not c.get("interval95") else f"{pct(c['interval95'][0])}-{pct(c['interval95'][1])}"  # noqa: E731
    lines = [
        "# Mutation testing (mutmut)",
        "",
        f"Generated {report['generated']} with mutmut {report['mutmut_version']}. Timeouts count as killed; "
        "score = killed / (total - equivalent - not sampled - not checked). Modules with a rate below 1 run "
        "on a fixed sample of their mutants (mutation/scope.toml).",
        "",
        f"**Estimated score over the scope: {score(e)}** (95% interval {interval(e)}; stratified over the "
        f"strata below, weighted by their {e.get('population', 0):.0f} mutants; {e.get('checked', 0)} checked, "
        f"{e.get('not_yet_checked', 0)} drawn but not yet checked)",
        "",
    ]
    w = report.get("estimate_whole_sample")
    if e.get("fresh_from") and w:
        lines += ["A group whose earlier draw had tests written against its survivors is scored on its fresh draw "
                  "alone (the last column of the strata table). Over the whole sample, earlier draws included, the "
                  f"estimate would read {score(w)} ({interval(w)}): the difference is what targeting the sample "
                  "adds, not what the tests catch.", ""]
    lines += [
        f"Over the checked mutants alone: {score(o)} ({o['killed_incl_timeouts']} killed of {o['checked']} checked, "
        f"{o['equivalent']} equivalent, {o['not_killed']} not killed; statuses {o['by_status']})",
        "",
    ]
    if e.get("not_yet_checked"):
        lines += [f"**Incomplete:** {e['not_yet_checked']} mutants of the sample are not checked yet. mutmut runs "
                  "the mutants with the fastest tests first, so the figures above are biased toward those; only a "
                  "run with nothing left unchecked gives the estimate its stated meaning.", ""]
    if e.get("strata"):
        lines += ["| stratum | mutants | checked | killed | not killed | not yet checked | score | 95% interval | scored on |",
                  "|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for h, c in e["strata"].items():
            lines.append(f"| {h} | {c['total']} | {c['checked']} | {c['killed_incl_timeouts']} | {c['not_killed']} | "
                         f"{c['by_status'].get('not checked', 0)} | {score(c)} | {interval(c)} | "
                         f"{c.get('scored_on', 'all checked')} |")
        lines.append("")
    if report.get("fresh_draws"):
        lines += ["Tests were written against the survivors of a smaller sample before its rate was raised; the "
                  "mutants added by the raise are a fresh draw no test was written for:", "",
                  "| group | draw | checked | killed | not killed | not yet checked | score | 95% interval |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for d in report["fresh_draws"]:
            for label, c in ((f"earlier (u < {d['fresh_from']:g})", d["earlier"]),
                             (f"fresh ({d['fresh_from']:g} <= u < {d['rate']:g})", d["fresh"])):
                lines.append(f"| {d['group']} | {label} | {c['checked']} | {c['killed_incl_timeouts']} | "
                             f"{c['not_killed']} | {c['by_status'].get('not checked', 0)} | {score(c)} | {interval(c)} |")
        lines.append("")
    lines += [
        "| module | mutants | rate | checked | killed | equivalent | not killed | score | 95% interval |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f, c in report["per_module"].items():
        lines.append(f"| `{f}` | {c['total']} | {c['rate']:g} | {c['checked']} | {c['killed_incl_timeouts']} | "
                     f"{c['equivalent']} | {c['not_killed']} | {score(c)} | {interval(c)} |")
    lines += ["", f"## Not killed ({len(report['survivors'])})", ""]
    for s in report["survivors"]:
        desc = s.get("mutation", "")
        lines.append(f"- `{s['name']}` ({s['status']}, `{s['function']}`): `{desc}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
