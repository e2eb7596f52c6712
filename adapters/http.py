"""The HTTP half of every adapter: wait for ``/healthz``, post ``/run`` or ``/run-stream``.

Works on any ``ProcessorHandle``: a container's published port, an in-process
ASGI app, or a Modal web endpoint all look the same from here.

Everything here has a total deadline, not just a per-read one: httpx's timeouts
bound each read, so a processor trickling one byte a second would otherwise
never time out. Bodies are read in chunks, the deadline checked after each one
(and each read bounded by the time left), and what is read is capped in size:
an envelope at ``MAX_ENVELOPE_BYTES``, a stream event at ``MAX_EVENT_BYTES``.
So a call ends within its deadline plus one chunk's read.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Iterator
from typing import Any, Protocol

import httpx
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from pytest_theory.adapters.base import (
    AdapterError,
    Invocation,
    OnEvent,
    ProcessorHandle,
    Unreachable,
    check_envelope,
    logs_tail,
)
from pytest_theory.contracts import schemas
from pytest_theory.contracts.errors import ErrorCode

#: Added to ``runtime.timeout_s``: the processor answers ERR_TIMEOUT itself first.
TIMEOUT_GRACE_S = 10.0
HEALTH_POLL_S = 0.05
#: One ``GET /healthz`` of the health wait (the wait as a whole has its own deadline).
HEALTH_REQUEST_S = 2.0
CONNECT_TIMEOUT_S = 10.0
#: After a dropped connection, how long the engine gets to report that the processor exited.
EXIT_GRACE_S = 2.0
#: The largest envelope (a /run answer) read; the processor's body limit is 8 MiB at most.
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024
#: The largest whole stream read at once (the harness reads a stream's body whole).
MAX_STREAM_BYTES = 64 * 1024 * 1024
#: The largest single stream event (lines of one event together).
MAX_EVENT_BYTES = 16 * 1024 * 1024


class DeadlineExceeded(httpx.TimeoutException):
    """The call's total deadline passed while the answer was still arriving."""


class AnswerTooLarge(Exception):
    """The answer outgrew its size cap; nothing more of it is read."""


class Deadline:
    """A point in time a whole exchange must be over by."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(self.at - time.monotonic(), 0.0)

    def check(self) -> None:
        if time.monotonic() >= self.at:
            raise DeadlineExceeded(f"no whole answer within {self.seconds:g}s")

    def timeout(self) -> httpx.Timeout:
        """Per-read timeouts no longer than the time left."""
        left = max(self.remaining(), 0.001)
        return httpx.Timeout(left, connect=min(CONNECT_TIMEOUT_S, left))


def read_capped(response: httpx.Response, deadline: Deadline, limit: int) -> bytes:
    """The body of a streamed response, read before ``deadline`` and at most ``limit`` bytes."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise AnswerTooLarge(f"the answer exceeds {limit} bytes")
        deadline.check()
    return bytes(body)


def bounded_request(
    client: httpx.Client,
    method: str,
    path: str,
    *,
    deadline_s: float,
    limit: int = MAX_ENVELOPE_BYTES,
    **kwargs: Any,
) -> httpx.Response:
    """One request whose whole answer arrives within ``deadline_s`` and ``limit`` bytes.

    Raises ``DeadlineExceeded`` (an ``httpx.TimeoutException``), ``AnswerTooLarge``
    or httpx's own errors. The response returned is fully read.
    """
    deadline = Deadline(deadline_s)
    with client.stream(method, path, timeout=deadline.timeout(), **kwargs) as response:
        body = read_capped(response, deadline, limit)
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "content-encoding"]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request
    )


def iter_sse_capped(
    response: httpx.Response, deadline: Deadline, limit: int = MAX_EVENT_BYTES
) -> Iterator[ServerSentEvent]:
    """The events of an SSE response (httpx-sse's decoders), each at most ``limit`` characters,
    all of them before ``deadline``."""
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines, events = SSELineDecoder(), SSEDecoder()
    event_size = 0
    for chunk in response.iter_bytes():
        deadline.check()
        for line in lines.decode(text.decode(chunk)):
            event_size = 0 if line == "" else event_size + len(line)
            if event_size > limit:
                raise AnswerTooLarge(f"a stream event exceeds {limit} characters")
            sse = events.decode(line)
            if sse is not None:
                yield sse
        if sum(map(len, lines.buffer)) + event_size > limit:
            raise AnswerTooLarge(f"a stream event exceeds {limit} characters")
    for line in lines.flush():  # an event not closed by a blank line is dropped, as SSE says
        sse = events.decode(line)
        if sse is not None:
            yield sse


__all__ = [
    "Deadline",
    "Unreachable",
    "bounded_request",
    "call",
    "iter_sse_capped",
    "wait_healthy",
]  # Unreachable lives in base, with its tree


class Reachable(Protocol):
    """What waiting on a processor needs: a ``ProcessorHandle``, or a container still starting."""

    @property
    def client(self) -> httpx.Client: ...

    def stderr(self) -> str | None: ...

    def alive(self) -> bool: ...


def _tail(handle: Reachable) -> list[str]:
    try:
        return logs_tail(handle.stderr() or "")
    except Exception:  # a vanished container has no logs; the error is what matters
        return []


