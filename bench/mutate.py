"""Mutation testing with mutmut, scoped per module: ``scripts/mutate MODULE...``.

    scripts/mutate contracts/hashing.py django_project/apps/runs/ledger.py
    scripts/mutate --ci        # the modules marked ``ci = true``; exit 1 under the floor
    scripts/mutate --all       # every module of bench/mutation.toml
    scripts/mutate --report    # only regenerate bench/MUTATION.md from the stored results

For each module: a fresh copy of the repository in ``.mutmut/<module>/`` with the installed
layout (``pytest_theory/contracts/...``) laid out as real folders, so the mutated copies mutmut
writes to ``mutants/`` are what ``import pytest_theory.contracts...`` finds (mutmut puts
``mutants/`` first on sys.path; the editable install's finder comes after it), and mutmut's
mutant names (from file paths) match the modules' ``__name__``. mutmut runs the module's
tests from bench/mutation.toml; the counts and every survivor (with its diff) go to
``bench/mutation/<module>.json``, and bench/MUTATION.md is assembled from all of those and the
reasons in bench/mutation-equivalents.toml. The working tree itself is never mutated.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "bench" / "mutation.toml"
EQUIVALENTS = REPO / "bench" / "mutation-equivalents.toml"
RESULTS = REPO / "bench" / "mutation"
REPORT = REPO / "bench" / "MUTATION.md"
STAGE = REPO / ".mutmut"
#: The repository folders the package maps into pytest_theory.* (pyproject's package-dir).
MAPPED = ("contracts", "registry", "images", "adapters", "processors", "django_project")
FLOOR = 0.90
#: mutmut's statuses that count as the tests catching the mutant.
CAUGHT = {"killed", "timeout", "segfault", "caught by type check"}


def load_modules() -> dict[str, dict[str, Any]]:
    modules: dict[str, dict[str, Any]] = tomllib.loads(CONFIG.read_text())["modules"]
    return modules


def normalise(name: str, known: dict[str, dict[str, Any]]) -> str:
    """``contracts/hashing.py``, ``contracts.hashing`` or ``pytest_theory.contracts.hashing``
    (the plugin's own modules keep their folder: ``pytest_theory/asserts.py``)."""
    if not name.endswith(".py"):
        name = name.replace(".", "/") + ".py"
    if name not in known:
        name = name.removeprefix("pytest_theory/")
    if name not in known:
        raise SystemExit(f"{name}: not in {CONFIG.relative_to(REPO)} (add its tests there)")
    return name


def slug(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def installed(module: str) -> str:
    """The module's path in the installed layout: ``pytest_theory/contracts/hashing.py``."""
    return module if module.startswith("pytest_theory/") else f"pytest_theory/{module}"


def stage(modules: list[str], entry: dict[str, Any]) -> Path:
    """A copy of the working tree (tracked and untracked, not ignored) in the installed layout."""
    root = STAGE / slug(modules[0])
    shutil.rmtree(root, ignore_errors=True)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # deleted-but-tracked files are skipped
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for package in MAPPED:
        shutil.copytree(root / package, root / "pytest_theory" / package)
    shared = REPO.parent / "shared"
    if shared.exists():  # tests/conftest.py looks for SPEC.md beside the checkout
        (root / "shared").symlink_to(shared)
    others = sorted(p.name for p in root.iterdir() if p.name not in {"pytest_theory", "shared"})
    settings = {
        "source_paths": ["pytest_theory"],
        "only_mutate": [installed(module) for module in modules],
        "also_copy": others,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q", *entry.get("args", [])],
        "pytest_add_cli_args_test_selection": entry["tests"],
        "use_git_change_detection": False,
    }
    lines = ["", "[tool.mutmut]"] + [
        f"{key} = {json.dumps(value)}" for key, value in settings.items()
    ]
    with (root / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n".join(lines) + "\n")
    return root


def run_mutmut(root: Path, children: int) -> None:
    log = root / "mutmut.log"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with log.open("w") as out:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(children)],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"mutmut failed in {root} (exit {done.returncode}):\n{tail}")


def function_of(mutant: str) -> str:
    """``pytest_theory.x.y.xǁPlanǁcost__mutmut_3`` -> ``Plan.cost``; ``x_link__mutmut_1`` -> ``link``."""
    mangled = mutant.rpartition(".")[2].rpartition("__mutmut_")[0]
    if mangled.startswith("xǁ"):
        return ".".join(mangled.split("ǁ")[1:])
    return mangled.removeprefix("x_")


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    body = [line for line in diff.splitlines() if not line.startswith(("---", "+++", "@@"))]
    removed = [line[1:].strip() for line in body if line.startswith("-")]
    added = [line[1:].strip() for line in body if line.startswith("+")]
    return removed, added


def line_of(source: str, function: str, removed: list[str]) -> int:
    """The file line of the first changed line, searched within the function's own lines."""
    lines = source.splitlines()
    *owner, name = function.split(".")
    start, end = 1, len(lines)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and owner and node.name == owner[-1]:
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == name:
                    start, end = item.lineno, item.end_lineno or end
        elif (
            not owner
            and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name == name
            and node.col_offset == 0
        ):
            start, end = node.lineno, node.end_lineno or end
    for number in range(start, end + 1):
        if removed and lines[number - 1].strip() == removed[0]:
            return number
    return start


def collect(module: str, root: Path, seconds: float, group: list[str]) -> dict[str, Any]:
    """Counts and survivors, read with mutmut's own functions from inside the stage."""
    script = (
        "import json, sys\n"
        "from mutmut.mutation.data import SourceFileMutationData\n"
        "from mutmut.mutation.diff_apply import get_diff_for_mutant\n"
        "from mutmut.stats import status_by_exit_code\n"
        "path = sys.argv[1]\n"
        "data = SourceFileMutationData(path=path)\n"
        "data.load()\n"
        "out = []\n"
        "for name, code in data.exit_code_by_key.items():\n"
        "    status = status_by_exit_code[code]\n"
        "    diff = '' if status == 'killed' else get_diff_for_mutant(name, path=path)\n"
        "    out.append({'name': name, 'status': status, 'diff': diff})\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, installed(module)],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    mutants = json.loads(done.stdout.strip().splitlines()[-1])
    recheck_timeouts(root, [m for m in mutants if m["status"] == "timeout"], load_modules()[module])
    source = (REPO / module).read_text()
    survivors = []
    for mutant in sorted(mutants, key=lambda m: (m["name"].rpartition("__mutmut_")[0], m["name"])):
        if mutant["status"] in CAUGHT:
            continue
        function = function_of(mutant["name"])
        removed, added = changed_lines(mutant["diff"])
        survivors.append(
            {
                "status": mutant["status"],
                "function": function,
                "line": line_of(source, function, removed),
                "mutation": " / ".join(removed) + " => " + " / ".join(added),
                "diff": mutant["diff"],
            }
        )
    statuses = [m["status"] for m in mutants]
    not_run = [s for s in statuses if s == "not checked"]
    if not_run:
        raise SystemExit(
            f"{module}: {len(not_run)} mutants were never checked (see {root}/mutmut.log)"
        )
    return {
        "module": module,
        "tests": load_modules()[module]["tests"],
        "run_with": [other for other in group if other != module],
        "tool": f"mutmut {mutmut_version()}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(seconds),
        "mutants": len(mutants),
        "killed": sum(s in CAUGHT for s in statuses),
        "timeouts": sum(s == "timeout" for s in statuses),
        "survived": len(survivors),
        "survivors": sorted(survivors, key=lambda s: (s["line"], s["mutation"])),
    }


def recheck_timeouts(root: Path, timed_out: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    """Each mutant mutmut timed out, run again alone, with a generous bound.

    Under load (2 cores shared), a mutant whose tests pass can outlive mutmut's wall bound
    (15 times the tests' clean duration) and be counted as caught. Here its tests run once
    more in a fresh pytest: passing makes it a survivor, failing a kill, and only a mutant
    still running after 60 s + 10 times the tests' clean duration stays a timeout.
    """
    if not timed_out:
        return
    stats = json.loads((root / "mutants" / "mutmut-stats.json").read_text())
    tests_of = stats["tests_by_mangled_function_name"]
    durations = stats["duration_by_test"]

    def recheck(mutant: dict[str, Any]) -> None:
        tests = sorted(tests_of[mutant["name"].rpartition("__mutmut_")[0]])
        bound = 60 + 10 * sum(durations.get(test, 0) for test in tests)
        command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
        try:
            done = subprocess.run(
                [*command, *entry.get("args", []), *tests],
                cwd=root / "mutants",
                env={**os.environ, "MUTANT_UNDER_TEST": mutant["name"]},
                capture_output=True,
                timeout=bound,
            )
        except subprocess.TimeoutExpired:
            return
        if done.returncode == 0:
            mutant["status"] = "survived"
        elif done.returncode == 1:  # tests failed (2-5 are pytest's own errors: left as they are)
            mutant["status"] = "killed"

    with ThreadPoolExecutor(max_workers=entry.get("children", 2)) as pool:
        list(pool.map(recheck, timed_out))


def mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


@dataclass(frozen=True)
class Verdict:
    module: str
    score: float
    unexplained: int


def equivalents() -> dict[tuple[str, str, str], str]:
    if not EQUIVALENTS.exists():
        return {}
    entries = tomllib.loads(EQUIVALENTS.read_text()).get("equivalent", [])
    return {(e["module"], e["function"], e["mutation"]): e["reason"] for e in entries}


def report() -> list[Verdict]:
    """bench/MUTATION.md from every stored result; one section per module, sorted."""
    reasons = equivalents()
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    verdicts = []
    head = [
        "# Mutation testing",
        "",
        "Generated by `scripts/mutate` (bench/mutate.py); do not edit by hand. A survivor's reason",
        "lives in `bench/mutation-equivalents.toml`; after adding one, `scripts/mutate --report`",
        "regenerates this file (also the way to settle a merge conflict in it). Score = killed /",
        f"mutants (a timeout counts as killed); the floor is {FLOOR:.0%} and no survivor may lack a",
        "reason.",
        "",
        "| module | mutants | killed | survived | score | without a reason | run | time |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    sections: list[str] = []
    for result in results:
        module = result["module"]
        score = result["killed"] / result["mutants"] if result["mutants"] else 1.0
        lines = [
            f"## {module}",
            "",
            f"{result['mutants']} mutants, {result['killed']} killed "
            f"({result.get('timeouts', 0)} of them by a timeout), {result['survived']} survived "
            f"({score:.1%}); tests: {', '.join(f'`{t}`' for t in result['tests'])}; "
            f"{result['tool']}, {result['date']}, {result['seconds']} s"
            + (
                f" (one run with {', '.join(result['run_with'])})."
                if result.get("run_with")
                else "."
            ),
            "",
        ]
        unexplained = 0
        for survivor in result["survivors"]:
            reason = reasons.get((module, survivor["function"], survivor["mutation"]))
            if reason is None:
                unexplained += 1
                reason = "**no recorded reason**"
            else:
                reason = "equivalent: " + reason
            lines.append(
                f"- `{module}:{survivor['line']}` in `{survivor['function']}` ({survivor['status']}): "
                f"`{survivor['mutation']}`. {reason}"
            )
        if not result["survivors"]:
            lines.append("No survivors.")
        sections += [*lines, ""]
        head.append(
            f"| {module} | {result['mutants']} | {result['killed']} | {result['survived']} | "
            f"{score:.1%} | {unexplained} | {result['date']} | {result['seconds']} s |"
        )
        verdicts.append(Verdict(module, score, unexplained))
    REPORT.write_text("\n".join([*head, "", *sections]).rstrip() + "\n")
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutate", description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="e.g. contracts/hashing.py")
    parser.add_argument("--ci", action="store_true", help="the ci = true modules, with the floor")
    parser.add_argument("--all", action="store_true", help="every module of bench/mutation.toml")
    parser.add_argument("--report", action="store_true", help="only regenerate bench/MUTATION.md")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once")
    args = parser.parse_args(argv)
    known = load_modules()
    if args.all:
        chosen = list(known)
    elif args.ci:
        chosen = [m for m, entry in known.items() if entry.get("ci")]
    else:
        chosen = [normalise(m, known) for m in args.modules]
    if not chosen and not args.report:
        parser.error("name a module, or --ci, --all or --report")
    RESULTS.mkdir(exist_ok=True)
    # Modules with the same tests share one mutmut run (one copy, one clean and stats run).
    groups: dict[str, list[str]] = {}
    for module in chosen:
        entry = known[module]
        key = json.dumps([entry["tests"], entry.get("args", []), entry.get("children")])
        groups.setdefault(key, []).append(module)
    for group in groups.values():
        entry = known[group[0]]
        started = time.monotonic()
        root = stage(group, entry)
        run_mutmut(root, min(args.max_children, entry.get("children", args.max_children)))
        results = [collect(module, root, 0, group) for module in group]
        for result in results:  # the whole run: mutmut, then re-running its timeouts
            result["seconds"] = round(time.monotonic() - started)
            (RESULTS / f"{slug(result['module'])}.json").write_text(
                json.dumps(result, indent=1) + "\n"
            )
            print(
                f"{result['module']}: {result['mutants']} mutants, {result['killed']} killed, "
                f"{result['survived']} survived, {result['seconds']} s",
                flush=True,
            )
    verdicts = report()
    failed = [v for v in verdicts if v.module in chosen and (v.score < FLOOR or v.unexplained)]
    for verdict in failed:
        print(
            f"{verdict.module}: score {verdict.score:.1%} (floor {FLOOR:.0%}), "
            f"{verdict.unexplained} survivors without a reason in {EQUIVALENTS.relative_to(REPO)}",
            file=sys.stderr,
        )
    print(f"report: {REPORT.relative_to(REPO)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
