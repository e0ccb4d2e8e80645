"""Which mutants ``make mutation`` runs: every mutant of the science modules, a fixed random sample
of the rest of the scope (``mutation/scope.toml``).

mutmut mutates every file ``[tool.mutmut] only_mutate`` names. The generation science (operators,
rollout, noise, seeding, sampling, initial conditions) is run mutant by mutant. The larger
downstream modules (generation orchestration, features, tokenizer, storage) are run on a sample at
``rate``: about 14,000 mutants at 20-90 a minute on 2 cores would take most of a day, while a
sample gives each module's score within a stated interval (``benchmarks/mutation_report.py``
reports the sample size, the score and its 95% interval, and the estimate over the whole scope).

Membership is a pure function of the mutant's name: ``u = SHA-256(name) / 2^256 < rate``, nested: a raised rate keeps every mutant already drawn (no
``hash()``: it is salted per process). The same name is in or out on every machine and every run;
a raised rate only adds mutants. An unchecked mutant left out is recorded in mutmut's meta file with exit
code 34 (mutmut's "skipped"), which ``mutmut run`` leaves alone; the report counts it as not
sampled, never as a result, and leaves a mutant checked earlier but outside the sample out of its
estimate. mutmut clears the verdicts of a function whose source changed, so this script
runs after mutant generation and before ``mutmut run``, every time.

    python mutation/sample.py          # generate mutants, mark the ones left out of the sample
    python mutation/sample.py --retest # ... and clear the survivors' verdicts (re-test them)
    python mutation/sample.py --list   # print the sampled mutants not yet checked
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import logging
import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCOPE = ROOT / "mutation" / "scope.toml"
EQUIVALENT = ROOT / "mutation" / "equivalent.toml"
SKIPPED = 34  # mutmut.stats.status_by_exit_code[34] == "skipped"

log = logging.getLogger("mutation.sample")


def load_scope(path: Path = SCOPE) -> list[tuple[float, list[str]]]:
    """The sampled groups ``[(rate, path patterns)]``, validated."""
    rel = path.relative_to(ROOT)
    try:
        table = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SystemExit(f"{rel}: cannot read: {e}") from e
    groups = table.get("sampled")
    if not isinstance(groups, list) or not groups:
        raise SystemExit(f"{rel}: needs one or more [[sampled]] tables")
    out = []
    for i, g in enumerate(groups):
        rate, patterns = g.get("rate"), g.get("paths")
        if not isinstance(rate, float) or not 0.0 < rate <= 1.0:
            raise SystemExit(f"{rel}: sampled[{i}].rate must be a float in (0, 1], got {rate!r}")
        if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise SystemExit(f"{rel}: sampled[{i}].paths must be a non-empty list of path patterns")
        out.append((rate, patterns))
    return out


def load_equivalent_names(path: Path = EQUIVALENT) -> frozenset[str]:
    """The mutants listed as equivalent (``mutation/equivalent.toml``; the report validates the
    entries): ``--retest`` keeps their verdicts, since no new test can kill them."""
    if not path.exists():
        return frozenset()
    try:
        return frozenset(tomllib.loads(path.read_text("utf-8")))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SystemExit(f"{path.relative_to(ROOT)}: cannot read: {e}") from e


def load_fresh_from(path: Path = SCOPE) -> dict[int, float]:
    """``{group index: fresh_from}`` for the ``[[sampled]]`` groups whose rate was raised after
    tests were written against the survivors of the smaller sample: the mutants with
    ``fresh_from <= u < rate`` are a fresh draw those tests never saw, and their score measures
    how well the tests generalise (``benchmarks/mutation_report.py`` reports both draws)."""
    rel = path.relative_to(ROOT)
    out = {}
    for i, g in enumerate(tomllib.loads(path.read_text("utf-8")).get("sampled", [])):
        if "fresh_from" in g:
            f = g["fresh_from"]
            if not isinstance(f, float) or not 0.0 < f < g.get("rate", 0.0):
                raise SystemExit(f"{rel}: sampled[{i}].fresh_from must be a float in (0, rate), got {f!r}")
            out[i] = f
    return out


def unit(name: str) -> float:
    """The mutant's uniform draw in [0, 1): its name's SHA-256 read as a 256-bit fraction."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest(), "big") / 2.0**256


