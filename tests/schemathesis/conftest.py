"""The example test as its users run it, against shipped and foreign processors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO

EXAMPLE = REPO / "examples" / "test_schemathesis.py"
#: The processors the example names; a test swaps in its own.
EXAMPLE_REFS = 'ref=["llm/litellm@1", "replicate/generic@1"]'
FOREIGN = FIXTURES / "schemathesis" / "foreign"


def write_example(pytester: pytest.Pytester, ref: str | list[str]) -> Path:
    """The example test, unchanged but for the processors its marker names."""
    text = EXAMPLE.read_text("utf-8")
    assert EXAMPLE_REFS in text, "the example no longer names the shipped processors"
    path = pytester.path / EXAMPLE.name
    path.write_text(text.replace(EXAMPLE_REFS, f"ref={ref!r}".replace("'", '"')), "utf-8")
    return path


def make_foreign(root: Path, name: str, breaks: str = "") -> str:
    """``foreign/<name>@1`` under ``root``: the foreign app with ``BREAK = breaks``."""
    folder = root / f"foreign_{name}"
    shutil.copytree(FOREIGN, folder, ignore=shutil.ignore_patterns("__pycache__"))
    registry = folder / "registry.yaml"
    registry.write_text(registry.read_text().replace("NAME", name))
    app = folder / "app" / "http.py"
    text, count = re.subn(r'^BREAK = ""$', f"BREAK = {breaks!r}", app.read_text(), flags=re.M)
    assert count == 1
    app.write_text(text)
    return f"foreign/{name}@1"
