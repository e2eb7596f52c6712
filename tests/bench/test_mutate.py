"""scripts/mutate's report: survivors located, matched to their reasons, and the floor held."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import mutate

SOURCE = """\
def seed(h):
    return int(h[3:19], 16) & (2**63 - 1)


class Plan:
    def cost(self, n):
        if n < 0:
            raise ValueError("negative")
        return n
"""


@pytest.mark.parametrize(
    ("mutant", "function"),
    [
        ("pytest_theory.contracts.hashing.x_seed_for__mutmut_12", "seed_for"),
        ("pytest_theory.a.b.xǁPlanǁcost__mutmut_3", "Plan.cost"),
    ],
)
def test_a_mutant_is_named_by_its_function(mutant: str, function: str) -> None:
    assert mutate.function_of(mutant) == function


def test_a_survivor_is_located_within_its_own_function() -> None:
    diff = "--- a\n+++ a\n@@ -1,3 +1,3 @@\n def cost(self, n):\n-    if n < 0:\n+    if n <= 0:\n"
    removed, added = mutate.changed_lines(diff)
    assert (removed, added) == (["if n < 0:"], ["if n <= 0:"])
    assert mutate.line_of(SOURCE, "Plan.cost", removed) == 7
    assert mutate.line_of(SOURCE, "seed", ["return int(h[3:19], 16) & (2**63 - 1)"]) == 2


def test_module_names_are_read_in_three_forms() -> None:
    known = {"contracts/hashing.py": {"tests": []}}
    for name in ("contracts/hashing.py", "contracts.hashing", "pytest_theory.contracts.hashing"):
        assert mutate.normalise(name, known) == "contracts/hashing.py"
    with pytest.raises(SystemExit, match=r"not in bench/mutation\.toml"):
        mutate.normalise("contracts/nothing.py", known)


def test_the_report_counts_survivors_without_a_reason_against_the_floor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    survivor = {"status": "survived", "function": "seed", "line": 2, "diff": ""}
    for name, killed, mutations in (("a.py", 19, ["x => y"]), ("b.py", 8, ["p => q", "r => s"])):
        (results / f"{name}.json").write_text(
            json.dumps(
                {
                    "module": name,
                    "tests": ["tests/t.py"],
                    "tool": "mutmut 3.8.1",
                    "date": "today",
                    "seconds": 1,
                    "mutants": killed + len(mutations),
                    "killed": killed,
                    "timeouts": 0,
                    "survived": len(mutations),
                    "survivors": [{**survivor, "mutation": m} for m in mutations],
                }
            )
        )
    equivalents = tmp_path / "equivalents.toml"
    equivalents.write_text(
        '[[equivalent]]\nmodule = "a.py"\nfunction = "seed"\nmutation = "x => y"\n'
        'reason = "the same bits"\n'
    )
    monkeypatch.setattr(mutate, "RESULTS", results)
    monkeypatch.setattr(mutate, "EQUIVALENTS", equivalents)
    monkeypatch.setattr(mutate, "REPORT", tmp_path / "MUTATION.md")
    assert mutate.report() == [mutate.Verdict("a.py", 0.95, 0), mutate.Verdict("b.py", 0.8, 2)]
    text = (tmp_path / "MUTATION.md").read_text()
    assert "| a.py | 20 | 19 | 1 | 95.0% | 0 |" in text
    assert "`a.py:2` in `seed` (survived): `x => y`. equivalent: the same bits" in text
    assert text.count("**no recorded reason**") == 2
