"""The OpenAPI 3.1 document every processor serves at ``/openapi.json``.

Built from the contract's schemas with the processor's registry ``inputs``
schema spliced into the payload, so fuzzers generate payloads the processor
could accept as well as every way to get them wrong.
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


def payload_schema(inputs_schema: dict[str, Any]) -> dict[str, Any]:
    schema = bundled_schema("payload")
    inputs = {k: v for k, v in copy.deepcopy(inputs_schema).items() if k != "$schema"}
    schema["properties"]["inputs"] = inputs
    schema["properties"]["write_prefix"] = {
        "type": "string",
        "pattern": r"^/artifacts/([a-z0-9_-]+/)*\{execution_id\}/$",
    }
    return schema


def openapi_document(*, title: str, version: str, inputs_schema: dict[str, Any]) -> dict[str, Any]:
    """The processor's OpenAPI document: ``/healthz``, ``/run`` and ``/run-stream``."""
    envelope_error = {"application/json": {"schema": bundled_schema("envelope_error")}}
    error_statuses = sorted(set(PROCESSOR_STATUS.values()) | PAYLOAD_STATUSES)
    body = {
        "required": True,
        "content": {"application/json": {"schema": payload_schema(inputs_schema)}},
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
    return {
        "openapi": "3.1.0",
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
                    "responses": {
                        "200": {
                            "description": "progress/log/token events, then `done`",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
    }
