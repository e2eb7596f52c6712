"""The OpenAPI 3.2 document every processor serves at ``/openapi.json``.

Built from the contract's schemas with the processor's registry ``inputs``
schema spliced into the payload, so fuzzers generate payloads the processor
could accept as well as every way to get them wrong. It says what SPEC.md says
and no more, in the form schemathesis 4 validates: every refusal's status with
the error envelope (SPEC §4), and ``/run-stream`` as OpenAPI 3.2 describes an
event stream: ``itemSchema`` for one event (its ``data`` a JSON string whose
``contentSchema`` is the event's payload, from ``sse_event.json``) and
``schema`` for the whole stream, read as a list of events (exactly one ``done``).
"""

from __future__ import annotations

import copy
from typing import Any

from pytest_theory.contracts.errors import PAYLOAD_STATUSES, PROCESSOR_STATUS
from pytest_theory.contracts.schemas import BASE_URI, load_schema

_DROP = ("$schema", "$id", "title", "definitions")


def bundled_schema(name: str) -> dict[str, Any]:
    """Schema ``name`` with every cross-file ``$ref`` inlined and draft keywords dropped."""
    return _inline(copy.deepcopy(load_schema(name)), load_schema(name))


def _inline(node: Any, document: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(item, document) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        target_file, _, pointer = ref.removeprefix(BASE_URI).partition("#")
        target_doc = load_schema(target_file.removesuffix(".json")) if target_file else document
        target: Any = target_doc
        for part in filter(None, pointer.split("/")):
            target = target[part]
        return _inline(copy.deepcopy(target), target_doc)
    return {k: _inline(v, document) for k, v in node.items() if k not in _DROP}


def payload_schema(inputs_schema: dict[str, Any], ref: str | None = None) -> dict[str, Any]:
    """The payload schema with ``inputs`` from the registry and, given ``ref``, that ref only
    (SPEC §2: the payload names the processor it is sent to)."""
    schema = bundled_schema("payload")
    if ref is not None:
        schema["properties"]["ref"] = {"const": ref}
    inputs = {k: v for k, v in copy.deepcopy(inputs_schema).items() if k != "$schema"}
    schema["properties"]["inputs"] = inputs
    # SPEC §1: a `.` or `..` segment is refused, and the id becomes a segment of the prefix.
    schema["properties"]["execution_id"]["not"] = {"enum": [".", ".."]}
    schema["properties"]["write_prefix"] = {
        "type": "string",
        "pattern": r"^/artifacts/([a-z0-9_-]+/)*\{execution_id\}/$",
    }
    return schema


def _json_string(schema: Any) -> dict[str, Any]:
    """An SSE ``data`` field: a string holding JSON that ``schema`` describes."""
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


def sse_item_schema() -> dict[str, Any]:
    """One event of ``/run-stream`` as schemathesis parses it (``event``, ``data``, maybe
    ``id``/``retry``): ``sse_event.json``'s two kinds, each ``data`` read as a JSON string.

    if/then rather than oneOf, so a bad ``done`` is reported by what its envelope lacks.
    """
    streamed, done = bundled_schema("sse_event")["oneOf"]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["event", "data"],
        "properties": {
            "event": {"enum": [*streamed["properties"]["event"]["enum"], "done"]},
            "data": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
        "if": {"properties": {"event": done["properties"]["event"]}},
        "then": {"properties": {"data": _json_string(done["properties"]["data"])}},
        "else": {"properties": {"data": _json_string(streamed["properties"]["data"])}},
    }


#: The whole stream, as a list of events: exactly one ``done`` (SPEC §2). That it comes
#: last is the suite's check; JSON Schema cannot point at an array's last item.
SSE_STREAM_SCHEMA: dict[str, Any] = {
    "type": "array",
    "contains": {
        "type": "object",
        "required": ["event"],
        "properties": {"event": {"const": "done"}},
    },
    "minContains": 1,
    "maxContains": 1,
}


def openapi_document(
    *, title: str, version: str, inputs_schema: dict[str, Any], ref: str | None = None
) -> dict[str, Any]:
    """The processor's OpenAPI document: ``/healthz``, ``/run`` and ``/run-stream``.

    ``ref``, when given, is the only ``ref`` the payload may name.
    """
    envelope_error = {"application/json": {"schema": bundled_schema("envelope_error")}}
    error_statuses = sorted(set(PROCESSOR_STATUS.values()) | PAYLOAD_STATUSES)
    body = {
        "required": True,
        "content": {"application/json": {"schema": payload_schema(inputs_schema, ref)}},
    }
    run_responses: dict[str, Any] = {
        "200": {
            "description": "Success envelope",
            "content": {"application/json": {"schema": bundled_schema("envelope_success")}},
        },
        **{
            str(s): {"description": "Error envelope", "content": envelope_error}
            for s in error_statuses
        },
    }
    stream_responses = {
        "200": {
            "description": (
                "progress/log/token events with JSON data, then one `done` whose data is the "
                "envelope /run would return; refusals too end in `done` with an error envelope"
            ),
            "content": {
                "text/event-stream": {"itemSchema": sse_item_schema(), "schema": SSE_STREAM_SCHEMA}
            },
        }
    }
    return {
        "openapi": "3.2.0",
        "info": {"title": title, "version": version},
        "paths": {
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "responses": {
                        "200": {
                            "description": "Alive",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["ok"],
                                        "properties": {"ok": {"const": True}},
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/run": {
                "post": {"operationId": "run", "requestBody": body, "responses": run_responses}
            },
            "/run-stream": {
                "post": {
                    "operationId": "run_stream",
                    "requestBody": body,
                    "responses": stream_responses,
                }
            },
        },
    }
