"""schemathesis' own CLI, with the shipped configuration, against a processor the harness
started and kept (``--theory-keep`` prints its URL and the ``st run`` line)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pytest_theory.adapters.containers import managed_containers
from pytest_theory.fuzz import SCHEMATHESIS_CONFIG
from tests.conftest import our_containers
from tests.schemathesis.conftest import write_example

pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: Cases per operation; on 2 quiet cores the run takes a few minutes (see bench/RESULTS.md).
ST_EXAMPLES = 1000
ST_DEADLINE_S = 3000


def sent_per_operation(har: Path) -> Counter[str]:
    """Requests schemathesis sent, by ``METHOD /path``, from its HAR report."""
    entries = json.loads(har.read_text("utf-8"))["log"]["entries"]
    return Counter(
        f"{e['request']['method']} {urlsplit(e['request']['url']).path}" for e in entries
    )


def test_st_run_with_the_shipped_config_passes_against_a_kept_container(
    pytester: pytest.Pytester, docker_client: object
) -> None:
    before = our_containers(docker_client)
    write_example(pytester, "llm/litellm@1")
    result = pytester.runpytest_subprocess(
        "test_schemathesis.py", "--theory-keep", "-p", "no:cacheprovider"
    )
    kept = [c for c in managed_containers(docker_client) if c.name not in before]
    try:
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
