"""A corpus of bad payloads, each with the one canonical error it must get.

Two kinds: *wire* cases are raw bodies (and content types) only an HTTP client
can send; *field* cases are a good payload with one field spoiled, which a
caller can also make through ``invoke(...)``, so they run through every adapter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_theory.contracts.errors import PROCESSOR_STATUS, ErrorCode

GOOD_PREFIX = "/artifacts/reliability/{execution_id}/"
PLACEHOLDER = "{execution_id}"
MAX_BODY_BYTES = 2 * 1024 * 1024  # the runtime's default THEORY_MAX_BODY_BYTES
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data; boundary=x"


def good_payload(ref: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "v1",
        "execution_id": "rel-1",
        "ref": ref,
        "mode": "mock",
        "inputs": inputs,
        "write_prefix": GOOD_PREFIX,
    }


@dataclass(frozen=True)
class Bad:
    """One bad request: ``body(good_payload)`` gives its bytes; the answer must be ``code``."""

    name: str
    code: ErrorCode
    body: Callable[[dict[str, Any]], bytes]
    content_type: str | None = "application/json"
    status: int = 0
    #: For field cases: the spoiled ``invoke`` keyword arguments.
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def http_status(self) -> int:
        return self.status or PROCESSOR_STATUS[self.code]


def _raw(data: bytes) -> Callable[[dict[str, Any]], bytes]:
    return lambda good: data


def _json(value: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda good: json.dumps(value).encode()


def _with(**changes: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda good: json.dumps({**good, **changes}).encode()


def _without(name: str) -> Callable[[dict[str, Any]], bytes]:
    return lambda good: json.dumps({k: v for k, v in good.items() if k != name}).encode()


def _nested(depth: int) -> Callable[[dict[str, Any]], bytes]:
    def body(good: dict[str, Any]) -> bytes:
        deep = "[" * depth + "]" * depth
        return json.dumps({**good, "inputs": "X"}).replace('"X"', deep).encode()

    return body


PAYLOAD, MODE, PREFIX, INPUTS = (
    ErrorCode.ERR_PAYLOAD,
    ErrorCode.ERR_MODE,
    ErrorCode.ERR_WRITE_PREFIX,
    ErrorCode.ERR_INPUTS,
)

WIRE: list[Bad] = [
    Bad("empty body", PAYLOAD, _raw(b"")),
    Bad("not JSON", PAYLOAD, _raw(b"nope")),
    Bad("truncated JSON", PAYLOAD, _raw(b'{"schema": "v1", "execution_id": ')),
    Bad("invalid UTF-8", PAYLOAD, _raw(b'{"schema": "\xff\xfe\xfd"}')),
    Bad("UTF-16 body", PAYLOAD, lambda good: json.dumps(good).encode("utf-16")),
    Bad(
        "NaN in the body",
        PAYLOAD,
        lambda good: json.dumps({**good, "meta": {"x": float("nan")}}).encode(),
    ),
    Bad("JSON array", PAYLOAD, _json([])),
    Bad("JSON string", PAYLOAD, _json("run")),
    Bad("JSON null", PAYLOAD, _json(None)),
    Bad("JSON number", PAYLOAD, _json(42)),
    Bad("nested 100k deep", PAYLOAD, _nested(100_000)),
    Bad("huge body", PAYLOAD, _with(meta={"pad": "x" * (MAX_BODY_BYTES + 1)}), status=413),
    Bad("text/plain", PAYLOAD, _with(), content_type="text/plain", status=415),
    Bad("no content type", PAYLOAD, _with(), content_type=None, status=415),
    Bad("form encoded", PAYLOAD, _raw(b"mode=mock"), content_type=FORM, status=415),
    Bad("multipart", PAYLOAD, _raw(b"--x\r\n\r\n--x--"), content_type=MULTIPART, status=415),
    Bad("missing schema", PAYLOAD, _without("schema")),
    Bad("schema v2", PAYLOAD, _with(schema="v2")),
    Bad("missing execution_id", PAYLOAD, _without("execution_id")),
    Bad("missing ref", PAYLOAD, _without("ref")),
    Bad("ref not a ref", PAYLOAD, _with(ref="litellm")),
    Bad("ref a number", PAYLOAD, _with(ref=1)),
    Bad("ref of another processor", PAYLOAD, _with(ref="other/thing@1")),
    Bad("missing mode", PAYLOAD, _without("mode")),
    Bad("missing inputs", PAYLOAD, _without("inputs")),
    Bad("missing write_prefix", PAYLOAD, _without("write_prefix")),
    Bad("unknown field", PAYLOAD, _with(wirte_prefix=GOOD_PREFIX)),
    Bad("meta a list", PAYLOAD, _with(meta=[])),
    Bad("trace_id too long", PAYLOAD, _with(meta={"trace_id": "t" * 300})),
]


def _field(name: str, code: ErrorCode, **fields: Any) -> Bad:
    """A good payload with ``fields`` replaced (payload field names, as ``invoke`` takes them)."""
    payload_fields = {
        {"inputs_json": "inputs"}.get(key, key): value for key, value in fields.items()
    }
    return Bad(name, code, _with(**payload_fields), fields=fields)


def field_cases(inputs: dict[str, Any]) -> list[Bad]:
    return [
        _field("execution_id a number", PAYLOAD, execution_id=42),
        _field("execution_id empty", PAYLOAD, execution_id=""),
        _field("execution_id '..'", PAYLOAD, execution_id=".."),
        _field("execution_id with a slash", PAYLOAD, execution_id="a/b"),
        _field("execution_id traversal", PAYLOAD, execution_id="../../etc"),
        _field("execution_id 129 chars", PAYLOAD, execution_id="e" * 129),
        _field("execution_id with NUL", PAYLOAD, execution_id="e\x00"),
        _field("inputs a list", PAYLOAD, inputs_json=[inputs]),
        _field("inputs a string", PAYLOAD, inputs_json="hello"),
        _field("write_prefix a number", PAYLOAD, write_prefix=5),
        _field("write_prefix empty", PAYLOAD, write_prefix=""),
        _field("mode smoke", MODE, mode="smoke"),
        _field("mode MOCK", MODE, mode="MOCK"),
        _field("mode a number", MODE, mode=1),
        _field("mode null", MODE, mode=None),
        _field("prefix without placeholder", PREFIX, write_prefix="/artifacts/x/"),
        _field("prefix without trailing slash", PREFIX, write_prefix="/artifacts/{execution_id}"),
        _field("prefix relative", PREFIX, write_prefix="artifacts/{execution_id}/"),
        _field("prefix the artifacts root", PREFIX, write_prefix="/artifacts/"),
        _field("prefix in /plan", PREFIX, write_prefix="/plan/{execution_id}/"),
        _field("prefix in /etc", PREFIX, write_prefix="/etc/{execution_id}/"),
        _field("prefix with ..", PREFIX, write_prefix="/artifacts/../etc/{execution_id}/"),
        _field("prefix with %2e%2e", PREFIX, write_prefix="/artifacts/%2e%2e/{execution_id}/"),
        _field(
            "prefix with %2E%2e", PREFIX, write_prefix="/artifacts/x/%2E%2e/%2e%2E/{execution_id}/"
        ),
        _field(
            "prefix with %252e%252e", PREFIX, write_prefix="/artifacts/%252e%252e/{execution_id}/"
        ),
        _field("prefix with %2f", PREFIX, write_prefix="/artifacts/a%2fb/{execution_id}/"),
        _field("prefix with %5c", PREFIX, write_prefix="/artifacts/a%5cb/{execution_id}/"),
        _field(
            "prefix with a backslash", PREFIX, write_prefix="/artifacts/a\\..\\b/{execution_id}/"
        ),
        _field("prefix with NUL", PREFIX, write_prefix="/artifacts/a\x00b/{execution_id}/"),
        _field("prefix with %00", PREFIX, write_prefix="/artifacts/a%00/{execution_id}/"),
        _field(
            "prefix with fullwidth dots",
            PREFIX,
            write_prefix="/artifacts/\uff0e\uff0e/{execution_id}/",
        ),
        _field(
            "prefix with fullwidth slash",
            PREFIX,
            write_prefix="/artifacts/a\uff0fb/{execution_id}/",
        ),
        _field(
            "prefix with one-dot leader", PREFIX, write_prefix="/artifacts/\u2025/{execution_id}/"
        ),
        _field("prefix with invalid %", PREFIX, write_prefix="/artifacts/%zz/{execution_id}/"),
        _field("prefix with %ff", PREFIX, write_prefix="/artifacts/%ff/{execution_id}/"),
        _field(
            "prefix segment of 256 bytes",
            PREFIX,
            write_prefix=f"/artifacts/{'a' * 256}/{PLACEHOLDER}/",
        ),
        _field(
            "prefix over 4096 bytes",
            PREFIX,
            write_prefix=f"/artifacts/{PLACEHOLDER}/" + "ab/" * 1400,
        ),
        _field("inputs empty", INPUTS, inputs_json={}),
        _field("inputs schema v9", INPUTS, inputs_json={**inputs, "schema": "v9"}),
        _field("inputs unknown field", INPUTS, inputs_json={**inputs, "surprise": True}),
        _field("inputs params a list", INPUTS, inputs_json={**inputs, "params": []}),
    ]


def corpus(inputs: dict[str, Any]) -> list[Bad]:
    """Every bad request for a processor whose good inputs are ``inputs``."""
    return [*WIRE, *field_cases(inputs)]
