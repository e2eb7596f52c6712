"""The seams the issue declared, held by tests: import rules, no adapter names in the suite."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

FOLDERS = ("contracts", "registry", "images", "adapters", "processors", "django_project")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(root / "scripts/lint-imports")], capture_output=True, text=True, timeout=120
    )


def test_the_import_contracts_hold() -> None:
    done = _lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("contracts/_upward.py", "from pytest_theory.adapters import base", "Data flows one way"),
        ("images/_upward.py", "import pytest_theory.processors.runtime", "Images may not import"),
        ("adapters/_upward.py", "from pytest_theory import driver", "Nothing below the plugin"),
        ("adapters/inprocess_extra.py", "import docker", None),
    ],
    ids=["contracts-to-adapters", "images-to-processors", "adapters-to-plugin", "sibling-ok"],
)
def test_an_upward_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str | None
) -> None:
    """A copy of the source with one more import: the linter in scripts/test refuses it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in (*FOLDERS, "pytest_theory", "scripts"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=ignore)
    shutil.copy(REPO / ".importlinter", tmp_path / ".importlinter")
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    (tmp_path / module).write_text(f"{line}\n")
    done = _lint(tmp_path)
    if contract is None:  # a module the contracts do not name may import Docker
        assert done.returncode == 0, done.stdout
        return
    assert done.returncode != 0, done.stdout
    broken = [row for row in done.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(row.startswith(contract) for row in broken), done.stdout


ADAPTER_NAME = re.compile(r"""\.adapter\s*[!=]=|["'](local|inprocess|modal)["']""")


def test_the_suite_never_asks_which_adapter_it_runs_through() -> None:
    """Checks ask the handle what it can observe (None: skip), never the adapter's name."""
    suite = REPO / "pytest_theory/suite/test_contract.py"
    found = [
        f"{number}: {text.strip()}"
        for number, text in enumerate(suite.read_text().splitlines(), 1)
        if ADAPTER_NAME.search(text)
    ]
    assert found == []


def test_the_fast_lane_loads_no_docker_sdk() -> None:
    """The inprocess adapter serves a processor without the Docker SDK or the local adapter."""
    probe = (
        "import sys; import pytest_theory.adapters.inprocess; "
        "print(sorted(m for m in ('docker', 'pytest_theory.adapters.local', "
        "'pytest_theory.images') if m in sys.modules))"
    )
    done = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
