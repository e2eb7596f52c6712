"""Fuzzing a processor: schemathesis cases from its own ``/openapi.json``, and inputs
generated from its registry ``inputs`` schema (hypothesis-jsonschema).

Cases are sent through the processor handle's client, so the same fuzzing runs
against a container, an in-process app or a Modal endpoint. ``mode: real`` is
turned into ``mock``: fuzzing must never reach a provider.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core import NotSet
from schemathesis.generation import GenerationMode

from adapters.base import ProcessorHandle
from contracts import problems
from contracts.errors import is_valid_status
from pytest_theory.asserts import assert_envelope
from pytest_theory.driver import parse_sse

#: ``check(case, response)``: raise AssertionError to report a failing case.
Check = Callable[["FuzzCase", httpx.Response], None]


@dataclass(frozen=True)
class FuzzCase:
    method: str
    path: str
    body: Any  # JSON value, raw bytes, or None
    media_type: str | None

    def reproduce(self, base_url: str) -> str:
        """A curl command that replays the case."""
        if self.body is None:
            return f"curl -X {self.method} {base_url}{self.path}"
        data = (
            self.body.decode("latin-1") if isinstance(self.body, bytes) else json.dumps(self.body)
        )
        if len(data) > 2000:
            data = data[:2000] + "…"
        return (
            f"curl -X {self.method} {base_url}{self.path} "
            f"-H 'Content-Type: {self.media_type}' --data-raw {json.dumps(data)}"
        )


def check_run_answer(case: FuzzCase, response: httpx.Response) -> None:
    """/run: never a 5xx; always a valid envelope whose status goes with its HTTP status."""
    assert response.status_code < 500, f"HTTP {response.status_code}: {response.text[:300]}"
    envelope = response.json()
    assert_envelope(envelope)
    if envelope["status"] == "error":
        assert is_valid_status(envelope["error"]["code"], response.status_code), (
            f"HTTP {response.status_code} does not go with {envelope['error']['code']}"
        )
    else:
        assert response.status_code == 200


def check_stream_answer(case: FuzzCase, response: httpx.Response) -> None:
    """/run-stream: HTTP 200 and events ending in exactly one ``done`` carrying an envelope."""
    assert response.status_code == 200, f"/run-stream answered HTTP {response.status_code}"
    events = parse_sse(response.text)
    names = [e.event for e in events]
    assert names and names[-1] == "done" and names.count("done") == 1, f"events: {names}"
    envelope = json.loads(events[-1].data)
    assert not problems("envelope", envelope), problems("envelope", envelope)


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )


def to_mock(body: Any) -> Any:
    if isinstance(body, dict) and body.get("mode") == "real":
        return {**body, "mode": "mock"}
    return body


def fuzz_endpoint(
    handle: ProcessorHandle, method: str, path: str, examples: int, check: Check
) -> int:
    """Send ``examples`` positive and negative cases to ``method path``; returns how many were sent."""
    document = handle.client.get("/openapi.json", timeout=30).json()
    operation = schemathesis.openapi.from_dict(document)[path][method.upper()]
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    sent = 0

    @fuzz_settings(examples)
    @given(case=strategy)
    def send(case: Any) -> None:
        nonlocal sent
        body = None if isinstance(case.body, NotSet) else to_mock(case.body)
        fuzz_case = FuzzCase(method.upper(), path, body, case.media_type)
        kwargs: dict[str, Any] = {"timeout": 60}
        if isinstance(body, bytes):
            kwargs.update(
                content=body, headers={"content-type": case.media_type or "application/json"}
            )
        elif body is not None:
            kwargs.update(
                content=json.dumps(body).encode(),
                headers={"content-type": case.media_type or "application/json"},
            )
        response = handle.client.request(method.upper(), path, **kwargs)
        sent += 1
        try:
            check(fuzz_case, response)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nreproduce: {fuzz_case.reproduce(handle.base_url)}"
            ) from None

    send()
    return sent


def property_run(
    schema: dict[str, Any], examples: int, run: Callable[[dict[str, Any]], None]
) -> None:
    """Call ``run(inputs)`` for inputs generated from a registry ``inputs`` schema."""
    from hypothesis_jsonschema import from_schema

    @fuzz_settings(examples)
    @given(inputs=from_schema(schema))
    def each(inputs: dict[str, Any]) -> None:
        run(inputs)

    each()
