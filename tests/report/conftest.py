"""Report tests: pytester runs that write reports, and the control plane's fixtures."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.control_plane.conftest import manage, store, world  # noqa: F401  (fixtures)
from tests.plugin.conftest import broken_root  # noqa: F401  (a fixture)

#: A pytester conftest that counts what a run asks of Docker: containers created, images built.
COUNTING_CONFTEST = """
import json, os
import docker.api.build, docker.api.container

COUNTS = {"containers": 0, "builds": 0}

def _counting(cls, name, key):
    original = getattr(cls, name)
    def counted(self, *args, **kwargs):
        COUNTS[key] += 1
        return original(self, *args, **kwargs)
    setattr(cls, name, counted)

_counting(docker.api.container.ContainerApiMixin, "create_container", "containers")
_counting(docker.api.build.BuildApiMixin, "build", "builds")

def pytest_sessionfinish(session):
    with open(os.environ["THEORY_COUNTS"], "w") as out:
        json.dump(COUNTS, out)
"""


def cells_of(report: Path) -> dict[str, dict[str, Any]]:
    """The report's cells by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((report / "cells").glob("*.json"))}


def junit_outcomes(path: Path) -> dict[tuple[str, str, str], str]:
    """``{(ref, rule, adapter): outcome}`` from a JUnit file's testcases and their properties,
    a rule failing when any of its checks failed (as the matrix says)."""
    seen: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if "theory_target" not in props or "theory_rule" not in props:
            continue
        ref, _, adapter = str(props["theory_target"]).rpartition("-")
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "not-run"
        else:
            outcome = "passed"
        seen[(ref, str(props["theory_rule"]), adapter)].add(outcome)
    order = ("failed", "passed", "not-run")
    return {key: next(o for o in order if o in found) for key, found in seen.items()}


@pytest.fixture
def counts_file(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytester.makeconftest(COUNTING_CONFTEST)
    path = pytester.path / "counts.json"
    monkeypatch.setenv("THEORY_COUNTS", str(path))
    return path
