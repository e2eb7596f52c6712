"""The HTTP half of every adapter: wait for ``/healthz``, post ``/run`` or ``/run-stream``.

Works on any ``ProcessorHandle``: a container's published port, an in-process
ASGI app, or a Modal web endpoint all look the same from here.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

import httpx
from httpx_sse import SSEError, connect_sse

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
#: After a dropped connection, how long the engine gets to report that the processor exited.
EXIT_GRACE_S = 2.0

__all__ = ["Unreachable", "call", "wait_healthy"]  # Unreachable lives in base, with its tree


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
    """Poll ``GET /healthz`` until ``{"ok": true}``; ``ERR_HEALTH`` (with the log tail) otherwise."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        if not handle.alive():
            raise AdapterError(
                ErrorCode.ERR_HEALTH,
                "the processor exited before it became healthy",
                logs_tail=_tail(handle),
            )
        try:
            response = handle.client.get("/healthz", timeout=2.0)
            if response.status_code == 200 and response.json() == {"ok": True}:
                return
            last = f"HTTP {response.status_code}"
        except (httpx.HTTPError, ValueError) as exc:
            last = type(exc).__name__
        if time.monotonic() >= deadline:
            raise AdapterError(
                ErrorCode.ERR_HEALTH,
                f"not healthy within {timeout_s:g}s ({last})",
                logs_tail=_tail(handle),
            )
        time.sleep(HEALTH_POLL_S)


def call(
    handle: ProcessorHandle,
    invocation: Invocation,
    *,
    timeout_s: float | None,
    expected_digest: str | None,
    on_event: OnEvent | None = None,
) -> dict[str, Any]:
    """Post the payload and return the checked envelope; raises ``AdapterError``.

    ``timeout_s`` bounds the whole call; ``None`` gives the processor its
    ``runtime.timeout_s`` plus a grace to answer ERR_TIMEOUT itself.
    """
    timeout_s = float(timeout_s or invocation.spec.timeout_s + TIMEOUT_GRACE_S)
    timeout = httpx.Timeout(timeout_s, connect=10.0)
    try:
        if invocation.stream:
            status, envelope = None, _stream(handle, invocation, timeout, on_event)
        else:
            response = handle.client.post("/run", json=invocation.payload, timeout=timeout)
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
            ErrorCode.ERR_TIMEOUT, f"no answer within {timeout_s:g}s", logs_tail=_tail(handle)
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
    timeout: httpx.Timeout,
    on_event: OnEvent | None,
) -> Any:
    done: Any = None
    with connect_sse(
        handle.client, "POST", "/run-stream", json=invocation.payload, timeout=timeout
    ) as source:
        if source.response.status_code != 200:
            raise AdapterError(
                ErrorCode.ERR_ADAPTER_INVOCATION,
                f"/run-stream answered HTTP {source.response.status_code}",
                logs_tail=_tail(handle),
            )
        try:
            for sse in source.iter_sse():
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
        except SSEError as exc:
            raise AdapterError(
                ErrorCode.ERR_ADAPTER_INVOCATION,
                f"not an event stream ({exc})",
                logs_tail=_tail(handle),
            ) from None
    if done is None:
        raise AdapterError(
            ErrorCode.ERR_ENVELOPE_INVALID,
            "the stream ended without a done event",
            logs_tail=_tail(handle),
        )
    return done
