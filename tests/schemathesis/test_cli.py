"""schemathesis' own CLI with the shipped configuration: ``--theory-keep`` names each kept
container and the ``st run`` line for it, and that line finds nothing wrong.

The ``st run`` goes to a container this test starts through the harness's local adapter
in the canary environment (what the kept line points at), not to the kept one itself: a
kept container lives only until some session's reaper runs, which on a Docker engine
shared by several sessions can be seconds, and the run takes minutes.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from docker.errors import NotFound

from pytest_theory.adapters import LocalAdapter
from pytest_theory.adapters.containers import managed_containers
from pytest_theory.fuzz import SCHEMATHESIS_CONFIG
from pytest_theory.registry import Registry
from pytest_theory.session import CANARY
from tests.schemathesis.conftest import write_example

pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: Cases per operation. Measured on 2 cores shared with other jobs (load ~20): st sent
#: 1207 cases to each of POST /run and /run-stream in 880 s; a quiet CI machine is faster.
ST_EXAMPLES = 1000
ST_DEADLINE_S = 3000
KEPT_LINE = re.compile(r"^(\S+) \((\w+)\): (http://127\.0\.0\.1:(\d+))$", re.M)


def sent_per_operation(har: Path) -> Counter[str]:
    """Requests schemathesis sent, by ``METHOD /path``, from its HAR report."""
    entries = json.loads(har.read_text("utf-8"))["log"]["entries"]
    return Counter(
        f"{e['request']['method']} {urlsplit(e['request']['url']).path}" for e in entries
    )


def published_ports(container: Any) -> set[str]:
    bindings = container.attrs["NetworkSettings"]["Ports"] or {}
    return {b["HostPort"] for binding in bindings.values() for b in binding or []}


def test_keep_names_each_kept_container_and_the_st_line(
    pytester: pytest.Pytester, docker_client: Any
) -> None:
    write_example(pytester, "llm/litellm@1")
    result = pytester.runpytest_subprocess(
        "test_schemathesis.py", "--theory-keep", "-p", "no:cacheprovider"
    )
    output = result.stdout.str()
    kept = KEPT_LINE.findall(output)
    ports = {port for *_, port in kept}
    try:
        assert result.ret == pytest.ExitCode.OK, output[-3000:]
        assert [(target, variant) for target, variant, *_ in kept] == [
            ("llm/litellm@1-local", "canary")
        ], output[-2000:]
        url = kept[0][2]
        assert f"  st --config-file {SCHEMATHESIS_CONFIG} run {url}/openapi.json" in output
    finally:  # only the containers the summary names: the engine may be shared
        for container in managed_containers(docker_client):
            if published_ports(container) & ports:
                with contextlib.suppress(NotFound):  # another session's reaper was first
                    container.remove(force=True, v=True)


@pytest.fixture
def canary(docker_client: Any, tmp_path: Path) -> Iterator[Any]:
    """llm/litellm@1 in the canary variant's environment (CI=true), owned by this test."""
    spec = Registry.discover().get_spec("llm/litellm@1")
    adapter = LocalAdapter(world_root=tmp_path)
    environment = {n: CANARY for n in spec.secrets_declared}
    environment.update(IMAGE_DIGEST=adapter.digest_for(spec), CI="true")
    try:
        yield adapter.acquire(spec, environment=environment, world_root=tmp_path)
    finally:
        adapter.close()


@pytest.mark.usefixtures("no_leaks")
def test_st_run_with_the_shipped_config_finds_nothing(canary: Any, tmp_path: Path) -> None:
    har = tmp_path / "st.har"
    st = Path(sys.executable).with_name("st")
    answer = subprocess.run(
        [
            str(st),
            "--config-file",
            str(SCHEMATHESIS_CONFIG),
            "run",
            f"{canary.base_url}/openapi.json",
            "--no-color",
            "--max-examples",
            str(ST_EXAMPLES),
            "--report",
            "har",
            "--report-har-path",
            str(har),
        ],
        capture_output=True,
        text=True,
        timeout=ST_DEADLINE_S,
        check=False,
    )
    assert answer.returncode == 0, answer.stdout[-5000:]
    sent = sent_per_operation(har)
    assert sent["POST /run"] >= ST_EXAMPLES and sent["POST /run-stream"] >= ST_EXAMPLES, sent
