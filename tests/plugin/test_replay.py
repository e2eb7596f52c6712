"""A failing check's printed replay, run by bash, gets the answer the check saw."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_theory.adapters.base import Launch
from pytest_theory.replay import Exchange, docker_run_line, lines_of, reproduction
from tests.plugin.conftest import QUICK
from tests.waiting import wait_for

#: Shell-active text and bytes that are not UTF-8: a replay must send them as they are.
BODY = b'{"execution_id": "$(id)", "x": "`id` \'q\' \\" \xff\xfe"}'

CHECK = f"""
def test_sees_a_hostile_body(theory_driver):
    run = theory_driver.run(content={BODY!r}, headers={{"content-type": "application/json"}})
    assert run.status == 299, run.text
"""


def test_curl_quotes_everything_and_sends_the_body_from_a_file(tmp_path: Path) -> None:
    exchange = Exchange("POST", "/run", {"content-type": "application/json; x='$(id)'"}, BODY)
    text = reproduction([exchange], Launch("img:1", ("IMAGE_DIGEST", "CI")), tmp_path, tmp_path)
    assert (tmp_path / "body-1.bin").read_bytes() == BODY
    curl = text.splitlines()[-1]
    assert "--data-binary @" in curl and "$(id)" in curl.split(" -H ")[1]
    words = shlex.split(curl.replace('"${THEORY_PORT:-8000}"', "8000"))
    assert words[words.index("-H") + 1] == "content-type: application/json; x='$(id)'"
    run_line = docker_run_line(Launch("img:1", ("IMAGE_DIGEST", "CI")), tmp_path)
    assert " -e IMAGE_DIGEST -e CI " in run_line and "=" not in run_line.split(" -v ")[0]


def test_stderr_lines_are_only_this_checks() -> None:
    stderr = "\n".join(
        [
            json.dumps({"event": "http.run.start", "execution_id": "mine"}),
            json.dumps({"event": "http.run.start", "execution_id": "other"}),
            '{"event":"http.run.settle","execution_id":"mine"}',
        ]
    )
    assert [json.loads(line)["event"] for line in lines_of(stderr, {"mine"})] == [
        "http.run.start",
        "http.run.settle",
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _section(output: str, title: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"- {title}"))
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("- ", "===", "___"))),
        len(lines),
    )
    return lines[start + 1 : end]


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_the_printed_replay_gets_the_same_answer(
    pytester: pytest.Pytester, docker_client: Any
) -> None:
    pytester.makepyfile(test_hostile=CHECK)
    result = pytester.runpytest_subprocess(
        "--theory-ref", "llm/litellm@1", "--theory-adapter", "local",
        "test_hostile.py", "-k", "hostile", *QUICK,
    )  # fmt: skip
    output = result.stdout.str()
    assert result.parseoutcomes().get("failed") == 1, output[-3000:]
    seen = re.search(r"assert (\d+) == 299", output)
    replay = _section(output, "theory replay")
    docker_line = next(line for line in replay if line.startswith("docker run "))
    curl = next(line for line in replay if line.startswith("curl "))
    answered = next(line for line in replay if line.startswith("# 1: POST /run -> HTTP "))
    assert seen is not None and f"HTTP {seen.group(1)}: " in answered
    # The bodies are the session's own (under its basetemp), not a folder shared between runs.
    body = re.search(r"--data-binary @(\S+)", curl)
    assert body is not None and shlex.split(body.group(1))[0].startswith(str(pytester.path))
    names = re.findall(r" -e (\S+)", docker_line)
    assert "IMAGE_DIGEST" in names and not re.search(r" -e \S+=", docker_line)

    image = docker_line.rsplit(" ", 1)[1]
    port = str(_free_port())
    environment = {**os.environ, "THEORY_PORT": port}
    assert docker_client.images.get(shlex.split(image)[0])  # the printed image is here
    # The value the adapter handed the processor (the pushed digest, for a pinned run): the
    # replay names variables, never values, so whoever replays supplies them.
    handed = re.search(r'"image_digest": "(sha256:[0-9a-f]{64})"', answered)
    assert handed is not None, answered
    environment["IMAGE_DIGEST"] = handed.group(1)
    started = subprocess.run(
        ["bash", "-c", docker_line], env=environment, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 0, started.stderr
    container = docker_client.containers.get(started.stdout.strip())
    try:
        wait_for(
            lambda: _healthy(port),
            timeout_s=60,
            what=lambda: container.logs()[-2000:].decode(errors="replace"),
        )
        replayed = subprocess.run(
            ["bash", "-c", curl + " -w '\\n%{http_code}'"],
            env=environment,
            capture_output=True,
            timeout=60,
        )
    finally:
        container.remove(force=True)
    assert replayed.returncode == 0, replayed.stderr
    body, _, status = replayed.stdout.rpartition(b"\n")
    assert status.decode() == seen.group(1)
    envelope = json.loads(body)
    preview = json.loads(answered.split(f"HTTP {seen.group(1)}: ", 1)[1])
    for document in (envelope, preview):
        document.get("meta", {}).pop("duration_ms", None)
    assert envelope == preview
    assert "uid=" not in body.decode("utf-8", "replace"), "the shell ran $(id)"


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
