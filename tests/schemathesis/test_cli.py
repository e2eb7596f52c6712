"""schemathesis' own CLI, with the shipped configuration, against a processor the harness
started and kept (``--theory-keep`` prints its URL and the ``st run`` line)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pytest_theory.adapters.containers import managed_containers
from pytest_theory.fuzz import SCHEMATHESIS_CONFIG
from tests.schemathesis.conftest import write_example

pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: Cases per operation. Measured on 2 cores shared with other jobs (load ~20): st sent
#: 1207 cases to each of POST /run and /run-stream in 880 s; a quiet CI machine is faster.
ST_EXAMPLES = 1000
ST_DEADLINE_S = 3000


def sent_per_operation(har: Path) -> Counter[str]:
    """Requests schemathesis sent, by ``METHOD /path``, from its HAR report."""
    entries = json.loads(har.read_text("utf-8"))["log"]["entries"]
    return Counter(
        f"{e['request']['method']} {urlsplit(e['request']['url']).path}" for e in entries
    )


def published_ports(container: Any) -> set[str]:
    bindings = container.attrs["NetworkSettings"]["Ports"] or {}
    return {b["HostPort"] for binding in bindings.values() for b in binding or []}


def test_st_run_with_the_shipped_config_passes_against_a_kept_container(
    pytester: pytest.Pytester, docker_client: Any
) -> None:
    write_example(pytester, "llm/litellm@1")
    result = pytester.runpytest_subprocess(
        "test_schemathesis.py", "--theory-keep", "-p", "no:cacheprovider"
    )
    # The containers the summary names, by their published port (the engine may be shared).
    ports = set(re.findall(r"^\S+ \(\w+\): http://127\.0\.0\.1:(\d+)$", result.stdout.str(), re.M))
    kept = [c for c in managed_containers(docker_client) if published_ports(c) & ports]
    try:
        assert ports and len(kept) == len(ports), result.stdout.str()[-2000:]
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
        line = re.search(
            r"^  st --config-file (\S+) run (\S+)/openapi.json$", result.stdout.str(), re.M
        )
        assert line, result.stdout.str()[-2000:]
        assert Path(line[1]) == SCHEMATHESIS_CONFIG
        st = Path(sys.executable).with_name("st")
        har = pytester.path / "st.har"
        answer = subprocess.run(
            [
                str(st),
                "--config-file",
                line[1],
                "run",
                f"{line[2]}/openapi.json",
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
    finally:
        for container in kept:
            container.remove(force=True, v=True)
