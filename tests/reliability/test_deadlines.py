"""Everything that waits has a total deadline: processors that trickle, never end, or send
too much, and a Docker engine that accepts and never answers (issue 16, finding 5).

The fake processors are raw sockets, so they can misbehave below HTTP. Each test asserts
the outcome code the documented deadline gives, never a duration.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_theory.adapters import LocalAdapter, http
from pytest_theory.adapters.base import preflight
from pytest_theory.driver import Driver
from pytest_theory.registry import ProcessorSpec
from tests.conftest import RELIABILITY, llm_inputs
from tests.reliability.conftest import REGISTRY

#: The deadline the tests give a call (``timeout_s`` of adapter_opts).
CALL_DEADLINE_S = 1.5
#: How long a fake keeps misbehaving at most (far beyond every deadline here).
FAKE_LIFETIME_S = 60.0

Behaviour = Callable[[socket.socket], None]


def _headers(content_type: str, length: int | None = None) -> bytes:
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    return f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n{framing}\r\n\r\n".encode()


def trickle(conn: socket.socket) -> None:
    """A 200 JSON answer that promises a megabyte and sends one space per second."""
    conn.sendall(_headers("application/json", 1_000_000))
    stop = threading.Event()
    for _ in range(int(FAKE_LIFETIME_S)):
        conn.sendall(b" ")
        if stop.wait(1.0):
            break


def endless_sse(conn: socket.socket) -> None:
    """An event stream that never sends ``done``."""
    conn.sendall(_headers("text/event-stream"))
    event = b'event: progress\ndata: {"stage": "running"}\n\n'
    chunk = f"{len(event):x}\r\n".encode() + event + b"\r\n"
    stop = threading.Event()
    for _ in range(int(FAKE_LIFETIME_S * 10)):
        conn.sendall(chunk)
        if stop.wait(0.1):
            break


def huge_envelope(conn: socket.socket) -> None:
    """A 500 MB 'envelope', sent as fast as the client reads."""
    conn.sendall(_headers("application/json", 500 * 1024 * 1024))
    block = b" " * (1024 * 1024)
    for _ in range(500):
        conn.sendall(block)


class FakeProcessor:
    """A TCP server on 127.0.0.1 answering every request with ``behaviour``."""

    def __init__(self, behaviour: Behaviour):
        self.behaviour = behaviour
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}")
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                received = b""
                while b"\r\n\r\n" not in received:
                    data = conn.recv(65536)
                    if not data:
                        return
                    received += data
                self.behaviour(conn)
            except OSError:
                return  # the client gave up: what a deadline is for

    def close(self) -> None:
        self.client.close()
        self.server.close()


@dataclass
class FakeHandle:
    """What the adapters' HTTP half needs of a processor."""

    client: httpx.Client
    ref: str = "llm/litellm@1"
    base_url: str = ""
    image_digest: str = ""
    world_root: Path | None = None

    def stderr(self) -> str:
        return ""

    def stdout(self) -> str | None:
        return None

    def alive(self) -> bool:
        return True

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def fake() -> Iterator[Callable[[Behaviour], FakeHandle]]:
    started: list[FakeProcessor] = []

    def start(behaviour: Behaviour) -> FakeHandle:
        started.append(FakeProcessor(behaviour))
        return FakeHandle(started[-1].client)

    yield start
    for processor in started:
        processor.close()


def invocation(stream: bool = False) -> Any:
    spec = REGISTRY.get_spec("llm/litellm@1")
    return preflight(
        processor_ref="llm/litellm@1",
        mode="mock",
        inputs_json=llm_inputs(),
        write_prefix="/artifacts/d/{execution_id}/",
        execution_id="deadline-1",
        registry_snapshot=spec.snapshot(),
        adapter_opts={},
        secrets_present=[],
        stream=stream,
    )


def call_code(handle: FakeHandle, stream: bool) -> str:
    try:
        http.call(handle, invocation(stream), timeout_s=CALL_DEADLINE_S, expected_digest=None)
    except http.AdapterError as exc:
        return str(exc.code)
    return "success"


@pytest.mark.fault
@pytest.mark.parametrize(
    ("behaviour", "stream", "code"),
    [
        (trickle, False, "ERR_TIMEOUT"),
        (endless_sse, True, "ERR_TIMEOUT"),
        (huge_envelope, False, "ERR_ENVELOPE_INVALID"),
    ],
    ids=["trickling-run", "endless-stream", "500mb-envelope"],
)
def test_the_adapter_call_has_a_total_deadline_and_a_size_cap(
    fake: Callable[[Behaviour], FakeHandle], behaviour: Behaviour, stream: bool, code: str
) -> None:
    """SPEC §8: wait for /healthz (bounded), POST /run — the whole answer within timeout_s."""
    assert call_code(fake(behaviour), stream) == code
    RELIABILITY["deadlines held"] += 1


@pytest.mark.fault
def test_the_health_wait_ends_even_when_healthz_trickles(
    fake: Callable[[Behaviour], FakeHandle],
) -> None:
    """SPEC §4: ERR_HEALTH — not healthy in time."""
    with pytest.raises(http.AdapterError) as raised:
        http.wait_healthy(fake(trickle), CALL_DEADLINE_S)
    assert str(raised.value.code) == "ERR_HEALTH"
    RELIABILITY["deadlines held"] += 1


@pytest.mark.fault
def test_the_harness_driver_has_a_total_deadline(
    fake: Callable[[Behaviour], FakeHandle],
) -> None:
    """The harness's own calls end within runtime.timeout_s plus the grace."""
    snapshot = REGISTRY.get_spec("llm/litellm@1").snapshot()
    snapshot["spec"]["runtime"]["timeout_s"] = 0.5
    driver = Driver(fake(endless_sse), ProcessorSpec.from_snapshot(snapshot))
    with pytest.raises(httpx.TimeoutException):
        driver.stream()
    RELIABILITY["deadlines held"] += 1


@pytest.mark.fault
def test_a_docker_engine_that_never_answers_is_err_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC §4: ERR_DOCKER, after a bounded wait (each Docker call has a timeout)."""
    import pytest_theory.adapters.local as local

    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(tmp_path / "docker.sock"))
    silent.listen(64)  # accepted by the kernel, never answered
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")
    monkeypatch.setattr(local, "DOCKER_TIMEOUT_S", 1)
    spec = REGISTRY.get_spec("llm/litellm@1")
    adapter = LocalAdapter(world_root=tmp_path)
    try:
        envelope = adapter.invoke(
            processor_ref="llm/litellm@1",
            mode="mock",
            inputs_json=llm_inputs(),
            write_prefix="/artifacts/d/{execution_id}/",
            execution_id="docker-silent",
            registry_snapshot=spec.snapshot(),
        )
    finally:
        adapter.close()
        silent.close()
    assert envelope["error"]["code"] == "ERR_DOCKER", envelope
    RELIABILITY["deadlines held"] += 1
