"""The exchanges a check made, and how to replay them by hand.

Every request a check sends through its ``Driver`` (fuzz cases too) is kept as
an ``Exchange``. A failing check prints them as shell commands: the ``docker
run`` line that starts the same image with the same environment variable
*names* (their values come from your shell; they are never printed), and one
``curl`` per exchange, quoted with ``shlex.quote``, its body byte for byte in a
file written beside the report (``--data-binary @file``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pytest_theory.adapters.base import Launch
from pytest_theory.adapters.http import MAX_ENVELOPE_BYTES, bounded_request

#: Where the replayed processor listens: host port 8000, or $THEORY_PORT.
BASE_URL = 'http://127.0.0.1:"${THEORY_PORT:-8000}"'
CONTAINER_PORT = 8000
#: Shown per exchange in a report: enough to see what came back.
RESPONSE_PREVIEW = 500


@dataclass
class Exchange:
    """One request a check sent and what came back."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None
    status: int | None = None
    response: bytes = b""
    execution_ids: set[str] = field(default_factory=set)


def _execution_ids(body: bytes | None) -> set[str]:
    """The execution ids a body names (for the stderr lines of this check)."""
    found = re.findall(rb'"execution_id"\s*:\s*"([^"\\]{1,200})"', body or b"")
    return {value.decode("utf-8", "replace") for value in found}


class Recorder:
    """Sends requests through a client and keeps every exchange."""

    def __init__(self, client: httpx.Client):
        self.client = client
        self.exchanges: list[Exchange] = []

    def send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float | None = None,
        deadline_s: float | None = None,
        limit: int = MAX_ENVELOPE_BYTES,
    ) -> httpx.Response:
        """Send and record one exchange; ``deadline_s`` bounds it in all, ``limit`` its answer."""
        exchange = Exchange(
            method.upper(),
            path,
            dict(headers or {}),
            content,
            execution_ids=_execution_ids(content),
        )
        self.exchanges.append(exchange)
        response: httpx.Response
        if deadline_s is not None:
            response = bounded_request(
                self.client,
                method,
                path,
                deadline_s=deadline_s,
                limit=limit,
                content=content,
                headers=exchange.headers,
            )
        else:
            response = self.client.request(
                method, path, content=content, headers=exchange.headers, timeout=timeout
            )
        exchange.status, exchange.response = response.status_code, response.content
        return response

    def keep_only(self, exchange: Exchange) -> None:
        """Forget every exchange but ``exchange`` (a fuzz run keeps its failing case)."""
        self.exchanges = [exchange]

    def execution_ids(self) -> set[str]:
        return set().union(*(e.execution_ids for e in self.exchanges))


def docker_run_line(launch: Launch, world: Path | None) -> str:
    """``docker run`` for the same image, environment names only, the world mounted."""
    line = f'docker run --rm -d -p 127.0.0.1:"${{THEORY_PORT:-8000}}":{CONTAINER_PORT}'
    for name in launch.environment_names:
        line += " -e " + shlex.quote(name)  # the value comes from the shell's environment
    if world is not None:
        line += " -v " + shlex.quote(f"{world / 'artifacts'}:/artifacts")
        line += ' --user "$(id -u):$(id -g)"'
    return line + " " + shlex.quote(launch.image)


def curl_line(exchange: Exchange, body_file: Path | None) -> str:
    """``curl`` that sends exactly ``exchange``'s request to the replayed processor."""
    parts = ["curl", "-sS", "-X", exchange.method]
    for name, value in exchange.headers.items():
        parts += ["-H", f"{name}: {value}"]
    if exchange.body is not None:
        if body_file is None:
            raise ValueError("a body needs its file")
        parts += ["--data-binary", f"@{body_file}"]
    return shlex.join(parts) + " " + BASE_URL + shlex.quote(exchange.path)


def reproduction(
    exchanges: Sequence[Exchange], launch: Launch | None, world: Path | None, folder: Path
) -> str:
    """The replay of ``exchanges`` as shell lines; bodies are written under ``folder``."""
    lines: list[str] = []
    if launch is not None:
        names = " ".join(launch.environment_names) or "nothing"
        lines += [
            f"# start the same image (set {names} in your shell first; values are not shown):",
            docker_run_line(launch, world),
        ]
    for number, exchange in enumerate(exchanges, 1):
        body_file = None
        if exchange.body is not None:
            folder.mkdir(parents=True, exist_ok=True)
            body_file = folder / f"body-{number}.bin"
            body_file.write_bytes(exchange.body)
        preview = exchange.response[:RESPONSE_PREVIEW].decode("utf-8", "replace")
        lines += [
            f"# {number}: {exchange.method} {exchange.path} -> HTTP {exchange.status}: {preview}",
            curl_line(exchange, body_file),
        ]
    return "\n".join(lines)


def lines_of(stderr: str, execution_ids: Iterable[str]) -> list[str]:
    """The stderr lines that name one of ``execution_ids`` (NDJSON: one record a line)."""
    wanted = [f'"execution_id": "{i}"' for i in execution_ids] + [
        f'"execution_id":"{i}"' for i in execution_ids
    ]
    return [line for line in stderr.split("\n") if any(w in line for w in wanted)]
