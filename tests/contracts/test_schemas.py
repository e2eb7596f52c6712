"""Every contract schema accepts its valid examples and refuses invalid ones."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import ValidationError

from pytest_theory.contracts import problems, schemas
from pytest_theory.contracts.errors import ErrorCode, error_envelope
from pytest_theory.contracts.openapi import (
    SSE_STREAM_SCHEMA,
    bundled_schema,
    openapi_document,
    payload_schema,
    sse_item_schema,
)
from tests.conftest import CID, DIGEST, payload
from tests.report import examples as report_examples

ENTRY = {"path": "/artifacts/o/e/outputs/a.txt", "cid": CID, "size_bytes": 3, "mime": "text/plain"}
SUCCESS = {
    "status": "success",
    "execution_id": "e-1",
    "outputs": [ENTRY],
    "index_path": "/artifacts/o/e/outputs.json",
    "meta": {"image_digest": DIGEST, "env_fingerprint": "cpu=1", "duration_ms": 12},
}
ERROR = error_envelope(
    "ERR_INPUTS",
    "inputs.params: fails required",
    execution_id="e-1",
    image_digest=DIGEST,
    env_fingerprint="cpu=1",
)
RECEIPT = {
    "execution_id": "e-1",
    "processor_ref": "llm/litellm@1",
    "image_digest": DIGEST,
    "env_fingerprint": "cpu=1",
    "mode": "mock",
    "inputs_hash": CID,
    "hash_schema": "blake3:canonical-json@1",
    "outputs_index": "/artifacts/o/e/outputs.json",
    "output_cids": [CID],
    "processor_info": "x",
    "usage": {},
    "timestamp_utc": "2026-01-02T03:04:05.678Z",
    "duration_ms": 4,
}
DETERMINISM = {
    "execution_id": "e-1",
    "processor_ref": "llm/litellm@1",
    "image_digest": DIGEST,
    "env_fingerprint": "cpu=1",
    "inputs_hash": CID,
    "memo_key": CID,
    "seed": 7,
    "output_cids": [CID],
}
REGISTRY = {
    "ref": "llm/litellm@1",
    "image": {"platforms": {"amd64": f"ghcr.io/o/r/llm@{DIGEST}"}, "default_platform": "amd64"},
    "build": {"context": ".", "dockerfile": "Dockerfile", "port": 8000},
    "runtime": {"cpu": "1", "memory_gb": 2, "timeout_s": 600, "gpu": None},
    "secrets": {"required": ["OPENAI_API_KEY"], "optional": []},
    "inputs": {"type": "object"},
    "outputs": [
        {"path": "text/response.txt", "mime": "text/plain", "description": "Main response"}
    ],
}


def changed(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``a.b.0.c`` set to ``value`` (deleted when it is DEL)."""
    out = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is DEL:
        del node[key]
    else:
        node[key] = value
    return out


DEL = object()

VALID = [
    ("payload", payload()),
    ("payload", changed(payload(), "meta", DEL)),
    ("output_entry", ENTRY),
    ("outputs_index", {"outputs": [ENTRY]}),
    ("outputs_index", {"outputs": []}),
    ("envelope_success", SUCCESS),
    ("envelope_error", ERROR),
    ("envelope_error", changed(ERROR, "execution_id", "")),
    ("envelope_error", changed(changed(ERROR, "meta.image_digest", ""), "meta.logs_tail", ["a"])),
    ("envelope", SUCCESS),
    ("envelope", ERROR),
    ("receipt", RECEIPT),
    ("determinism", DETERMINISM),
    ("sse_event", {"event": "token", "data": {"text": "hi"}}),
    ("sse_event", {"event": "done", "data": SUCCESS}),
    ("log_line", {"ts": "t", "level": "warn", "event": "http.run.start", "service": "s", "x": 1}),
    ("registry", REGISTRY),
    ("registry", changed(REGISTRY, "image.platforms", {})),
    *report_examples.VALID,
]

