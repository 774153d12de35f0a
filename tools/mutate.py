"""Mutation testing of one module whose behaviour decides results, with that module's fast tests.

    .venv/bin/python tools/mutate.py trainables/loop.py            # a full pass, then the score
    .venv/bin/python tools/mutate.py trainables/loop.py --survivors  # re-test last survivors only
    .venv/bin/python tools/mutate.py trainables/loop.py --show NAME  # the diff of one mutant
    .venv/bin/python tools/mutate.py trainables/loop.py --score      # the last run's score
    .venv/bin/python tools/mutate.py --list                         # modules and their tests

Why a wrapper around mutmut: mutmut reads one ``[tool.mutmut]`` table and one ``mutants/``
folder, so out of the box a project can only mutate one fixed set of files at a time, and a
pass over everything with the whole suite would take days on 2 cores. This runs each module
in its own scratch copy (``.mutation/<module>/``) with its own fast tests, so modules can run
side by side and each pass fits in minutes. Mutants known to be equivalent (no test can tell
them apart from the original: a changed log message, a tie that cannot occur) are listed with
their reason in ``tools/equivalent_mutants.toml`` and left out of the score; the score is
(killed + timed out) / (all - equivalent), and "no tests" counts as not killed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".mutation"
EQUIVALENTS = ROOT / "tools" / "equivalent_mutants.toml"
COPIED = ("analysis", "orchestrator", "search_spaces", "trainables", "tests", "pyproject.toml")

# Module (a file or a package folder) -> the tests that exercise it and run in seconds to a
# few minutes. Slow end-to-end tests (Ray sweeps, the CLI) are left out on purpose: a mutant
# must be killed by a test that names the behaviour, not by a sweep that happens to crash.
MODULES: dict[str, list[str]] = {
    "trainables/loop.py": ["tests/test_loop_contract.py"],
    "trainables/blocks": ["tests/test_blocks.py", "tests/test_blocks_reference.py"],
    "trainables/explain.py": ["tests/test_explain.py"],
    "trainables/data/augment.py": ["tests/test_augment.py"],
    "orchestrator/schedulers.py": ["tests/test_schedulers.py", "tests/test_halving.py"],
    "orchestrator/sink.py": ["tests/test_sink.py"],
    "orchestrator/space.py": ["tests/test_space.py", "tests/test_domains.py"],
    "analysis/stats.py": ["tests/test_stats.py", "tests/test_verdicts.py"],
    "analysis/verdicts.py": ["tests/test_verdicts.py"],
    "analysis/sequential.py": ["tests/test_verdicts.py", "tests/test_stats.py"],
    "analysis/study.py": ["tests/test_study.py"],
}
# Every module's mutants run in workers forked from a server process that never ran the
# tests: polars' and torch's thread pools do not survive fork(), so a worker forked from
# mutmut's main process (which did run them) can hang until its CPU limit, and mutmut
# scores a hang "timeout", i.e. killed. Seen with polars (orchestrator/sink.py, analysis/
# study.py: every mutant) and torch (large tensors, before OMP_NUM_THREADS=1 below).
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          34: "skipped", 35: "suspicious", 36: "timeout", 24: "timeout", -24: "timeout",
          152: "timeout", 255: "timeout", 37: "type check", -11: "segfault", -9: "killed"}


@dataclass
class Score:
    module: str
    counts: dict[str, int] = field(default_factory=dict)
    survivors: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)
    killed: int = 0   # non-equivalent mutants that a test failed on (or that timed out)

    @property
    def considered(self) -> int:
        return sum(self.counts.values()) - len(self.equivalent)

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.considered if self.considered else 0.0


def slug(module: str) -> str:
    return module.rstrip("/").removesuffix(".py").replace("/", ".")


def equivalents(module: str) -> dict[str, str]:
    """Mutant name -> why it is equivalent, for ``module``."""
    if not EQUIVALENTS.exists():
        return {}
    table = tomllib.loads(EQUIVALENTS.read_text()).get(module, {})
    return {str(name): str(reason) for name, reason in table.items()}


def mutmut_table(module: str, tests: list[str]) -> str:
    sources = json.dumps([module if module.endswith(".py") else module.rstrip("/") + "/"])
    also = json.dumps([f"{name}/" for name in COPIED if "." not in name])
    return ("[tool.mutmut]\n"
            f"source_paths = {sources}\n"
            f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
            f"also_copy = {also}\n"
            + 'process_isolation = "forkserver"\n')


def prepare(module: str, *, fresh: bool) -> Path:
    """A scratch copy of the project whose pyproject's mutmut table mutates ``module`` only."""
    work = SCRATCH / slug(module)
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        source, target = ROOT / name, work / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    text = (work / "pyproject.toml").read_text()
    head, marker, tail = text.partition("[tool.mutmut]")
    if marker:   # drop the project's own table (up to the next table) and add this module's
        rest = tail.split("\n[", 1)
        text = head + ("[" + rest[1] if len(rest) > 1 else "")
    (work / "pyproject.toml").write_text(text.rstrip() + "\n\n" + mutmut_table(module,
                                                                               MODULES[module]))
    return work


