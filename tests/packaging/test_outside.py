"""pytest-theory in someone else's repository, end to end, as a new author meets it.

The wheel is built from the checkout's tracked files and installed, without pytest-xdist,
into a fresh virtualenv inside a project in a temporary folder: a project with its own
``contracts.py``, ``registry.py``, ``adapters/``, ``processors/__init__.py`` and root
``conftest.py``. There: ``theory new``, the contract suite under ``--strict-markers -W error``,
a new dependency (the stale lock is told once; ``theory lock``; green again), the author's
own fixture-based tests, and the CI recipe's ``run:`` steps, as GitHub Actions would run
them. Nothing under site-packages may change. Measured on 2 busy cores: 8.5 min cold (two
image builds, the second installing the new dependency), 2.5 min warm (images cached by
content hash); the virtualenv and install from pip's cache take 40-70 s of it.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: Fewer generated cases than the default: this proves the path, not the processor.
FEWER_CASES = "--theory-fuzz-examples 10 --theory-property-examples 5"
OWN_MODULES = {
    "contracts.py": "def my_contract() -> str:\n    return 'mine'\n",
    "registry.py": "ENTRIES = ['mine']\n",
    "adapters/__init__.py": "NAME = 'my adapters'\n",
    "processors/__init__.py": '"""My processors (and a package of my own)."""\n',
    "conftest.py": (
        "import pytest\n\n"
        "from adapters import NAME\n"
        "from contracts import my_contract\n"
        "from registry import ENTRIES\n\n\n"
        "@pytest.fixture\n"
        "def mine() -> str:\n"
        "    return f'{my_contract()} {ENTRIES[0]} {NAME}'\n"
    ),
    "tests/test_mine.py": "def test_my_modules_are_mine(mine):\n    assert mine == 'mine mine my adapters'\n",
}


def tree_hash(root: Path) -> dict[str, str]:
    """Every installed file's sha256 (bytecode caches aside: Python writes them on import)."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


class Project:
    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.env = env
        self.timings: dict[str, float] = {}

    def run(self, label: str, command: str, expect: int = 0) -> str:
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", command],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
        )
        self.timings[label] = time.monotonic() - started
        output = done.stdout + done.stderr
        assert done.returncode == expect, (
            f"{label}: `{command}` exited {done.returncode}\n" + (output[-5000:])
        )
        return output


def test_an_outside_author_scaffolds_tests_locks_and_gates_ci(
    wheel: Path, tmp_path: Path, docker_client: Any, no_leaks: None
) -> None:
    project = tmp_path / "project"
    for name, text in OWN_MODULES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    base_python = Path(getattr(sys, "_base_executable", sys.executable))
    shim = tmp_path / "bin"  # `python` in the CI recipe: the runner's, not the venv's
    shim.mkdir()
    (shim / "python").symlink_to(base_python)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "VIRTUAL_ENV", "PYTHON", "THEORY_REGISTRY"))
    }
    env.update(
        PATH=f"{project / '.venv/bin'}:{shim}:/usr/sbin:/usr/bin:/sbin:/bin",
        PYTEST_ADDOPTS=FEWER_CASES,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    author = Project(project, env)

    author.run("venv", f"{base_python} -m venv .venv")
    author.run(
        "install",
        f".venv/bin/python -m pip install -q -c {REPO / 'constraints.txt'} {wheel}",
    )
    author.run("no xdist", ".venv/bin/python -c 'import xdist'", expect=1)
    (site_packages,) = (project / ".venv/lib").glob("python3*/site-packages")
    before = tree_hash(site_packages)
    assert not (site_packages / "contracts").exists() and (site_packages / "pytest_theory").is_dir()

    out = author.run("theory new", "theory new acme/echo@1")
    assert "created" in out and (project / "processors/acme_echo/registry.yaml").exists()
    suite = "pytest --theory-ref acme/echo@1 --strict-markers -W error"
    out = author.run("suite", suite)
    assert re.search(r"acme/echo@1-local: (\d+)/\1 rules passed", out), out[-3000:]

    # A new dependency: the lock is stale, said once, before any build.
    folder = project / "processors/acme_echo"
    with (folder / "requirements.in").open("a") as handle:
        handle.write("six==1.17.0\n")
    handler = folder / "app/handler.py"
    handler.write_text("import six  # noqa: F401\n" + handler.read_text())  # it is in the image
    out = author.run("stale", suite, expect=pytest.ExitCode.USAGE_ERROR)
    assert out.count("requirements.lock is stale") == 1
    assert out.count("run `theory lock acme/echo@1`") == 1, out
    out = author.run("theory lock", "theory lock")
    assert "added six==1.17.0" in out and "moved" not in out, out
    out = author.run("suite again", suite)
    assert re.search(r"acme/echo@1-local: (\d+)/\1 rules passed", out), out[-3000:]

    # The author's own tests, on the fixtures and beside their own modules.
    out = author.run("own tests", "pytest --strict-markers -W error -p no:cacheprovider")
    assert "3 passed" in out, out[-3000:]

    # Pin, then the CI recipe's run: steps as Actions runs them.
    author.run("theory pin", "theory pin")
    out = author.run("prune (dry run)", "theory prune --dry-run")
    assert "old tag(s) to remove" in out
    workflow = yaml.safe_load((project / ".github/workflows/theory.yml").read_text())
    job = workflow["jobs"]["contract"]
    github_env = tmp_path / "github_env"
    github_env.touch()
    ci_env = {**env, **{k: str(v) for k, v in job["env"].items()}}
    ci_env.update(THEORY_PACKAGE=str(wheel), GITHUB_ENV=str(github_env))
    ci_env["PATH"] = f"{shim}:/usr/sbin:/usr/bin:/sbin:/bin"
    for step in job["steps"]:
        if "run" not in step:
            continue  # uses: checkout, setup-python, cache, upload-artifact
        for line in github_env.read_text().splitlines():
            key, _, value = line.partition("=")
            ci_env[key] = value
        Project(project, ci_env).run(f"ci: {step.get('name', step['run'][:30])}", step["run"])
    assert ci_env["THEORY_CACHE_DIR"].startswith("/")
    report = ET.parse(project / "contract.xml").getroot()
    cases = report.findall(".//testcase")
    assert len(cases) > 40 and not report.findall(".//failure") and not report.findall(".//error")
    classnames = {case.get("classname") for case in cases}
    assert "pytest_theory.suite.test_contract" in classnames
    assert not any("site-packages" in str(name) or ".venv" in str(name) for name in classnames)

    # A failed check's id, pasted back, names that check alone.
    check = next(c for c in cases if c.get("classname") == "pytest_theory.suite.test_contract")
    node_id = f"pytest_theory/suite/test_contract.py::{check.get('name')}"
    out = author.run("rerun one", f"pytest --theory-ref acme/echo@1 '{node_id}' --collect-only -q")
    assert "1 test collected" in out, out

    assert tree_hash(site_packages) == before, "something wrote into site-packages"
    print("timings:", {label: round(seconds) for label, seconds in author.timings.items()})