INVALID = [
    ("payload", changed(payload(), "schema", "v2"), "schema"),
    ("payload", changed(payload(), "execution_id", DEL), "execution_id"),
    ("payload", changed(payload(), "execution_id", "a/b"), "execution_id"),
    ("payload", changed(payload(), "ref", "LLM/x@1"), "ref"),
    ("payload", changed(payload(), "ref", "llm/x@0"), "ref"),
    ("payload", changed(payload(), "mode", "smoke"), "mode"),
    ("payload", changed(payload(), "inputs", []), "inputs"),
    ("payload", changed(payload(), "write_prefix", 3), "write_prefix"),
    ("payload", changed(payload(), "extra", 1), "extra"),
    ("output_entry", changed(ENTRY, "cid", "b3:xyz"), "cid"),
    ("output_entry", changed(ENTRY, "path", "/plan/a"), "path"),
    ("output_entry", changed(ENTRY, "size_bytes", -1), "size_bytes"),
    ("output_entry", changed(ENTRY, "mime", "text"), "mime"),
    ("outputs_index", {"outputs": [ENTRY], "receipt": {}}, "receipt"),
    ("envelope_success", changed(SUCCESS, "meta.image_digest", DEL), "image_digest"),
    ("envelope_success", changed(SUCCESS, "meta.duration_ms", 1.5), "duration_ms"),
    ("envelope_success", changed(SUCCESS, "index_path", DEL), "index_path"),
    ("envelope_error", changed(ERROR, "error.code", "ERR_NOPE"), "code"),
    ("envelope_error", changed(ERROR, "meta.image_digest", DEL), "image_digest"),
    ("envelope_error", changed(ERROR, "meta.image_digest", "sha256:short"), "image_digest"),
    ("envelope_error", changed(ERROR, "error.message", ""), "message"),
    ("envelope", {"status": "success"}, "not valid under any"),
    ("receipt", changed(RECEIPT, "processor_info", {"a": 1}), "processor_info"),
    ("receipt", changed(RECEIPT, "timestamp_utc", "yesterday"), "timestamp_utc"),
    ("receipt", changed(RECEIPT, "output_cids", DEL), "output_cids"),
    ("determinism", changed(DETERMINISM, "memo_key", "x"), "memo_key"),
    ("determinism", changed(DETERMINISM, "seed", -1), "seed"),
    ("sse_event", {"event": "settle", "data": SUCCESS}, "not valid under any"),
    ("sse_event", {"event": "done", "data": {"status": "maybe"}}, "not valid under any"),
    ("log_line", {"ts": "t", "level": "warning", "event": "e", "service": "s"}, "level"),
    ("log_line", {"level": "info", "event": "e", "service": "s"}, "ts"),
    ("registry", changed(REGISTRY, "image.platforms.amd64", "ghcr.io/o/r/llm:latest"), "amd64"),
    ("registry", changed(REGISTRY, "runtime.cpu", 1), "cpu"),
    ("registry", changed(REGISTRY, "secrets.required", ["lower"]), "required"),
    ("registry", changed(REGISTRY, "outputs.0.path", "../escape"), "path"),
    ("registry", changed(REGISTRY, "outputs.0.path", "/abs"), "path"),
    ("registry", changed(REGISTRY, "colour", "blue"), "colour"),
    *report_examples.INVALID,
]


@pytest.mark.parametrize(
    ("name", "instance"), VALID, ids=[f"{n}-{i}" for i, (n, _) in enumerate(VALID)]
)
def test_valid_examples_validate(name: str, instance: Any) -> None:
    assert problems(name, instance) == []


@pytest.mark.parametrize(
    ("name", "instance", "field"),
    INVALID,
    ids=[f"{n}-{f}-{i}" for i, (n, _, f) in enumerate(INVALID)],
)
def test_invalid_examples_fail_naming_the_field(name: str, instance: Any, field: str) -> None:
    found = problems(name, instance)
    assert found, f"{name} accepted an invalid instance"
    assert any(field in line for line in found), found


def test_every_schema_is_a_valid_draft7_schema_and_has_examples() -> None:
    for name in schemas.SCHEMA_NAMES:
        assert schemas.check_draft7_schema(schemas.load_schema(name)) == [], name
    exercised = {n for n, _ in VALID} | {n for n, _, _ in INVALID}
    assert exercised == set(schemas.SCHEMA_NAMES) - {"defs"}


def test_messages_never_quote_the_failing_value() -> None:
    errors = list(
        schemas.validator("payload").iter_errors(changed(payload(), "execution_id", "sk-secret/x"))
    )
    assert "sk-secret" not in schemas.first_problem(errors)
    assert schemas.first_problem(errors).startswith("execution_id: fails pattern")