def mutmut(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("mutmut")
    if not binary.exists():
        sys.exit("error: mutmut is not installed in this environment; run "
                 ".venv/bin/python -m pip install -c constraints.txt -e '.[mutation]'")
    # One OpenMP thread: mutmut forks each mutant's test run from a process whose OpenMP pool
    # is already running, and torch ops on large tensors then hang in the child; the hang is
    # scored "timeout", i.e. killed, so survivors would pass for kills.
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    return subprocess.run([str(binary), *args], cwd=work, env=env, text=True,
                          capture_output=args[0] != "run")


def score(module: str, work: Path) -> Score:
    """Counts by status from mutmut's per-file metadata, equivalents set aside.

    Only a surviving mutant can be equivalent: one a test kills is not, whatever the list
    says. mutmut numbers mutants per function in order, so an edit above a listed mutant
    shifts its number onto another mutant; a listed name that is now killed is counted as
    killed and reported, so a stale list can never hide a real mutant from the score.
    """
    result = Score(module)
    known = equivalents(module)
    seen: set[str] = set()
    killed_but_listed: list[str] = []
    for meta in sorted((work / "mutants").rglob("*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            seen.add(name)
            status = "not run" if code is None else STATUS.get(code, f"exit {code}")
            result.counts[status] = result.counts.get(status, 0) + 1
            survived = status in ("survived", "no tests", "not run", "suspicious", "skipped")
            if name in known and survived:
                result.equivalent.append(name)
            elif survived:
                result.survivors.append(name)
            else:
                result.killed += 1
                if name in known:
                    killed_but_listed.append(name)
    if killed_but_listed:
        print(f"warning: {len(killed_but_listed)} mutant(s) listed as equivalent were killed, so "
              "the list is stale (an edit renumbered them): check each with --show and fix "
              f"tools/equivalent_mutants.toml: {', '.join(killed_but_listed)}", file=sys.stderr)
    gone = sorted(set(known) - seen)
    if gone:
        print(f"note: {len(gone)} listed equivalent mutant(s) no longer exist: "
              f"{', '.join(gone[:5])}", file=sys.stderr)
    return result


def print_score(result: Score, seconds: float | None) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
    took = f" in {seconds / 60:.1f} min" if seconds is not None else ""
    print(f"{result.module}: {result.percent:.1f}% of {result.considered} non-equivalent "
          f"mutants killed ({counts}; {len(result.equivalent)} equivalent){took}")
    for name in result.survivors:
        print(f"  survived: {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", nargs="?", help="one of --list")
    parser.add_argument("--list", action="store_true", help="modules and their tests")
    parser.add_argument("--survivors", action="store_true",
                        help="re-test only the last run's survivors (after adding tests)")
    parser.add_argument("--show", metavar="NAME", help="print one mutant's diff")
    parser.add_argument("--score", action="store_true",
                        help="print the last run's score again (after editing the equivalents)")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 1,
                        help="parallel test processes (default: all cores)")
    args = parser.parse_args(argv)
    if args.list or not args.module:
        for module, tests in MODULES.items():
            print(f"{module:30} {' '.join(tests)}")
        return 0 if args.list else 2
    module = args.module.rstrip("/")
    if module not in MODULES:
        print(f"error: no tests are configured for {module!r}; choose one of: "
              f"{', '.join(MODULES)} (or add it to MODULES in tools/mutate.py)", file=sys.stderr)
        return 2
    work = SCRATCH / slug(module)
    if args.show:
        out = mutmut(work, "show", args.show)
        print(out.stdout or out.stderr)
        return out.returncode
    if args.score:
        if not (work / "mutants").exists():
            print(f"error: no run recorded for {module}; run a full pass first", file=sys.stderr)
            return 2
        print_score(score(module, work), None)
        return 0
    if args.survivors:
        previous = score(module, work).survivors if (work / "mutants").exists() else []
        if not previous:
            print(f"error: no survivors recorded for {module}; run a full pass first",
                  file=sys.stderr)
            return 2
        prepare(module, fresh=False)
        names = previous
    else:
        prepare(module, fresh=True)
        names = []
    started = time.monotonic()
    run = mutmut(work, "run", "--max-children", str(args.children), *names)
    if run.returncode not in (0, 1):
        print(f"error: mutmut exited {run.returncode} in {work}", file=sys.stderr)
        return run.returncode
    print_score(score(module, work), time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
