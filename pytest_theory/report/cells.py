"""Report cells: one processor, through one adapter, in one mode; its checks and their outcomes.

A cell file (``contracts/schemas/report_cell.json``) is what one run says about
one cell, with everything the verdict depends on: the image digest, the
harness, SPEC.md, registry.yaml and the options that change a verdict. Cells
from many jobs merge into one matrix; a PASSED (or WARNED) cell can be reused
by a later run whose inputs are all equal.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pytest_theory.contracts.schemas import problems

SCHEMA = "theory-report-cell/v1"
CELLS = "cells"
ATTESTATIONS = "attestations"
#: Rule outcomes in order of precedence: one failed check fails its rule.
OUTCOMES = ("failed", "passed", "not-run")
MESSAGE_CHARS = 4000


@dataclass
class Check:
    id: str
    rule: str
    outcome: str
    text: str = ""  # the failure's message, or why it did not run

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "rule": self.rule, "outcome": self.outcome}
        if self.outcome == "failed":
            out["message"] = self.text[:MESSAGE_CHARS] or "failed"
        elif self.outcome == "not-run":
            out["reason"] = self.text or "skipped"
        return out


@dataclass
class CellKey:
    """What makes a cell: the processor, the adapter, the mode."""

    ref: str
    adapter: str
    mode: str

    @property
    def slug(self) -> str:
        return f"{self.ref}-{self.adapter}-{self.mode}".replace("/", "-").replace("@", "-v")

    @classmethod
    def of(cls, cell: dict[str, Any]) -> CellKey:
        return cls(cell["ref"], cell["adapter"], cell["mode"])


@dataclass
class CellChecks:
    """The checks seen for one cell, in the order they reported."""

    checks: dict[str, Check] = field(default_factory=dict)

    def add(self, check: Check) -> None:
        """Record a phase's outcome (setup, call, teardown): a failure in any phase wins."""
        seen = self.checks.get(check.id)
        if seen is None or (check.outcome == "failed" and seen.outcome != "failed"):
            self.checks[check.id] = check


def rule_outcome(outcomes: Iterable[str]) -> str:
    found = set(outcomes)
    return next((o for o in OUTCOMES if o in found), "not-run")


def result_of(checks: Iterable[dict[str, Any]]) -> str:
    """The in-toto result: FAILED on any failure, WARNED when a check did not run, else PASSED."""
    outcomes = {c["outcome"] for c in checks}
    if "failed" in outcomes:
        return "FAILED"
    return "WARNED" if "not-run" in outcomes else "PASSED"


def make_cell(
    key: CellKey,
    *,
    checks: Iterable[Check],
    rules: dict[str, str],
    image: dict[str, Any],
    inputs: dict[str, Any],
    pytest_version: str,
) -> dict[str, Any]:
    """A cell from its checks; ``inputs`` holds what the verdict depends on (see ``verdict_inputs``)."""
    listed = [c.as_dict() for c in checks]
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for check in listed:
        by_rule.setdefault(check["rule"], []).append(check)
    return {
        "schema": SCHEMA,
        "ref": key.ref,
        "adapter": key.adapter,
        "mode": key.mode,
        "image": image,
        **inputs,
        "result": result_of(listed),
        "counts": {
            o: sum(c["outcome"] == o for c in listed) for o in ("passed", "failed", "not-run")
        },
        "rules": {
            rule: {
                "outcome": rule_outcome(c["outcome"] for c in found),
                "spec": rules.get(rule, ""),
                "checks": [c["id"] for c in found],
            }
            for rule, found in by_rule.items()
        },
        "checks": listed,
        "run": {
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "pytest": pytest_version,
            "python": platform.python_version(),
        },
        "reused_from": None,
    }


def reuse_key(cell: dict[str, Any]) -> tuple[Any, ...]:
    """What must be equal for a stored verdict to stand for a new run (paths may differ)."""
    return (
        cell["image"]["digest"],
        cell["source_hash"],
        cell["harness"],
        cell["spec_md"]["digest"],
        cell["registry_yaml"]["digest"],
        cell["options"],
    )


def reusable(stored: dict[str, Any], fresh: dict[str, Any]) -> bool:
    """True when ``stored`` passed (no check failed) with the very inputs of ``fresh``, a cell
    not yet run: same image digest, source, harness, SPEC.md, registry.yaml and options."""
    if stored["result"] == "FAILED" or None in (
        fresh["image"]["digest"],
        fresh["spec_md"]["digest"],
    ):
        return False
    return reuse_key(stored) == reuse_key(fresh)


def reused(stored: dict[str, Any], path: Path) -> dict[str, Any]:
    """The stored cell as this run's, naming the report it came from (the first one, if it
    was itself reused)."""
    cell: dict[str, Any] = json.loads(json.dumps(stored))  # a deep copy
    cell["reused_from"] = stored["reused_from"] or {
        "report": str(path),
        "finished": stored["run"]["finished"],
    }
    return cell


# -- files ----------------------------------------------------------------------------------


class CellError(ValueError):
    """A cell file that is not JSON or fails the schema."""


def cell_path(report_dir: Path, key: CellKey) -> Path:
    return report_dir / CELLS / f"{key.slug}.json"


def write_cell(report_dir: Path, cell: dict[str, Any]) -> Path:
    path = cell_path(report_dir, CellKey.of(cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(cell, indent=2, sort_keys=True) + "\n", "utf-8")
    temporary.replace(path)  # a reader never sees half a cell
    return path


def read_cell(path: Path) -> dict[str, Any]:
    try:
        cell = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise CellError(f"{path}: not a readable JSON file ({exc})") from None
    found = problems("report_cell", cell)
    if found:
        raise CellError(f"{path}: not a report cell: {found[0]}")
    assert isinstance(cell, dict)
    return cell


def cell_files(report_dir: Path) -> Iterator[Path]:
    """Every cell file under ``report_dir`` (a report, or a folder of reports from many jobs)."""
    if (report_dir / CELLS).is_dir():
        yield from sorted((report_dir / CELLS).glob("*.json"))
    else:
        yield from sorted(report_dir.rglob(f"{CELLS}/*.json"))