def _exits_within(handle: Reachable, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while handle.alive():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def wait_healthy(handle: Reachable, timeout_s: float) -> None:
    """Poll ``GET /healthz`` until ``{"ok": true}``; ``ERR_HEALTH`` (with the log tail) otherwise.

    The wait ends within ``timeout_s`` plus one probe: each probe is itself bounded
    in total by ``HEALTH_REQUEST_S`` (a trickling answer too), and one started
    before the deadline may finish.
    """
    deadline = Deadline(timeout_s)
    last = "no answer"
    while True:
        if not handle.alive():
            raise AdapterError(
                ErrorCode.ERR_HEALTH,
                "the processor exited before it became healthy",
                logs_tail=_tail(handle),
            )
        try:
            response = bounded_request(
                handle.client,
                "GET",
                "/healthz",
                deadline_s=HEALTH_REQUEST_S,
                limit=64 * 1024,
            )
            if response.status_code == 200 and response.json() == {"ok": True}:
                return
            last = f"HTTP {response.status_code}"
        except (httpx.HTTPError, ValueError, AnswerTooLarge) as exc:
            last = type(exc).__name__
        if deadline.remaining() <= 0:
            raise AdapterError(
                ErrorCode.ERR_HEALTH,
                f"not healthy within {timeout_s:g}s ({last})",
                logs_tail=_tail(handle),
            )
        time.sleep(min(HEALTH_POLL_S, deadline.remaining()))


def call_deadline_s(invocation: Invocation, timeout_s: float | None = None) -> float:
    """The total deadline of one call: ``timeout_s``, else ``runtime.timeout_s`` plus a grace."""
    return float(timeout_s or invocation.spec.timeout_s + TIMEOUT_GRACE_S)


def call(
    handle: ProcessorHandle,
    invocation: Invocation,
    *,
    timeout_s: float | None,
    expected_digest: str | None,
    on_event: OnEvent | None = None,
) -> dict[str, Any]:
    """Post the payload and return the checked envelope; raises ``AdapterError``.

    ``timeout_s`` bounds the whole call (every byte of the answer); ``None`` gives
    the processor its ``runtime.timeout_s`` plus a grace to answer ERR_TIMEOUT itself.
    """
    deadline = Deadline(call_deadline_s(invocation, timeout_s))
    try:
        if invocation.stream:
            status, envelope = None, _stream(handle, invocation, deadline, on_event)
        else:
            response = bounded_request(
                handle.client,
                "POST",
                "/run",
                deadline_s=deadline.remaining(),
                json=invocation.payload,
            )
            status = response.status_code
            try:
                envelope = response.json()
            except ValueError:
                raise AdapterError(
                    ErrorCode.ERR_ADAPTER_INVOCATION,
                    f"HTTP {status} with an answer that is not JSON",
                    logs_tail=_tail(handle),
                ) from None
    except httpx.TimeoutException:
        raise AdapterError(
            ErrorCode.ERR_TIMEOUT,
            f"no whole answer within {deadline.seconds:g}s",
            logs_tail=_tail(handle),
        ) from None
    except AnswerTooLarge as exc:
        raise AdapterError(
            ErrorCode.ERR_ENVELOPE_INVALID, str(exc), logs_tail=_tail(handle)
        ) from None
    except httpx.ConnectError as exc:
        raise Unreachable(
            ErrorCode.ERR_ADAPTER_INVOCATION,
            f"the processor does not accept connections ({exc}); nothing was sent",
            logs_tail=_tail(handle),
        ) from None
    except httpx.TransportError as exc:
        gone = "; the processor exited" if _exits_within(handle, EXIT_GRACE_S) else ""
        raise AdapterError(
            ErrorCode.ERR_ADAPTER_INVOCATION,
            f"connection lost during the run ({type(exc).__name__}){gone}",
            logs_tail=_tail(handle),
        ) from None
    return check_envelope(invocation, status, envelope, expected_digest=expected_digest)


def _stream(
    handle: ProcessorHandle,
    invocation: Invocation,
    deadline: Deadline,
    on_event: OnEvent | None,
) -> Any:
    done: Any = None
    with handle.client.stream(
        "POST", "/run-stream", json=invocation.payload, timeout=deadline.timeout()
    ) as response:
        if response.status_code != 200:
            raise AdapterError(
                ErrorCode.ERR_ADAPTER_INVOCATION,
                f"/run-stream answered HTTP {response.status_code}",
                logs_tail=_tail(handle),
            )
        media_type = response.headers.get("content-type", "").partition(";")[0].strip()
        if media_type != "text/event-stream":
            raise AdapterError(
                ErrorCode.ERR_ADAPTER_INVOCATION,
                f"not an event stream (Content-Type {media_type!r})",
                logs_tail=_tail(handle),
            )
        for sse in iter_sse_capped(response, deadline):
            if done is not None:
                raise AdapterError(ErrorCode.ERR_ENVELOPE_INVALID, "events arrived after done")
            try:
                event = {"event": sse.event, "data": json.loads(sse.data)}
            except ValueError:
                raise AdapterError(
                    ErrorCode.ERR_ENVELOPE_INVALID,
                    f"a {sse.event!r} event whose data is not JSON",
                ) from None
            if sse.event == "done":
                done = event["data"]
                continue
            problems = schemas.problems("sse_event", event)
            if problems:
                raise AdapterError(
                    ErrorCode.ERR_ENVELOPE_INVALID,
                    f"a stream event breaks the contract: {problems[0]}",
                )
            if on_event is not None:
                on_event(sse.event, event["data"])
    if done is None:
        raise AdapterError(
            ErrorCode.ERR_ENVELOPE_INVALID,
            "the stream ended without a done event",
            logs_tail=_tail(handle),
        )
    return done