def test_openapi_document_bundles_the_contract_without_cross_file_refs() -> None:
    document = openapi_document(
        title="t", version="1", inputs_schema={"type": "object", "required": ["x"]}
    )
    assert set(document["paths"]) == {"/healthz", "/run", "/run-stream"}
    text = json.dumps(document)
    assert ".json" not in text, "a cross-file $ref survived bundling"
    body = document["paths"]["/run"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["inputs"] == {"type": "object", "required": ["x"]}
    assert {"200", "400", "403", "413", "415", "500", "502", "504"} <= set(
        document["paths"]["/run"]["post"]["responses"]
    )
    assert bundled_schema("envelope")["oneOf"][0]["properties"]["status"] == {"const": "success"}


# -- the examples in SPEC.md ---------------------------------------------------

# SPEC.md's examples use "…" placeholders; each is replaced by a value of its kind.
PLACEHOLDERS = [
    (r'"<repo>@sha256:<64 hex>"', f'"ghcr.io/o/r@{DIGEST}"'),
    (r"\{<JSON Schema draft-07 for the payload's inputs>\}", '{"type": "object"}'),
    (r'"sha256:…"', f'"{DIGEST}"'),
    (r'"b3:<64 lowercase hex>"', f'"{CID}"'),
    (r'"<world path>"', '"/artifacts/outputs/demo/e-1/outputs/text/response.txt"'),
    (r'"<type>"', '"text/plain"'),
    (r"<int>", "5"),
    (r'"P/outputs.json"', '"/artifacts/outputs/demo/e-1/outputs.json"'),
    (r'"ERR_…"', '"ERR_INPUTS"'),
    (r'"… or empty when unknown"', '"e-1"'),
    (r'"e-…"', '"e-1"'),
    (r"\{…\}", "{}"),
    (r"\[entry, …\]", "[]"),
    (r'"…"', '"e-1"'),
]


def spec_examples(spec_md: str, language: str) -> list[str]:
    blocks = re.findall(rf"```{language}\n(.*?)```", spec_md, flags=re.S)
    out = []
    for block in blocks:
        for pattern, value in PLACEHOLDERS:
            block = re.sub(pattern, value, block)
        out.append(block)
    return out


def test_spec_json_examples_validate(spec_md: str) -> None:
    examples = [json.loads(b) for b in spec_examples(spec_md, "json")]
    kinds = {"payload": 0, "envelope_success": 0, "envelope_error": 0}
    for example in examples:
        name = "payload" if "write_prefix" in example else f"envelope_{example['status']}"
        assert problems(name, example) == [], (name, example)
        kinds[name] += 1
    assert all(kinds.values()), kinds


def test_spec_registry_example_validates(spec_md: str) -> None:
    (block,) = spec_examples(spec_md, "yaml")
    assert problems("registry", yaml.safe_load(block)) == []


def errors_of(schema: dict[str, Any], instance: Any) -> list[ValidationError]:
    return list(Draft7Validator(schema).iter_errors(instance))


@pytest.mark.parametrize(
    ("parts", "root", "path"),
    [
        (["outputs", 0, "cid"], "", "outputs[0].cid"),
        ([0, "a"], "", "[0].a"),
        (["a", 1], "inputs", "inputs.a[1]"),
        ([], "inputs", "inputs"),
        ([], "", "(root)"),
    ],
)
def test_json_paths_read_like_the_instance(parts: list[Any], root: str, path: str) -> None:
    assert schemas.json_path(parts, root) == path


def test_unexpected_fields_are_named_sorted_cut_and_at_most_five() -> None:
    schema = {"type": "object", "properties": {"a": {}}, "additionalProperties": False}
    instance = {"z": 1, "b": 2, "a": 0, "x" * 50: 1, "c": 1, "d": 1, "e": 1}
    [error] = errors_of(schema, instance)
    assert schemas.safe_describe(error, "inputs") == (
        f"inputs: unexpected field(s) ['b', 'c', 'd', 'e', '{'x' * 40}']"
    )


@pytest.mark.parametrize(
    ("schema", "instance", "line"),
    [
        ({"properties": {"k": {"pattern": "^a$"}}}, {"k": "sk-secret"}, "k: fails pattern='^a$'"),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, 1.5, "(root): fails oneOf='…'"),
        ({"not": {"type": "string"}}, "sk-secret", "(root): fails not='…'"),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, 1, "(root): fails anyOf='…'"),
        ({"required": ["a"]}, {"b": "sk-secret"}, "(root): fails required=['a']"),
        (
            {"additionalProperties": False},
            {"sk-secret": 1},
            "(root): unexpected field(s) ['sk-secret']",
        ),
        ({"const": "x" * 118}, "sk-secret", f"(root): fails const='{'x' * 118}'"),  # 120 chars
        ({"const": "x" * 119}, "sk-secret", f"(root): fails const='{'x' * 116}..."),
    ],
    ids=[
        "pattern",
        "oneOf",
        "not",
        "anyOf",
        "required-on-an-object",
        "unexpected-without-properties",
        "rule-of-120-chars",
        "rule-cut-at-120",
    ],
)
def test_safe_descriptions_name_the_rule_never_the_value(
    schema: dict[str, Any], instance: Any, line: str
) -> None:
    [error] = errors_of(schema, instance)
    assert schemas.safe_describe(error) == line
    assert schemas.first_problem([error]) == line


