"""Driving one booted processor: valid payloads, raw HTTP calls, and what a run wrote.

Checks talk HTTP directly (they need status codes and raw bodies), every
exchange recorded for the failure report (``pytest_theory.replay``);
``invoke`` goes through the adapter as a control plane would.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder

from pytest_theory.adapters.base import Adapter, ProcessorHandle, invoke_kwargs
from pytest_theory.adapters.http import MAX_ENVELOPE_BYTES, MAX_STREAM_BYTES, TIMEOUT_GRACE_S
from pytest_theory.contracts import canonical_json, schemas
from pytest_theory.contracts.worldpath import determinism_receipt_path, expand_write_prefix
from pytest_theory.registry import ProcessorSpec
from pytest_theory.replay import Recorder

T = TypeVar("T")
PREFIX = "/artifacts/theory/{execution_id}/"
#: The drivers a test used, on its item's stash (for failure reports).
DRIVERS = pytest.StashKey[list["Driver"]]()
LOG_SETTLE_S = 10.0  # how long the lines of a run may take to reach the log collector


def observed(value: T | None, what: str) -> T:
    """``value``, or skip the check: ``None`` means this adapter cannot observe ``what``."""
    if value is None:
        pytest.skip(f"{what} is not observable through this adapter")
    return value


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
    """Calls to one processor, every exchange recorded for failure reports."""

    def __init__(
        self,
        handle: ProcessorHandle,
        spec: ProcessorSpec,
        *,
        mode: str = "mock",
        world: Path | None = None,
        adapter: Adapter | None = None,
        adapter_opts: Mapping[str, Any] | None = None,
    ):
        self.handle = handle
        self.spec = spec
        self.mode = mode
        self.world = world
        self.adapter = adapter
        self.adapter_opts = dict(adapter_opts or {})
        self.recorder = Recorder(handle.client)
        #: Payloads sent through the adapter (``invoke``), for failure reports.
        self.invoked: list[dict[str, Any]] = []

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

    def get(self, path: str) -> httpx.Response:
        """``GET path``, recorded."""
        return self.recorder.send("GET", path, deadline_s=self.deadline_s)

    def _post(
        self, path: str, payload: Any, content: bytes | None, headers: dict[str, str] | None
    ) -> httpx.Response:
        if content is None:
            content = json.dumps(payload).encode()
            headers = {"content-type": "application/json", **(headers or {})}
        # A total deadline and a size cap on the answer (adapters.http), not a per-read timeout.
        return self.recorder.send(
            "POST",
            path,
            content=content,
            headers=headers or {},
            deadline_s=self.deadline_s,
            limit=MAX_STREAM_BYTES if path == "/run-stream" else MAX_ENVELOPE_BYTES,
        )

    @property
    def deadline_s(self) -> float:
        """How long one exchange may take in all: ``runtime.timeout_s`` plus the adapters' grace."""
        return float(self.spec.timeout_s) + float(TIMEOUT_GRACE_S)

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

    def invoke(self, **overrides: Any) -> dict[str, Any]:
        """One call through the adapter, as a control plane makes it (SPEC section 8)."""
        if self.adapter is None:
            raise RuntimeError("this driver has no adapter to invoke through")
        payload = self.payload()
        kwargs = invoke_kwargs(
            self.spec,
            execution_id=payload["execution_id"],
            inputs=payload["inputs"],
            mode=payload["mode"],
            write_prefix=payload["write_prefix"],
            adapter_opts=self.adapter_opts,
        )
        opts = overrides.pop("adapter_opts", {})
        kwargs.update(overrides)
        kwargs["adapter_opts"] = {**self.adapter_opts, **opts}
        self.invoked.append({k: v for k, v in kwargs.items() if k != "registry_snapshot"})
        return self.adapter.invoke(**kwargs)

    def execution_ids(self) -> set[str]:
        """The execution ids this driver's exchanges and invokes named."""
        return self.recorder.execution_ids() | {str(i["execution_id"]) for i in self.invoked}

    def settled_stderr(self, runs: Sequence[Run]) -> str:
        """The processor's stderr once each run's last line (settle or error) is in it.

        The log collector may hand over a run's last lines a moment after its answer;
        past ``LOG_SETTLE_S`` the text is returned as it is, for the check to judge.
        Skips the check when this adapter cannot observe stderr.
        """
        deadline = time.monotonic() + LOG_SETTLE_S
        while True:
            stderr = observed(self.handle.stderr(), "the processor's stderr")
            settled = {
                r.get("execution_id")
                for r in records(stderr)
                if r.get("event") in ("http.run.settle", "http.run.error")
            }
            if all(run.execution_id in settled for run in runs) or time.monotonic() > deadline:
                return stderr
            time.sleep(0.05)

    def world_files(self) -> dict[str, int]:
        """Every file in the world now (world path -> size), to see what a run added."""
        if self.world is None:
            return {}
        return {
            "/" + str(p.relative_to(self.world)): p.stat().st_size
            for p in self.world.rglob("*")
            if p.is_file()
        }


def records(stderr: str) -> list[dict[str, Any]]:
    """The JSON object lines of ``stderr`` (others skipped: ``assert_ndjson_logs`` judges them)."""
    found = []
    for line in stderr.split("\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found
