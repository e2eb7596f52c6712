"""Driving one booted processor: valid payloads, raw HTTP calls, and what a run wrote.

Checks talk HTTP directly (they need status codes and raw bodies); ``invoke``
goes through the adapter as a control plane would.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder

from pytest_theory.adapters.base import ProcessorHandle
from pytest_theory.contracts import canonical_json, schemas
from pytest_theory.contracts.worldpath import determinism_receipt_path, expand_write_prefix
from pytest_theory.registry import ProcessorSpec

PREFIX = "/artifacts/theory/{execution_id}/"
#: The drivers a test used, on its item's stash (for failure reports).
DRIVERS = pytest.StashKey[list["Driver"]]()
HTTP_TIMEOUT = httpx.Timeout(120.0, connect=10.0)


#: Generated example inputs by schema (canonical JSON): drawn once per process.
_GENERATED: dict[bytes, dict[str, Any]] = {}


def example_inputs(spec: ProcessorSpec, cache: Any = None) -> dict[str, Any]:
    """The registry's first valid ``examples`` entry, else one value generated from the schema.

    Generated once (derandomized, no shrinking search) and kept for the process, and in
    ``cache`` (pytest's, like the fuzz cases) when one is given.
    """
    schema = spec.inputs_schema
    for example in schema.get("examples", []):
        if schemas.inputs_validator(schema).is_valid(example):
            return dict(example)
    key = canonical_json(schema)
    if key not in _GENERATED:
        from pytest_theory.fuzz import cached_cases  # fuzz imports this module

        found = cached_cases(cache, "example", [schema], lambda: [_generate(schema)])
        _GENERATED[key] = found[0]
    return dict(_GENERATED[key])


def _generate(schema: dict[str, Any]) -> dict[str, Any]:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis_jsonschema import from_schema

    found: list[dict[str, Any]] = []

    @settings(
        max_examples=50,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(value=from_schema(schema))
    def first(value: Any) -> None:
        if isinstance(value, dict) and not found:
            found.append(value)

    first()
    if not found:
        raise AssertionError("no object value could be generated from the registry inputs schema")
    return found[0]


def parse_sse(text: str) -> list[ServerSentEvent]:
    """Events of an SSE body (httpx-sse's decoder), including one not closed by a blank line.

    Lines end in CRLF, CR or LF, as the SSE specification says (not at every Unicode separator).
    """
    decoder = SSEDecoder()
    events = [decoder.decode(line) for line in [*re.split(r"\r\n|\r|\n", text), ""]]
    return [e for e in events if e is not None]


@dataclass
class Run:
    """One answer of the processor, and access to what it wrote in the world."""

    payload: Any
    status: int
    text: str
    world: Path | None
    headers: dict[str, str] = field(default_factory=dict)
    events: list[ServerSentEvent] | None = None

    @cached_property
    def envelope(self) -> Any:
        """The envelope: the JSON body, or the data of a stream's last ``done`` event."""
        if self.events is not None:
            done = [e for e in self.events if e.event == "done"]
            return json.loads(done[-1].data) if done else None
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    @property
    def execution_id(self) -> str:
        return str(self.payload["execution_id"])

    @property
    def prefix(self) -> str:
        return expand_write_prefix(self.payload["write_prefix"], self.payload["execution_id"])

    def host_path(self, world_path: str) -> Path:
        if self.world is None:
            raise LookupError("this processor's world is not visible from here")
        return self.world / world_path.lstrip("/")

    def read(self, world_path: str) -> bytes:
        return self.host_path(world_path).read_bytes()

    def exists(self, world_path: str) -> bool:
        return self.host_path(world_path).is_file()

    @property
    def index_bytes(self) -> bytes:
        return self.read(self.prefix + "outputs.json")

    @property
    def receipt(self) -> Any:
        return json.loads(self.read(self.prefix + "receipt.json"))

    @property
    def determinism(self) -> Any:
        return json.loads(self.read(determinism_receipt_path(self.execution_id)))


class Driver:
    """Calls to one processor, remembering the last payload for failure reports."""

    def __init__(
        self,
        handle: ProcessorHandle,
        spec: ProcessorSpec,
        *,
        mode: str = "mock",
        world: Path | None = None,
    ):
        self.handle = handle
        self.spec = spec
        self.mode = mode
        self.world = world
        self.last_payload: Any = None

    def payload(self, **overrides: Any) -> dict[str, Any]:
        """A valid payload for this processor, with a fresh execution id and ``overrides``."""
        execution_id = overrides.pop("execution_id", f"t-{uuid.uuid4().hex[:16]}")
        body: dict[str, Any] = {
            "schema": "v1",
            "execution_id": execution_id,
            "ref": str(self.spec.ref),
            "mode": self.mode,
            "inputs": example_inputs(self.spec),
            "write_prefix": PREFIX,
            "meta": {"trace_id": f"trace-{execution_id}"},
        }
        body.update(overrides)
        return body

    def _post(
        self, path: str, payload: Any, content: bytes | None, headers: dict[str, str] | None
    ) -> httpx.Response:
        self.last_payload = payload if content is None else f"<{len(content)} raw bytes>"
        if content is not None:
            return self.handle.client.post(
                path, content=content, headers=headers or {}, timeout=HTTP_TIMEOUT
            )
        return self.handle.client.post(
            path, json=payload, headers=headers or {}, timeout=HTTP_TIMEOUT
        )

    def run(
        self,
        payload: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Run:
        """``POST /run`` (a valid payload when none is given)."""
        if payload is None and content is None:
            payload = self.payload()
        response = self._post("/run", payload, content, headers)
        return Run(payload, response.status_code, response.text, self.world, dict(response.headers))

    def stream(
        self,
        payload: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Run:
        """``POST /run-stream``, its events parsed."""
        if payload is None and content is None:
            payload = self.payload()
        response = self._post("/run-stream", payload, content, headers)
        return Run(
            payload,
            response.status_code,
            response.text,
            self.world,
            dict(response.headers),
            events=parse_sse(response.text),
        )

    def world_files(self) -> dict[str, int]:
        """Every file in the world now (world path -> size), to see what a run added."""
        if self.world is None:
            return {}
        return {
            "/" + str(p.relative_to(self.world)): p.stat().st_size
            for p in self.world.rglob("*")
            if p.is_file()
        }