def test_first_problem_names_the_place_under_its_root() -> None:
    errors = errors_of({"properties": {"n": {"type": "integer"}}}, {"n": "sk-secret"})
    assert schemas.first_problem(errors, "inputs") == "inputs.n: fails type='integer'"


def test_problems_lists_every_failure_by_place() -> None:
    assert schemas.problems("payload", {"schema": "v1", "execution_id": "a b", "mode": "x"}) == [
        "(root): 'ref' is a required property",
        "(root): 'inputs' is a required property",
        "(root): 'write_prefix' is a required property",
        "execution_id: 'a b' does not match '^[A-Za-z0-9_.-]{1,128}$'",
        "mode: 'x' is not one of ['mock', 'real']",
    ]


def test_validate_raises_the_most_relevant_failure_and_keeps_them_all() -> None:
    with pytest.raises(schemas.SchemaViolation) as info:
        schemas.validate("payload", payload(mode="x"), code="ERR_INPUTS")
    assert info.value.code is ErrorCode.ERR_INPUTS
    assert str(info.value) == "mode: 'x' is not one of ['mock', 'real']"
    assert info.value.problems == ["mode: 'x' is not one of ['mock', 'real']"]
    bad = {"schema": "v1", "execution_id": "a b", "mode": "x"}
    with pytest.raises(schemas.SchemaViolation) as info:
        schemas.validate("payload", bad)
    assert info.value.code is ErrorCode.ERR_PAYLOAD and info.value.status == 400
    assert sorted(info.value.problems) == sorted(schemas.problems("payload", bad))
    schemas.validate("payload", payload())  # a valid instance passes


def test_inlined_validators_judge_as_the_referencing_library_does() -> None:
    """Each contract schema with its $refs inlined gives the verdicts jsonschema gives when it
    resolves them itself, for every example here (built afresh, not from an earlier test)."""
    schemas.validator.cache_clear()
    examples = [(n, i) for n, i in VALID] + [(n, i) for n, i, _ in INVALID]
    for name in schemas.SCHEMA_NAMES:
        inlined = schemas.validator(name)
        assert '"$ref"' not in json.dumps(inlined.schema), name
        resolving = Draft7Validator(schemas.load_schema(name), registry=schemas._registry())
        for instance in (i for n, i in examples if n == name):
            assert inlined.is_valid(instance) == resolving.is_valid(instance), (name, instance)
    assert schemas.is_valid("payload", payload()) and not schemas.is_valid("payload", {})


def test_inputs_validators_are_shared_by_equal_schemas() -> None:
    one = schemas.inputs_validator({"type": "object", "required": ["a"]})
    assert one is schemas.inputs_validator({"required": ["a"], "type": "object"})
    assert not one.is_valid({}) and one.is_valid({"a": 1})


def test_a_schema_that_is_no_draft7_schema_names_the_place() -> None:
    found = schemas.check_draft7_schema({"properties": {"a": {"type": 5}}}, "inputs")
    assert found == ["inputs.properties.a.type: 5 is not valid under any of the given schemas"]
    assert schemas.check_draft7_schema({"type": 5}) == [
        "type: 5 is not valid under any of the given schemas"
    ]


# -- the OpenAPI document, judged by what it accepts ------------------------------------------

INPUTS_SCHEMA = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}


def accepts(schema: dict[str, Any], instance: Any) -> bool:
    """OpenAPI 3.2 schemas are JSON Schema 2020-12."""
    return Draft202012Validator(schema).is_valid(instance)


def test_the_payload_schema_takes_the_registry_inputs_and_the_spec_refusals() -> None:
    schema = payload_schema(INPUTS_SCHEMA, "llm/litellm@1")
    assert schema["properties"]["inputs"] == {"type": "object"}  # without its $schema
    assert accepts(schema, payload())
    assert not accepts(schema, payload(ref="other/ref@1"))
    assert not accepts(schema, payload(inputs=[]))
    for execution_id in (".", ".."):
        assert not accepts(schema, payload(execution_id=execution_id))
    for prefix in ("/artifacts/{execution_id}/", "/artifacts/a_b/c-d/{execution_id}/"):
        assert accepts(schema, payload(write_prefix=prefix)), prefix
    for prefix in ("/artifacts/{execution_id}", "/plan/{execution_id}/", "/artifacts/A/x/"):
        assert not accepts(schema, payload(write_prefix=prefix)), prefix
    assert not accepts(schema, payload(write_prefix=5))
    assert accepts(payload_schema(INPUTS_SCHEMA), payload(ref="any/ref@9"))