def group_of(path: str, groups: list[tuple[float, list[str]]]) -> int:
    """The index of the first group that matches a mutated file, -1 if none (run in full)."""
    for i, (_, patterns) in enumerate(groups):
        if any(fnmatch.fnmatch(path, p) for p in patterns):
            return i
    return -1


def rate_of(path: str, groups: list[tuple[float, list[str]]]) -> float:
    """The sampling rate of a mutated file: its first matching group's, 1.0 if none matches."""
    i = group_of(path, groups)
    return groups[i][0] if i >= 0 else 1.0


def in_sample(name: str, path: str, groups: list[tuple[float, list[str]]]) -> bool:
    """True if ``make mutation`` runs this mutant: a file run in full, or drawn into the sample."""
    rate = rate_of(path, groups)
    return rate >= 1.0 or unit(name) < rate


def generate() -> None:
    """mutmut's own mutant generation (the first step of ``mutmut run``), without running tests:
    copies the sources to mutants/, writes new mutants and clears the verdicts of changed
    functions. A file newly added to ``only_mutate`` is generated only if its copy in mutants/ is
    older than the source (mutmut compares modification times): delete that copy."""
    from mutmut.__main__ import create_mutants
    from mutmut.mutation.trampoline import set_mutant_under_test
    from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir, setup_source_paths

    set_mutant_under_test("mutant_generation")
    os.makedirs("mutants", exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    setup_source_paths()
    sys.stdout.flush()
    saved = os.dup(1)  # mutmut's workers print every path: keep stdout for --list
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            stats = create_mutants(os.cpu_count() or 2)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    log.info("mutants: %d files mutated, %d copied, %d unchanged", stats.mutated, stats.ignored, stats.unmodified)


NO_TESTS = {5, 33}  # mutmut: "no tests"
SURVIVED = 0
TIMEOUTS = {36, -24, 24, 152, 255}  # counted as killed, but a loaded machine makes them: re-test


def mark(groups: list[tuple[float, list[str]]], retest: bool = False, keep: frozenset[str] = frozenset()) -> list[str]:
    """Record exit code 34 for the unchecked mutants left out of the sample, clear it for those
    drawn in (after a raised rate); return the sampled mutants not yet checked. A verdict is never
    discarded: a mutant checked earlier but outside the sample now keeps it (the report leaves it
    out of the estimate, and it is back in use if a raised rate draws it in again).

    A sampled mutant that read "no tests" is always cleared (mutmut ties tests to functions in its
    stats run, so a function made mutable since then reads "no tests" until it is re-run; with no
    test it costs nothing). ``retest`` also clears the survivors and the timeouts, so that ``mutmut run`` re-tests
    them against the tests written since, except the mutants in ``keep`` (the equivalent ones)."""
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.utils.file_utils import walk_mutatable_files

    todo, left_out, drawn = [], 0, 0
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        changed, sampled_file = False, rate_of(str(path), groups) < 1.0
        for name, code in data.exit_code_by_key.items():
            if in_sample(name, str(path), groups):
                drawn += sampled_file
                if code == SKIPPED or code in NO_TESTS or (retest and name not in keep and (code == SURVIVED or code in TIMEOUTS)):
                    data.exit_code_by_key[name], changed = None, True
                if data.exit_code_by_key[name] is None:
                    todo.append(name)
            else:
                left_out += 1
                if code is None:
                    data.exit_code_by_key[name], changed = SKIPPED, True
        if changed:
            data.save()
    log.info("sampled files: %d mutants drawn, %d left out; %d mutants to run", drawn, left_out, len(todo))
    return todo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="print the sampled mutants not yet checked")
    ap.add_argument("--retest", action="store_true", help="clear the survivors' verdicts too (re-test them)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.chdir(ROOT)
    groups = load_scope()
    if not args.list:
        generate()
    todo = mark(groups, retest=args.retest, keep=load_equivalent_names())
    if args.list:
        print("\n".join(todo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
