"""Control-plane fixtures: a world per test, plans, and commands run as a user runs them."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from pytest_theory.django_project.apps.storage.store import FilesystemArtifactStore
from tests.conftest import FIXTURES, REPO


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def ledger_anchor(settings: Any, tmp_path: Path) -> Path:
    """Each test's ledger anchors to its own file (the database is rolled back per test)."""
    settings.THEORY_LEDGER_ANCHOR = tmp_path / "ledger.anchor"
    return Path(settings.THEORY_LEDGER_ANCHOR)


@pytest.fixture
def world(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "world"
    settings.THEORY_WORLD_ROOT = root
    return root


@pytest.fixture
def store(world: Path) -> FilesystemArtifactStore:
    return FilesystemArtifactStore(world)


@pytest.fixture
def registry_root(settings: Any, tmp_path: Path) -> Callable[..., Path]:
    """``registry_root(name, folder, patch)``: a copy of a processor (built-in or fixture) in an
    extra registry root the control plane searches, its registry.yaml changed by ``patch``."""
    root = tmp_path / "registry"
    root.mkdir()
    settings.THEORY_REGISTRY_ROOTS = [str(root), str(FIXTURES / "faults")]

    def copy(folder: str, as_dirname: str, patch: Callable[[str], str] = lambda text: text) -> Path:
        source = (
            REPO / "processors" / folder
            if (REPO / "processors" / folder).exists()
            else FIXTURES / "faults" / folder
        )
        target = root / as_dirname
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        registry = target / "registry.yaml"
        registry.write_text(patch(registry.read_text()))
        return target

    return copy


@pytest.fixture
def manage() -> Callable[..., Result]:
    """``manage("run_processor", "--ref", ...)``: the exit code and what went to stdout and stderr."""

    def run(*args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        code = 0
        try:
            call_command(*args, stdout=out, stderr=err)
        except SystemExit as exc:
            code = int(exc.code or 0)
        except CommandError as exc:  # what manage.py prints and exits with
            err.write(f"CommandError: {exc}\n")
            code = exc.returncode
        return Result(code, out.getvalue(), err.getvalue())

    return run


LLM_INPUTS = '{"schema":"v1","params":{"model":"m","messages":[{"role":"user","content":"hi"}]}}'


@pytest.fixture
def team(manage: Callable[..., Result]) -> str:
    """A plan made as a user makes one (``manage.py plans create``): 1 000 000 µUSD."""
    made = manage("plans", "create", "team", "--budget-usd-micro", "1000000")
    assert made.code == 0, made.stderr
    return "team"
