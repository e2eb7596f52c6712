"""The runtime's document and the shipped configuration, read by schemathesis in-process
(no Docker): what a schemathesis user's default checks see."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_theory.adapters import InprocessAdapter
from pytest_theory.fuzz import SCHEMATHESIS_CONFIG, processor_schema
from pytest_theory.registry import Registry
from tests.conftest import DIGEST, payload

LLM = Registry.discover().get_spec("llm/litellm@1")


@pytest.fixture
def llm(tmp_path: Path) -> Any:
    adapter = InprocessAdapter(world_root=tmp_path)
    handle = adapter.acquire(LLM, environment={"IMAGE_DIGEST": DIGEST, "CI": "true"})
    yield handle
    adapter.close()


@pytest.mark.parametrize("path", ["/healthz", "/run", "/run-stream"])
def test_an_undeclared_method_gets_405_with_allow(llm: Any, path: str) -> None:
    """RFC 9110: a 405 lists the methods the resource supports in ``Allow`` (ST204)."""
    response = llm.client.request("TRACE", path)
    assert response.status_code == 405
    assert response.headers["allow"] == ("GET" if path == "/healthz" else "POST")


def test_the_stream_is_validated_event_by_event_and_whole(llm: Any) -> None:
    """itemSchema reads each event's data as JSON (done: an envelope); schema, the whole stream."""
    document = llm.client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.2")
    operation = processor_schema(document, base_url=llm.base_url)["/run-stream"]["POST"]
    body = payload(execution_id="st-1")
    case = operation.Case(body=body, media_type="application/json")
    answer = llm.client.post("/run-stream", json=body)
    answer.elapsed = timedelta(0)  # the in-process transport does not time it
    case.validate_response(answer)  # the runtime's own stream passes every default check

    def stream(text: str) -> httpx.Response:
        headers = {"content-type": answer.headers["content-type"]}
        tampered = httpx.Response(200, headers=headers, text=text, request=answer.request)
        tampered.elapsed = timedelta(0)
        return tampered

    def failures(response: httpx.Response) -> str:
        try:
            case.validate_response(response)
        except BaseExceptionGroup as group:  # schemathesis' FailureGroup: one per failing check
            return str(group)
        return ""

    bad_done = failures(stream('event: done\ndata: {"status": "maybe"}\n\n'))
    assert "SSE event violates schema" in bad_done and "Event #0" in bad_done
    no_done = failures(stream('event: progress\ndata: {"stage": "running"}\n\n'))
    assert "SSE stream violates schema" in no_done


def test_the_shipped_configuration_differs_from_the_defaults_only_where_spec_does(
    llm: Any,
) -> None:
    text = SCHEMATHESIS_CONFIG.read_text("utf-8")
    entries = text.split("[[operations]]")[1:]
    assert len(entries) == len(tomllib.loads(text)["operations"]) == 2
    for entry in entries:
        assert re.search(r"# SPEC §\d", entry), (
            f"an exclusion without its SPEC.md sentence: {entry}"
        )
    schema = processor_schema(llm.client.get("/openapi.json").json())
    expected = {
        "GET /healthz": (None, None),
        # 413 over the body limit; ERR_INPUTS (400) for a world artifact that is not there
        "POST /run": ("413", "400"),
        "POST /run-stream": (["200"], None),  # refusals end in `done` inside a 200 stream
    }
    defaults = processor_schema({"openapi": "3.2.0", "info": {"title": "t", "version": "1"}})
    default_checks = defaults.config.checks_config_for(operation=None)
    for result in schema.get_all_operations():
        operation = result.ok()
        checks = schema.config.checks_config_for(operation=operation)
        negative, extra_positive = expected[operation.label]
        refused = list(default_checks.negative_data_rejection.expected_statuses)
        if isinstance(negative, list):
            refused = negative
        elif negative:
            refused.append(negative)
        assert sorted(checks.negative_data_rejection.expected_statuses) == sorted(refused)
        positive = list(default_checks.positive_data_acceptance.expected_statuses)
        assert sorted(checks.positive_data_acceptance.expected_statuses) == sorted(
            positive + ([extra_positive] if extra_positive else [])
        )
