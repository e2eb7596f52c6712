"""The tests' own hygiene: no timed assertion, no sleep standing in for a state.

Timing belongs in ``bench/`` (measured against floors of the same run); a test that needs
a state waits on it through ``tests/waiting.py``, bounded. A sleep that *is* the fault
under test (a slow handler, a client that stalls) says so with a ``# fault:`` comment on
its line; the fault fixtures under ``tests/fixtures/`` are processors, not tests.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
EXEMPT = {TESTS / "waiting.py"}
# What a duration is called when it is measured: a clock read, or a name for the result.
CLOCK = re.compile(r"^(monotonic|perf_counter|time|elapsed\w*|took\w*|duration\w*|\w*_took)$")
ORDERINGS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def sleeps(source: str) -> list[int]:
    """Lines that call ``sleep`` (``time.sleep``, ``asyncio.sleep``, ...) without ``# fault:``."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "sleep" and "# fault:" not in lines[node.lineno - 1]:
                found.append(node.lineno)
    return sorted(found)


def timed_assertions(source: str) -> list[int]:
    """Lines of ``assert`` statements that order a clock reading or a measured duration."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Assert):
            continue
        for compare in ast.walk(node.test):
            if isinstance(compare, ast.Compare) and any(
                isinstance(op, ORDERINGS) for op in compare.ops
            ):
                names = {
                    getattr(part, "attr", None) or getattr(part, "id", None)
                    for part in ast.walk(compare)
                }
                if any(name and CLOCK.match(name) for name in names):
                    found.append(node.lineno)
                    break
    return found


def _test_files() -> list[Path]:
    return sorted(
        path
        for path in TESTS.rglob("*.py")
        if "fixtures" not in path.relative_to(TESTS).parts and path not in EXEMPT
    )


def test_no_test_sleeps_for_a_state_or_asserts_on_time() -> None:
    offences = [
        f"{path.relative_to(TESTS.parent)}:{line}: {kind}"
        for path in _test_files()
        for kind, lines in (
            ("a sleep (wait on the state with tests.waiting.wait_for)", sleeps(path.read_text())),
            ("a timed assertion (measure it in bench/)", timed_assertions(path.read_text())),
        )
        for line in lines
    ]
    assert offences == []


@pytest.mark.parametrize(
    ("source", "sleeping", "timed"),
    [
        ("import time\ntime.sleep(0.1)\n", [2], []),
        ("import asyncio\nasync def f():\n    await asyncio.sleep(1)\n", [3], []),
        ("import time\ntime.sleep(5)  # fault: a handler slower than the timeout\n", [], []),
        ("import time\nt = time.monotonic()\nassert time.monotonic() - t < 2.5\n", [], [3]),
        ("elapsed = 3\nassert elapsed <= 30, 'slow'\n", [], [2]),
        ("took = 3\nassert 0 < took\n", [], [2]),
        ("assert len([1]) < 2\nassert deadline_passed is False\n", [], []),
    ],
    ids=["time.sleep", "asyncio.sleep", "a declared fault", "clock", "elapsed", "took", "neither"],
)
def test_the_hygiene_check_finds_what_it_forbids(
    source: str, sleeping: list[int], timed: list[int]
) -> None:
    assert (sleeps(source), timed_assertions(source)) == (sleeping, timed)
