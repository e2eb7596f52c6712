"""Fuzzing a processor: schemathesis cases from its own ``/openapi.json``, and inputs
generated from its registry ``inputs`` schema (hypothesis-jsonschema).

Cases are sent through the processor handle's client, so the same fuzzing runs
against a container, an in-process app or a Modal endpoint. ``mode: real`` is
turned into ``mock``: fuzzing must never reach a provider.

Cases come from ``processor_schema``: the processor's document read with the
schemathesis configuration shipped beside this module (``schemathesis.toml``), the
same schema and configuration the ``theory_schema`` fixture gives a user's
schemathesis tests and the ``st run`` recipe passes to schemathesis' CLI.

Generation is derandomized, so the cases for one schema are always the same; they
are generated once and kept in pytest's cache (``.pytest_cache``, cleared by
``--cache-clear``), keyed by the schema, the example count and the generators'
versions. Drawing them cost far more than sending them.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NotSet
from schemathesis.generation import GenerationMode

from pytest_theory.adapters.base import ProcessorHandle
from pytest_theory.asserts import assert_canonical_error, assert_envelope, assert_stream
from pytest_theory.contracts import canonical_json, cid_of_bytes
from pytest_theory.contracts.hashing import CID_PREFIX
from pytest_theory.driver import Driver, Run, parse_sse
from pytest_theory.replay import Recorder, reproduction

#: SPEC.md's choices where they differ from schemathesis' defaults (each cites SPEC.md).
SCHEMATHESIS_CONFIG = Path(__file__).resolve().with_name("schemathesis.toml")

#: ``check(case, response)``: raise AssertionError to report a failing case.
Check = Callable[["FuzzCase", httpx.Response], None]


@dataclass(frozen=True)
class FuzzCase:
    method: str
    path: str
    body: Any  # JSON value, raw bytes, or None
    media_type: str | None

    def as_run(self, response: httpx.Response) -> Run:
        """The answer as a ``Run``, for the assertion helpers."""
        return Run(
            self.body,
            response.status_code,
            response.text,
            None,
            dict(response.headers),
            events=parse_sse(response.text) if self.path == "/run-stream" else None,
        )


def check_run_answer(case: FuzzCase, response: httpx.Response) -> None:
    """/run: never a 5xx; always a valid envelope whose status goes with its HTTP status."""
    assert response.status_code < 500, f"HTTP {response.status_code}: {response.text[:300]}"
    run = case.as_run(response)
    envelope = assert_envelope(run.envelope)
    if envelope["status"] == "error":
        assert_canonical_error(run)
    else:
        assert response.status_code == 200, f"HTTP {response.status_code} with a success"


def check_stream_answer(case: FuzzCase, response: httpx.Response) -> None:
    """/run-stream: HTTP 200 and events ending in exactly one ``done`` carrying an envelope."""
    assert_stream(case.as_run(response))


def schemathesis_config(base_url: str | None = None) -> SchemathesisConfig:
    """The shipped configuration (never a ``schemathesis.toml`` found in the working
    directory), bound to ``base_url`` when given."""
    config = SchemathesisConfig.from_path(SCHEMATHESIS_CONFIG)
    if base_url is not None:
        config.projects.override.update(base_url=base_url)
    return config


def processor_schema(document: dict[str, Any], base_url: str | None = None) -> Any:
    """The processor's ``/openapi.json`` as a schemathesis schema with the shipped configuration."""
    return schemathesis.openapi.from_dict(document, config=schemathesis_config(base_url))


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


class CaseCache(Protocol):
    """What the cases are kept in: ``pytest.Cache`` (``config.cache``) fits."""

    def get(self, key: str, default: Any) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


def cached_cases(
    cache: CaseCache | None,
    kind: str,
    material: Any,
    generate: Callable[[], list[Any]],
) -> list[Any]:
    """The JSON cases ``generate()`` gives for ``material``, drawn once per cache."""
    packages = ("hypothesis", "hypothesis-jsonschema", "schemathesis")
    key_text = canonical_json([material, {name: version(name) for name in packages}])
    key = f"theory/{kind}/{cid_of_bytes(key_text).removeprefix(CID_PREFIX)[:20]}"
    if cache is not None:
        hit = cache.get(key, None)
        if isinstance(hit, list):
            return hit
    cases = generate()
    if cache is not None:
        cache.set(key, cases)
    return cases


def draw(strategy: st.SearchStrategy[Any], examples: int) -> list[Any]:
    """What ``examples`` derandomized draws of ``strategy`` give, in order."""
    drawn: list[Any] = []

    @fuzz_settings(examples)
    @given(value=strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


def _as_request(case: Any) -> dict[str, Any]:
    """A schemathesis case as JSON: its body (or raw bytes, base64) and media type."""
    body = None if isinstance(case.body, NotSet) else to_mock(case.body)
    request: dict[str, Any] = {"media_type": case.media_type}
    if isinstance(body, bytes):
        request["raw"] = base64.b64encode(body).decode()
    elif body is not None:
        request["body"] = body
    return request


def _draw_requests(operation: Any, examples: int) -> list[dict[str, Any]]:
    """Positive and negative schemathesis cases of ``operation``, as JSON."""
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    return [_as_request(case) for case in draw(strategy, examples)]


def fuzz_endpoint(
    target: Driver | ProcessorHandle,
    method: str,
    path: str,
    examples: int,
    check: Check,
    cache: CaseCache | None = None,
) -> int:
    """Send ``examples`` positive and negative cases to ``method path``; returns how many were sent.

    Through a ``Driver``, a failing case stays its only recorded exchange, for the
    report's replay; through a bare handle, the replay is in the failure's message.
    """
    method = method.upper()
    handle = target.handle if isinstance(target, Driver) else target
    recorder = target.recorder if isinstance(target, Driver) else Recorder(handle.client)
    document = handle.client.get("/openapi.json", timeout=30).json()
    requests = cached_cases(
        cache,
        "openapi",
        [document, SCHEMATHESIS_CONFIG.read_text("utf-8"), method, path, examples],
        lambda: _draw_requests(processor_schema(document)[path][method], examples),
    )
    for request in requests:
        body = base64.b64decode(request["raw"]) if "raw" in request else request.get("body")
        case = FuzzCase(method, path, body, request["media_type"])
        content, headers = None, None
        if body is not None:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers = {"content-type": case.media_type or "application/json"}
        response = recorder.send(method, path, content=content, headers=headers, timeout=60)
        try:
            check(case, response)
        except AssertionError as exc:
            failing = recorder.exchanges[-1]
            recorder.keep_only(failing)
            if isinstance(target, Driver):
                raise AssertionError(f"{exc}\n(the failing case is replayed below)") from None
            folder = Path(tempfile.mkdtemp(prefix="theory-replay-"))
            replay = reproduction([failing], handle.launch(), handle.world_root, folder)
            raise AssertionError(f"{exc}\nreplay:\n{replay}") from None
    if isinstance(target, Driver):
        recorder.exchanges = recorder.exchanges[: -len(requests) or None]  # passing cases: noise
    return len(requests)


def property_run(
    schema: dict[str, Any],
    examples: int,
    run: Callable[[dict[str, Any]], None],
    cache: CaseCache | None = None,
) -> None:
    """Call ``run(inputs)`` for inputs generated from a registry ``inputs`` schema."""

    def draw_inputs() -> list[Any]:
        from hypothesis_jsonschema import from_schema

        return draw(from_schema(schema), examples)

    for inputs in cached_cases(cache, "inputs", [schema, examples], draw_inputs):
        run(inputs)
