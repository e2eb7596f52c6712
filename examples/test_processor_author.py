"""A processor author's own tests, written against pytest-theory's fixtures.

The built-in contract suite checks every rule of SPEC.md; these tests check
what only the author knows: what the processor should *say*. Run them with

    pytest examples/test_processor_author.py

(``@pytest.mark.theory`` names the processor), or run them beside the suite
with ``pytest examples/ --theory-ref llm/litellm@1``.
"""

from __future__ import annotations

import json

import pytest

from pytest_theory.asserts import (
    assert_error,
    assert_index,
    assert_outputs,
    assert_receipts,
    assert_stream,
    assert_success,
)

pytestmark = pytest.mark.theory(ref="llm/litellm@1")


def ask(question: str) -> dict:
    return {
        "schema": "v1",
        "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]},
    }


def test_the_mock_reply_repeats_the_question(theory_run, theory_spec, theory_processor):
    run = theory_run(inputs=ask("What is two plus two?"))
    assert_success(run, image_digest=theory_processor.image_digest)
    assert_outputs(run, theory_spec)
    assert_index(run)
    assert_receipts(run, theory_spec)
    reply = run.read(run.prefix + "outputs/text/response.txt").decode()
    assert reply.endswith(": What is two plus two?")


def test_metadata_reports_usage(theory_run):
    run = theory_run(inputs=ask("one two three"))
    metadata = json.loads(run.read(run.prefix + "outputs/metadata.json"))
    assert metadata["usage"]["prompt_tokens"] == 3
    assert metadata["finish_reason"] == "stop"


def test_streaming_sends_the_reply_as_tokens(theory_stream):
    run = theory_stream(inputs=ask("stream me"))
    envelope = assert_stream(run)
    tokens = "".join(json.loads(e.data)["text"] for e in run.events if e.event == "token")
    assert envelope["status"] == "success" and tokens.strip().endswith("stream me")


def test_a_conversation_needs_a_model(theory_run):
    run = theory_run(
        inputs={"schema": "v1", "params": {"messages": [{"role": "user", "content": "hi"}]}}
    )
    envelope = assert_error(run, "ERR_INPUTS")
    assert "model" in envelope["error"]["message"]
