"""Shared helpers for the project's own tests."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DIGEST = "sha256:" + "ab" * 32
CID = "b3:" + "cd" * 32

#: What the reliability figures of bench/RESULTS.md count: bad requests sent, runs
#: under load, faults survived (passed tests marked ``fault``), leftovers.
RELIABILITY: Counter[str] = Counter()
_LEFTOVERS_AT_START: dict[str, set[str]] = {}


def llm_inputs(content: str = "hello") -> dict[str, Any]:
    return {
        "schema": "v1",
        "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]},
    }


def payload(**overrides: Any) -> dict[str, Any]:
    """A valid llm/litellm@1 payload, with ``overrides`` applied."""
    body: dict[str, Any] = {
        "schema": "v1",
        "execution_id": "e-1",
        "ref": "llm/litellm@1",
        "mode": "mock",
        "inputs": llm_inputs(),
        "write_prefix": "/artifacts/outputs/demo/{execution_id}/",
        "meta": {"trace_id": "t-1"},
    }
    body.update(overrides)
    return body


@pytest.fixture
def spec_md() -> str:
    path = SHARED / "SPEC.md"
    if not path.exists():
        pytest.skip(f"{path} is not beside this checkout (it is in CI and in the workspace)")
    return path.read_text("utf-8")


FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """The Docker engine; the test is skipped, saying why, only when no engine answers."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        pytest.skip(f"no Docker engine answers here ({exc}); these tests boot real containers")
    return client


def _descends_from_us(pid: int) -> bool:
    """True when ``pid`` is this process or one of its descendants (Linux /proc)."""
    while pid > 1:
        if pid == os.getpid():
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def _owned_by_a_sibling(labels: dict[str, str]) -> bool:
    """Owned by another live process that this one did not start: an xdist sibling's."""
    from pytest_theory.adapters.containers import LABEL_OWNER, owner_alive

    owner = labels.get(LABEL_OWNER, "")
    pid = owner.split(":")[1] if owner.count(":") >= 2 else ""
    return pid.isdigit() and owner_alive(owner) and not _descends_from_us(int(pid))


def our_containers(client: Any) -> set[str]:
    """Containers of ours that this process (or what it started) is answerable for: this
    run's label (not another run's on a shared engine), and not an xdist sibling's."""
    from pytest_theory.adapters.containers import LABEL_RUN, RUN_ID, managed_containers

    return {
        c.name
        for c in managed_containers(client)
        if c.labels.get(LABEL_RUN) == RUN_ID and not _owned_by_a_sibling(c.labels)
    }


@pytest.fixture
def no_leaks(docker_client: Any) -> Any:
    """Fails the test if it leaves a container of ours behind."""
    before = our_containers(docker_client)
    yield
    left = our_containers(docker_client) - before
    assert not left, f"containers left behind: {sorted(left)}"


def _leftovers() -> dict[str, set[str]] | None:
    """Containers, networks and volumes of ours, by kind; None without a Docker engine."""
    import docker
    from docker.errors import DockerException

    from pytest_theory.adapters.containers import LABEL_MANAGED, LABEL_RUN, RUN_ID

    try:
        client = docker.from_env()
        label = {"label": f"{LABEL_MANAGED}=1"}
        # This run's own containers only (its processes share RUN_ID), not other runs' on
        # a shared engine.
        mine = {"label": [f"{LABEL_MANAGED}=1", f"{LABEL_RUN}={RUN_ID}"]}
        return {
            "containers": {
                c.name for c in client.containers.list(all=True, filters=mine, ignore_removed=True)
            },
            "networks": {n.name for n in client.networks.list(filters=label)},
            "volumes": {v.name for v in client.volumes.list(filters=label)},
        }
    except DockerException:
        return None


def pytest_sessionstart(session: pytest.Session) -> None:
    _LEFTOVERS_AT_START.update(_leftovers() or {})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and "fault" in report.keywords:
        RELIABILITY["faults survived"] += 1


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Count what the run left behind; any leftover fails the run."""
    now = _leftovers()
    keep = session.config.getoption("theory_keep", None) or session.config.getini("theory_keep")
    if now is None or keep or hasattr(session.config, "workerinput"):
        return  # --theory-keep leaves containers on purpose
    left = {
        kind: sorted(names - _LEFTOVERS_AT_START.get(kind, set())) for kind, names in now.items()
    }
    for kind, names in left.items():
        RELIABILITY[f"{kind} leaked"] = len(names)
    if any(left.values()):
        session.config.stash[_LEFT_KEY] = left
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_LEFT_KEY = pytest.StashKey[dict[str, list[str]]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not RELIABILITY:
        return
    counts = ", ".join(f"{name}: {count}" for name, count in sorted(RELIABILITY.items()))
    terminalreporter.write_line(f"reliability: {counts}")
    left = config.stash.get(_LEFT_KEY, None)
    if left:
        terminalreporter.write_line(f"left behind by this run: {left}", red=True)
    if os.environ.get("THEORY_RELIABILITY_JSON"):
        Path(os.environ["THEORY_RELIABILITY_JSON"]).write_text(json.dumps(RELIABILITY, indent=2))
