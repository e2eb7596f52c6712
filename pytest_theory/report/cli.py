"""``theory-report merge DIR... --out DIR``: the cells of many jobs, one matrix.

Each CI job (a shard of ``--theory-ref all``, one processor or one adapter)
writes its own ``--theory-report``; one step merges them::

    theory-report merge job-*/ --out report/

Exit status: 0 when no merged cell failed, 1 when one did, 2 for a usage error
or a file that is not a report cell (nothing is written then). A cell reported
by several jobs keeps the one that finished last. ``main(argv)`` is what a
``theory report`` subcommand mounts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_theory.report import attest, matrix
from pytest_theory.report.cells import CellError, CellKey, cell_files, read_cell, write_cell


def parser(prog: str = "theory-report") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=prog, description="pytest-theory conformance reports")
    commands = top.add_subparsers(dest="command", required=True)
    merge = commands.add_parser("merge", help="merge the report cells of many jobs into one matrix")
    merge.add_argument(
        "reports", nargs="+", type=Path, metavar="DIR", help="a --theory-report folder"
    )
    merge.add_argument("--out", required=True, type=Path, metavar="DIR", help="the merged report")
    return top


def merge_cells(reports: Sequence[Path]) -> list[dict[str, Any]]:
    """Every cell of ``reports``, one per processor x adapter x mode (the latest wins)."""
    merged: dict[str, dict[str, Any]] = {}
    for report in reports:
        if not report.is_dir():
            raise CellError(f"{report}: no such folder")
        for path in cell_files(report):
            cell = read_cell(path)
            slug = CellKey.of(cell).slug
            if slug not in merged or merged[slug]["run"]["finished"] <= cell["run"]["finished"]:
                merged[slug] = cell
    return [merged[slug] for slug in sorted(merged)]


def merge(reports: Sequence[Path], out: Path) -> int:
    try:
        cells = merge_cells(reports)
    except CellError as exc:
        print(f"theory-report: {exc}", file=sys.stderr)
        return 2
    if not cells:
        print(
            f"theory-report: no report cells under {', '.join(map(str, reports))}", file=sys.stderr
        )
        return 2
    for cell in cells:
        write_cell(out, cell)
        if cell["image"]["digest"]:
            attest.write(out, CellKey.of(cell).slug, cell)
    print(matrix.write(out, cells), end="")
    failed = [c for c in cells if c["result"] == "FAILED"]
    for cell in failed:
        names = [c["id"] for c in cell["checks"] if c["outcome"] == "failed"]
        print(
            f"FAILED {cell['ref']} ({cell['adapter']}, {cell['mode']}): {', '.join(names)}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "merge":
        return merge(args.reports, args.out)
    return 2  # pragma: no cover - argparse refuses other commands


if __name__ == "__main__":
    sys.exit(main())
