"""Rules about declared outputs (registry ``outputs``), shared by processors and the harness."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any


def declared_output(
    declared: Iterable[Mapping[str, Any]], relpath: str
) -> Mapping[str, Any] | None:
    """The declaration (exact path, or ``*``/``?`` glob) covering ``relpath`` under ``outputs/``."""
    for entry in declared:
        if entry["path"] == relpath or fnmatch.fnmatchcase(relpath, entry["path"]):
            return entry
    return None


def relpath_of(output_path: str, prefix: str) -> str:
    """``text/a.txt`` for ``P/outputs/text/a.txt``."""
    return output_path.removeprefix(prefix + "outputs/")