def test_a_document_never_shares_the_registry_inputs_schema() -> None:
    """Whoever edits the served document (a fuzzer, a client) cannot edit the registry's own."""
    registry_inputs = {"type": "object", "properties": {"x": {"enum": ["a"]}}}
    schema = payload_schema(registry_inputs)
    schema["properties"]["inputs"]["properties"]["x"]["enum"].append("b")
    assert registry_inputs == {"type": "object", "properties": {"x": {"enum": ["a"]}}}


def test_bundling_drops_draft_keywords_and_keeps_no_reference() -> None:
    for name in schemas.SCHEMA_NAMES:
        text = json.dumps(bundled_schema(name))
        for keyword in ('"$ref"', '"$schema"', '"$id"', '"title"', '"definitions"'):
            assert keyword not in text, (name, keyword)
    assert bundled_schema("envelope")["oneOf"] == [
        bundled_schema("envelope_success"),
        bundled_schema("envelope_error"),
    ]


EVENTS = [
    ({"event": "progress", "data": '{"pct": 5}'}, True),
    ({"event": "token", "data": "{}", "id": "7", "retry": 100}, True),
    ({"event": "done", "data": "{}"}, True),
    ({"event": "hello", "data": "{}"}, False),
    ({"event": "log"}, False),
    ({"data": "{}"}, False),
    ({"event": "log", "data": {"a": 1}}, False),
    ({"event": "log", "data": "{}", "id": 7}, False),
    ({"event": "log", "data": "{}", "retry": "soon"}, False),
    ({"event": "log", "data": "{}", "colour": "blue"}, False),
    (["event", "data"], False),
]


@pytest.mark.parametrize(("event", "ok"), EVENTS)
def test_a_stream_event_is_event_and_data_as_schemathesis_reads_them(
    event: dict[str, Any], ok: bool
) -> None:
    assert accepts(sse_item_schema(), event) is ok


def test_a_done_event_carries_the_envelope_and_the_others_a_json_object() -> None:
    item = sse_item_schema()
    assert item["if"] == {"properties": {"event": {"const": "done"}}}
    for branch, content in (("then", bundled_schema("envelope")), ("else", {"type": "object"})):
        assert item[branch]["properties"]["data"] == {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": content,
        }


@pytest.mark.parametrize(
    ("events", "ok"),
    [
        ([{"event": "progress"}, {"event": "done"}], True),
        ([{"event": "progress"}], False),
        ([{"event": "done"}, {"event": "done"}], False),
    ],
)
def test_a_whole_stream_holds_exactly_one_done(events: list[Any], ok: bool) -> None:
    assert accepts(SSE_STREAM_SCHEMA, events) is ok


def test_the_document_answers_every_refusal_with_the_error_envelope() -> None:
    document = openapi_document(title="llm", version="1", inputs_schema=INPUTS_SCHEMA, ref="a/b@1")
    assert (document["openapi"], document["info"]) == ("3.2.0", {"title": "llm", "version": "1"})
    healthz = document["paths"]["/healthz"]["get"]
    alive = healthz["responses"]["200"]["content"]["application/json"]["schema"]
    assert healthz["operationId"] == "healthz"
    assert accepts(alive, {"ok": True}) and not accepts(alive, {"ok": False})
    assert not accepts(alive, {}) and not accepts(alive, [])
    run, stream = document["paths"]["/run"]["post"], document["paths"]["/run-stream"]["post"]
    assert (run["operationId"], stream["operationId"]) == ("run", "run_stream")
    for operation in (run, stream):
        assert operation["requestBody"]["required"] is True
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == payload_schema(INPUTS_SCHEMA, "a/b@1")
    statuses = {"400", "403", "413", "415", "500", "502", "504"}
    assert set(run["responses"]) == {"200"} | statuses
    assert run["responses"]["200"]["content"] == {
        "application/json": {"schema": bundled_schema("envelope_success")}
    }
    for status in statuses:
        assert run["responses"][status]["content"] == {
            "application/json": {"schema": bundled_schema("envelope_error")}
        }
    responses = [healthz["responses"]["200"], *run["responses"].values()]
    for response in [*responses, stream["responses"]["200"]]:  # OpenAPI: REQUIRED
        assert isinstance(response["description"], str) and response["description"]
    events = stream["responses"]["200"]["content"]
    assert events == {
        "text/event-stream": {"itemSchema": sse_item_schema(), "schema": SSE_STREAM_SCHEMA}
    }
