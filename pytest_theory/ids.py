"""Short, stable node ids for the contract suite, wherever pytest-theory is installed.

The suite lives in the installed package, so pytest would name its checks by their
path from the rootdir: ``.venv/lib/python3.11/site-packages/pytest_theory/suite/...``
when the virtualenv is inside the project, and something else on every machine.
They are named ``pytest_theory/suite/test_contract.py::test_x[ref-adapter]`` instead
(what they are called in pytest-theory's own checkout), so JUnit classnames are
``pytest_theory.suite.test_contract``; and such an id given back on the command
line runs that check alone. Registered by the plugin in ``pytest_configure``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parent / "suite"
SUITE_ID = "pytest_theory/suite"


def names_suite(arg: str) -> bool:
    """Whether a command-line argument is the suite or a part of it."""
    path = arg.split("::", 1)[0]
    return path == str(SUITE) or path.startswith(f"{SUITE}/")


def point_at_installed_suite(config: pytest.Config) -> None:
    """``pytest_theory/suite/...`` ids given back on the command line name the installed suite."""
    for index, arg in enumerate(config.args):
        path = arg.split("::", 1)[0]
        if (path == SUITE_ID or path.startswith(f"{SUITE_ID}/")) and not Path(path).exists():
            config.args[index] = str(SUITE) + arg[len(SUITE_ID) :]


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if path == SUITE:
        return pytest.Package.from_parent(parent, path=path, nodeid=SUITE_ID)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(
    module_path: Path, parent: pytest.Collector
) -> pytest.Module | None:
    if module_path.parent == SUITE:
        return pytest.Module.from_parent(
            parent, path=module_path, nodeid=f"{SUITE_ID}/{module_path.name}"
        )
    return None
