"""The matrix: rows are processors (and mode), columns are rules, each cell one mark per adapter."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_theory.rules import RULES

MARKS = {"passed": "✅", "failed": "❌", "not-run": "⏭"}
RESULT_MARKS = {"PASSED": "✅", "WARNED": "⚠️", "FAILED": "❌"}
LEGEND = (
    "✅ passed · ❌ failed · ⏭ not run (see the cell file for why) · "
    "⚠️ passed, some checks not run · ♻️ reused from a stored report"
)


def _row(cell: dict[str, Any]) -> str:
    return cell["ref"] if cell["mode"] == "mock" else f"{cell['ref']} ({cell['mode']})"


def rule_columns(cells: Iterable[dict[str, Any]]) -> list[str]:
    """SPEC's rules in report order, then any other rule a cell names."""
    seen = {rule for cell in cells for rule in cell["rules"]}
    return [r for r in RULES if r in seen] + sorted(seen - set(RULES))


def markdown(cells: list[dict[str, Any]], title: str = "pytest-theory conformance") -> str:
    """The matrix as a Markdown table, with one line per cell below it."""
    rules = rule_columns(cells)
    adapters = sorted({c["adapter"] for c in cells})
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for cell in cells:
        rows.setdefault(_row(cell), {})[cell["adapter"]] = cell
    lines = [
        f"## {title}",
        "",
        "| processor | result | " + " | ".join(f"`{rule}`" for rule in rules) + " |",
        "|---|---|" + "---|" * len(rules),
    ]
    for row in sorted(rows):
        by_adapter = rows[row]
        result = " ".join(
            _mark(by_adapter.get(a), None) + f" {a}" for a in adapters if a in by_adapter
        )
        marks = [
            " ".join(_mark(by_adapter.get(a), rule) + f" {a}" for a in adapters if a in by_adapter)
            for rule in rules
        ]
        lines.append(f"| {row} | {result} | " + " | ".join(marks) + " |")
    lines += ["", LEGEND, ""]
    for cell in sorted(cells, key=lambda c: (_row(c), c["adapter"])):
        counts = cell["counts"]
        digest = cell["image"]["digest"] or "digest unknown"
        line = (
            f"- {_row(cell)} · {cell['adapter']}: {cell['result']} "
            f"({counts['passed']} passed, {counts['failed']} failed, {counts['not-run']} not run) "
            f"on `{cell['image']['name']}` `{digest}`"
        )
        if cell["reused_from"]:
            line += f"; ♻️ reused from {cell['reused_from']['report']}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _mark(cell: dict[str, Any] | None, rule: str | None) -> str:
    if cell is None:
        return " "
    if rule is None:
        mark = RESULT_MARKS[cell["result"]]
        return mark + ("♻️" if cell["reused_from"] else "")
    found = cell["rules"].get(rule)
    return MARKS[found["outcome"]] if found else "·"


def parse_markdown(text: str) -> dict[tuple[str, str, str], str]:
    """``{(row, rule, adapter): outcome}`` read back from ``markdown``'s table (for checking it)."""
    outcome_of = {mark: outcome for outcome, mark in MARKS.items()}
    table = [line for line in text.splitlines() if line.startswith("| ")]
    header = [h.strip().strip("`") for h in table[0].strip("|").split("|")]
    out: dict[tuple[str, str, str], str] = {}
    for line in table[1:]:
        fields = [f.strip() for f in line.strip("|").split("|")]
        for rule, cell in zip(header[2:], fields[2:], strict=True):
            tokens = cell.split()  # mark, adapter, mark, adapter, ...
            for mark, adapter in zip(tokens[::2], tokens[1::2], strict=True):
                if mark in outcome_of:
                    out[(fields[0], rule, adapter)] = outcome_of[mark]
    return out


def write(report_dir: Path, cells: list[dict[str, Any]]) -> str:
    """``matrix.md`` in ``report_dir``, and the same table in the GitHub job summary when set."""
    text = markdown(cells)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "matrix.md").write_text(text, "utf-8")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as out:
            out.write(text + "\n")
    return text
