"""The adapters' shared core (``adapters.base`` and ``adapters.http``) against scripted answers.

A processor here is httpx's own ``MockTransport`` answering each request as a test
scripts it (valid envelopes, broken ones, dropped connections, odd streams); the adapter
is ``Adapter`` itself with only ``acquire``/``digest_for`` supplied. So every branch of
``run``, ``call``, ``check_envelope`` and the stream reader is reached without Docker,
and each outcome is asserted by its code and message (issue 20's mutation score).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_theory.adapters import http
from pytest_theory.adapters.base import (
    Adapter,
    AdapterError,
    Invocation,
    Unreachable,
    check_envelope,
    container_environment,
    invoke_kwargs,
    logs_tail,
    preflight,
    present_secrets,
)
from pytest_theory.contracts import is_valid
from pytest_theory.contracts.errors import ContractError, error_envelope
from pytest_theory.registry import ProcessorSpec, Registry
from tests.conftest import llm_inputs

SPEC = Registry.discover().get_spec("llm/litellm@1")
DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
FINGERPRINT = "cpu=1;memory_gb=2;gpu=none;secrets=none"
Answer = Callable[[httpx.Request], httpx.Response]


def success(execution_id: str = "e-1", digest: str = DIGEST) -> dict[str, Any]:
    prefix = f"/artifacts/outputs/{execution_id}/"
    return {
        "status": "success",
        "execution_id": execution_id,
        "outputs": [],
        "index_path": prefix + "outputs.json",
        "meta": {"image_digest": digest, "env_fingerprint": FINGERPRINT, "duration_ms": 3},
    }


def answering(envelope: Any, status: int = 200) -> Answer:
    return lambda request: httpx.Response(status, json=envelope)


def echoing(request: httpx.Request) -> httpx.Response:
    """A processor that succeeds for whatever execution id it is sent."""
    if request.url.path == "/healthz":
        return httpx.Response(200, json={"ok": True})
    return httpx.Response(200, json=success(json.loads(request.content)["execution_id"]))


@dataclass
class Handle:
    """What ``acquire`` hands out: a client on the scripted transport, and its stderr."""

    client: httpx.Client
    environment: Mapping[str, str] | None
    log: str = ""
    gone: bool = False
    ref: str = "llm/litellm@1"
    base_url: str = "http://processor"
    image_digest: str = DIGEST
    world_root: Path | None = None

    def stderr(self) -> str:
        return self.log

    def stdout(self) -> None:
        return None

    def image_config(self) -> None:
        return None

    def exec(self, argv: Any) -> None:
        return None

    def docker_health(self, timeout_s: float) -> None:
        return None

    def launch(self) -> None:
        return None

    def alive(self) -> bool:
        return not self.gone

    def close(self) -> None:
        self.client.close()


@dataclass
class Scripted(Adapter):
    """``Adapter`` with a scripted processor; records what it acquired and released."""

    answer: Answer = echoing
    digest: Any = DIGEST  # or an exception to raise
    pin: str | None = None
    log: str = ""
    acquired: list[Handle] = field(default_factory=list)
    released: list[bool] = field(default_factory=list)
    #: What ``digest_for`` and ``acquire`` were given: (opts,) and (world_root, opts).
    asked: list[Any] = field(default_factory=list)

    def digest_for(self, spec: ProcessorSpec, opts: Mapping[str, Any] | None = None) -> str:
        self.asked.append(("digest", opts))
        if isinstance(self.digest, Exception):
            raise self.digest
        return self.digest

    def expected_pin(self, spec: ProcessorSpec, opts: Mapping[str, Any]) -> str | None:
        self.asked.append(("pin", str(spec.ref), opts))
        return self.pin

    def acquire(
        self,
        spec: ProcessorSpec,
        *,
        environment: Mapping[str, str] | None = None,
        world_root: str | Path | None = None,
        opts: Mapping[str, Any] | None = None,
    ) -> Handle:
        self.asked.append(("acquire", world_root, opts))
        client = httpx.Client(transport=httpx.MockTransport(self.answer), base_url="http://p")
        handle = Handle(client, environment, self.log)
        self.acquired.append(handle)
        return handle

    def release(self, handle: Any, *, broken: bool) -> None:
        assert handle is self.acquired[-1], "the handle released is the one just used"
        self.released.append(broken)


def invoke(adapter: Adapter, **overrides: Any) -> dict[str, Any]:
    kwargs = invoke_kwargs(SPEC, execution_id="e-1", inputs=llm_inputs(), secrets_present=[])
    kwargs.update(overrides)
    envelope: dict[str, Any] = adapter.invoke(**kwargs)
    return envelope


def error_of(envelope: dict[str, Any]) -> tuple[str, str]:
    assert is_valid("envelope_error", envelope), envelope
    return envelope["error"]["code"], envelope["error"]["message"]


# -- run: the one place failures become envelopes --------------------------------------


def test_a_success_is_returned_as_the_processor_sent_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    adapter = Scripted()
    assert invoke(adapter) == success()
    (handle,) = adapter.acquired
    assert handle.environment == {"IMAGE_DIGEST": DIGEST}
    assert adapter.released == [False]


def test_what_is_posted_is_the_spec_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return echoing(request)

    invoke(Scripted(answer=record), adapter_opts={"trace_id": "t-9"}, mode="mock")
    (request,) = sent
    assert (request.method, request.url.path) == ("POST", "/run")
    assert json.loads(request.content) == {
        "schema": "v1",
        "execution_id": "e-1",
        "ref": "llm/litellm@1",
        "mode": "mock",
        "inputs": llm_inputs(),
        "write_prefix": "/artifacts/outputs/{execution_id}/",
        "meta": {"trace_id": "t-9"},
    }
    sent.clear()
    invoke(Scripted(answer=record))
    assert json.loads(sent[0].content)["meta"] == {"trace_id": "e-1"}


@pytest.mark.parametrize(
    ("expected", "pin", "digest", "compared_with"),
    [
        (OTHER, None, DIGEST, OTHER),
        (None, OTHER, DIGEST, OTHER),
        (None, None, OTHER, OTHER),
        (f"repo.example/x@{OTHER}", DIGEST, DIGEST, OTHER),
    ],
    ids=["expected-digest", "pin", "digest", "expected-wins"],
)
def test_drift_is_judged_against_expected_then_pin_then_digest(
    expected: str | None, pin: str | None, digest: str, compared_with: str
) -> None:
    opts = {"expected_digest": expected} if expected else {}
    envelope = invoke(Scripted(pin=pin, digest=digest), adapter_opts=opts)
    assert error_of(envelope) == (
        "ERR_IMAGE_DIGEST_MISMATCH",
        f"the processor runs {DIGEST}, expected {compared_with}",
    )
    assert envelope["execution_id"] == "e-1" and envelope["meta"]["image_digest"] == digest
    assert envelope["meta"]["env_fingerprint"] == FINGERPRINT


def test_an_unpinned_adapter_with_no_digest_compares_nothing() -> None:
    envelope = invoke(Scripted(digest="", answer=answering(success(digest=OTHER))))
    assert envelope == success(digest=OTHER)


def test_a_refused_connection_is_retried_once_with_a_fresh_processor() -> None:
    calls: list[str] = []

    def refuse_once(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        return echoing(request)

    adapter = Scripted(answer=refuse_once)
    assert invoke(adapter)["status"] == "success"
    assert len(adapter.acquired) == 2 and adapter.released == [True, False]


def test_a_processor_refusing_twice_is_an_invocation_error_saying_nothing_was_sent() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    adapter = Scripted(answer=refuse, log="a\n\nb\n")
    envelope = invoke(adapter)
    assert error_of(envelope) == (
        "ERR_ADAPTER_INVOCATION",
        "the processor does not accept connections (refused); nothing was sent",
    )
    assert envelope["meta"]["logs_tail"] == ["a", "b"]
    assert len(adapter.acquired) == 2 and adapter.released == [True, True]


@pytest.mark.parametrize(
    ("raised", "code", "message"),
    [
        (
            httpx.ReadTimeout("slow"),
            "ERR_TIMEOUT",
            f"no whole answer within {SPEC.timeout_s + http.TIMEOUT_GRACE_S:g}s",
        ),
        (
            httpx.RemoteProtocolError("cut"),
            "ERR_ADAPTER_INVOCATION",
            "connection lost during the run (RemoteProtocolError)",
        ),
    ],
    ids=["timeout", "dropped"],
)
def test_a_broken_exchange_discards_the_processor(
    raised: Exception, code: str, message: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    adapter = Scripted(answer=fail, log="last words")
    envelope = invoke(adapter)
    assert error_of(envelope) == (code, message)
    assert envelope["meta"]["logs_tail"] == ["last words"]
    assert adapter.released == [True]


def test_a_dropped_connection_says_when_the_processor_exited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    adapter = Scripted()

    def drop(request: httpx.Request) -> httpx.Response:
        adapter.acquired[-1].gone = True
        raise httpx.ReadError("reset")

    adapter.answer = drop
    envelope = invoke(adapter)
    assert error_of(envelope) == (
        "ERR_ADAPTER_INVOCATION",
        "connection lost during the run (ReadError); the processor exited",
    )


def test_the_call_deadline_is_the_option_or_the_runtimes_plus_grace() -> None:
    invocation = preflight_ok()
    assert http.call_deadline_s(invocation) == SPEC.timeout_s + http.TIMEOUT_GRACE_S
    assert http.call_deadline_s(invocation, 2.5) == 2.5

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    envelope = invoke(Scripted(answer=slow), adapter_opts={"timeout_s": 2.5})
    assert error_of(envelope) == ("ERR_TIMEOUT", "no whole answer within 2.5s")


def test_an_answer_that_is_not_json_is_an_invocation_error() -> None:
    adapter = Scripted(
        answer=lambda r: httpx.Response(502, text="<html>bad gateway</html>"), log="oops\n"
    )
    envelope = invoke(adapter, adapter_opts={})
    assert error_of(envelope) == (
        "ERR_ADAPTER_INVOCATION",
        "HTTP 502 with an answer that is not JSON",
    )
    assert envelope["meta"]["logs_tail"] == ["oops"]
    assert adapter.released == [True]


def test_an_answer_over_the_cap_is_an_invalid_envelope() -> None:
    over = b" " * (http.MAX_ENVELOPE_BYTES + 1)
    adapter = Scripted(answer=lambda r: httpx.Response(200, content=over), log="big\n")
    envelope = invoke(adapter)
    assert error_of(envelope) == (
        "ERR_ENVELOPE_INVALID",
        f"the answer exceeds {http.MAX_ENVELOPE_BYTES} bytes",
    )
    assert envelope["meta"]["logs_tail"] == ["big"]
    assert adapter.released == [False]


def test_a_processor_error_envelope_comes_back_unchanged() -> None:
    refusal = error_envelope(
        "ERR_INPUTS", "inputs: no", execution_id="e-1", image_digest=DIGEST, env_fingerprint="f"
    )
    adapter = Scripted(answer=answering(refusal, 400))
    assert invoke(adapter) == refusal
    assert adapter.released == [False]


def test_an_adapter_failure_without_a_log_has_no_logs_tail() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("cut")

    envelope = invoke(Scripted(answer=fail))
    assert "logs_tail" not in envelope["meta"]


# -- check_envelope ---------------------------------------------------------------------


def preflight_ok(**overrides: Any) -> Invocation:
    kwargs = invoke_kwargs(SPEC, execution_id="e-1", inputs=llm_inputs(), secrets_present=[])
    kwargs.update(overrides)
    return preflight(**kwargs)


def refused(envelope: Any, status: int | None = 200, expected: str | None = DIGEST) -> str:
    with pytest.raises(AdapterError) as raised:
        check_envelope(preflight_ok(), status, envelope, expected_digest=expected)
    return f"{raised.value.code.value}: {raised.value.message}"


def test_check_envelope_accepts_the_same_digest_in_either_form() -> None:
    good = success()
    assert check_envelope(preflight_ok(), 200, good, expected_digest=DIGEST) is good
    assert check_envelope(preflight_ok(), None, good, expected_digest=f"r/x@{DIGEST}") is good
    assert check_envelope(preflight_ok(), 200, good, expected_digest=None) is good


INVALID, DRIFT = "ERR_ENVELOPE_INVALID: ", "ERR_IMAGE_DIGEST_MISMATCH: "
REFUSAL = error_envelope("ERR_INPUTS", "m", image_digest=DIGEST)
UNREPORTED = "the processor runs an unreported digest, expected " + DIGEST


@pytest.mark.parametrize(
    ("envelope", "status", "expected"),
    [
        ({"meta": {"image_digest": OTHER}}, 200, f"{DRIFT}the processor runs {OTHER}, expected {DIGEST}"),
        ({"status": "success"}, 200, INVALID + "the envelope does not match the contract: "),
        ([1], 200, INVALID + "the envelope does not match the contract: "),
        ({"meta": []}, 200, INVALID + "the envelope does not match the contract: "),
        (success(), 201, INVALID + "HTTP 201 does not go with a success envelope"),
        (REFUSAL, 500, INVALID + "HTTP 500 does not go with a error envelope (ERR_INPUTS)"),
        (REFUSAL, 200, INVALID + "HTTP 200 does not go with a error envelope (ERR_INPUTS)"),
        (success("e-2"), 200, INVALID + "the envelope names another execution_id"),
        (success(digest=""), 200, DRIFT + UNREPORTED),
        ({**REFUSAL, "meta": {**REFUSAL["meta"], "image_digest": ""}}, 400, DRIFT + UNREPORTED),
    ],
    ids=["drift-first", "incomplete", "not-object", "meta-list", "success-201", "error-500",
         "error-200", "other-id", "unreported", "unreported-error"],
)  # fmt: skip
def test_check_envelope_refuses_each_break(envelope: Any, status: int, expected: str) -> None:
    assert refused(envelope, status).startswith(expected)


def test_an_envelope_problem_lists_at_most_three_problems() -> None:
    message = refused({"status": "success", "a": 1, "b": 2, "c": 3, "d": 4})
    head = "ERR_ENVELOPE_INVALID: the envelope does not match the contract: "
    assert message.startswith(head) and 1 <= message.count("; ") + 1 <= 3


def test_an_error_envelope_for_another_execution_id_is_the_processors_answer() -> None:
    """Only a success must name this call's execution id (an early refusal may not)."""
    refusal = error_envelope("ERR_PAYLOAD", "bad", image_digest=DIGEST)
    assert check_envelope(preflight_ok(), 400, refusal, expected_digest=DIGEST) is refusal
    assert check_envelope(preflight_ok(), 413, refusal, expected_digest=DIGEST) is refusal


# -- preflight and what is passed in ----------------------------------------------------


def test_preflight_refuses_a_snapshot_that_is_not_one_or_not_this_ref() -> None:
    with pytest.raises(ContractError) as broken:
        preflight_ok(registry_snapshot={"ref": "llm/litellm@1"})
    assert (broken.value.code.value, broken.value.message) == (
        "ERR_REGISTRY",
        "registry_snapshot is not a registry snapshot",
    )
    with pytest.raises(ContractError) as other:
        preflight_ok(processor_ref="replicate/generic@1")
    assert (other.value.code.value, other.value.message) == (
        "ERR_REGISTRY",
        "registry_snapshot is for llm/litellm@1, not replicate/generic@1",
    )
    envelope = invoke(Scripted(), registry_snapshot={"x": 1})
    assert error_of(envelope)[0] == "ERR_REGISTRY" and envelope["execution_id"] == ""


def test_a_bad_mode_is_left_to_the_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Preflight decides CI safety only; an unknown mode is the processor's ERR_MODE."""
    monkeypatch.setenv("CI", "true")
    invocation = preflight_ok(mode="smoke")
    assert invocation.payload["mode"] == "smoke"
    with pytest.raises(ContractError) as unsafe:
        preflight_ok(mode="real")
    assert unsafe.value.code.value == "ERR_CI_SAFETY"
    monkeypatch.setenv("CI", "false")
    assert preflight_ok(mode="real").payload["mode"] == "real"


def test_inputs_that_are_not_an_object_are_sent_as_they_are() -> None:
    assert preflight_ok(inputs_json=[1, 2]).payload["inputs"] == [1, 2]


def test_only_declared_secrets_reported_present_and_set_are_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-value")
    monkeypatch.setenv("UNDECLARED_KEY", "x")
    monkeypatch.delenv("CI", raising=False)
    assert present_secrets(SPEC, ["OPENAI_API_KEY", "UNDECLARED_KEY"]) == ["OPENAI_API_KEY"]
    assert present_secrets(SPEC, []) == []
    invocation = preflight_ok(secrets_present=["OPENAI_API_KEY"])
    assert invocation.secret_names == ["OPENAI_API_KEY"]
    assert invocation.container_environment(DIGEST) == {
        "IMAGE_DIGEST": DIGEST,
        "OPENAI_API_KEY": "sk-value",
    }
    assert invocation.fingerprint == "cpu=1;memory_gb=2;gpu=none;secrets=OPENAI_API_KEY"
    monkeypatch.setenv("OPENAI_API_KEY", "")
    assert present_secrets(SPEC, ["OPENAI_API_KEY"]) == []
    monkeypatch.setenv("CI", "1")
    assert container_environment(DIGEST, []) == {"IMAGE_DIGEST": DIGEST, "CI": "1"}
    assert Scripted().default_environment(SPEC) == {"IMAGE_DIGEST": DIGEST, "CI": "1"}


def test_invoke_kwargs_default_to_the_declared_secrets() -> None:
    kwargs = invoke_kwargs(SPEC, execution_id="e-1", inputs={"a": 1})
    assert kwargs == {
        "processor_ref": "llm/litellm@1",
        "mode": "mock",
        "inputs_json": {"a": 1},
        "write_prefix": "/artifacts/outputs/{execution_id}/",
        "execution_id": "e-1",
        "registry_snapshot": SPEC.snapshot(),
        "adapter_opts": {},
        "secrets_present": SPEC.secrets_declared,
        "stream": False,
    }


def test_an_error_envelope_never_carries_an_invalid_id_or_digest() -> None:
    invocation = preflight_ok(execution_id="../x")
    envelope = invocation.error(AdapterError("ERR_DOCKER", "no"), "not-a-digest")
    assert (envelope["execution_id"], envelope["meta"]["image_digest"]) == ("", "")
    envelope = preflight_ok().error(AdapterError("ERR_DOCKER", "no", logs_tail=["x"]), DIGEST)
    assert envelope["meta"] == {
        "image_digest": DIGEST,
        "env_fingerprint": FINGERPRINT,
        "logs_tail": ["x"],
    }
    plain = preflight_ok().error(ContractError("ERR_REGISTRY", "no"), f"r/x@{DIGEST}")
    assert plain["meta"] == {"image_digest": DIGEST, "env_fingerprint": FINGERPRINT}


def test_logs_tail_is_the_last_non_blank_lines() -> None:
    text = "\n".join(f"line {i}" for i in range(30)) + "\n\n  \n"
    assert logs_tail(text) == [f"line {i}" for i in range(10, 30)]
    assert logs_tail(text, 2) == ["line 28", "line 29"]
    assert logs_tail("") == []


def test_the_exception_tree() -> None:
    error = Unreachable("ERR_ADAPTER_INVOCATION", "m", logs_tail=("a",))
    assert isinstance(error, AdapterError) and isinstance(error, ContractError)
    assert error.logs_tail == ["a"] and AdapterError("ERR_DOCKER", "m").logs_tail == []


# -- streams ----------------------------------------------------------------------------


def sse(*frames: tuple[str, str], content_type: str = "text/event-stream") -> Answer:
    body = "".join(f"event: {event}\ndata: {data}\n\n" for event, data in frames)
    return lambda request: httpx.Response(
        200, content=body.encode(), headers={"content-type": content_type}
    )


def test_a_stream_delivers_its_events_then_the_done_envelope() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    answer = sse(
        ("progress", '{"stage": "running"}'),
        ("token", '{"text": "hi"}'),
        ("done", json.dumps(success())),
    )
    envelope = invoke(
        Scripted(answer=answer), stream=True, on_event=lambda e, d: events.append((e, d))
    )
    assert envelope == success()
    assert events == [("progress", {"stage": "running"}), ("token", {"text": "hi"})]
    assert invoke(Scripted(answer=answer), stream=True) == success()


NOT_A_STREAM = "ERR_ADAPTER_INVOCATION: not an event stream (Content-Type "


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (lambda r: httpx.Response(500, json={}), "ERR_ADAPTER_INVOCATION: /run-stream answered HTTP 500"),
        (sse(("done", "{}"), content_type="application/json"), NOT_A_STREAM + "'application/json')"),
        (sse(("done", "{}"), content_type=""), NOT_A_STREAM + "'')"),
        (sse(("done", json.dumps(success())), ("log", "{}")), INVALID + "events arrived after done"),
        (sse(("token", "{x")), INVALID + "a 'token' event whose data is not JSON"),
        (sse(("debug", "{}")), INVALID + "a stream event breaks the contract: "),
        (sse(("progress", "{}")), INVALID + "the stream ended without a done event"),
        (sse(("done", json.dumps(success("e-2")))), INVALID + "the envelope names another execution_id"),
    ],
    ids=["http-500", "json", "untyped", "after-done", "not-json", "unknown-event", "no-done",
         "other-id"],
)  # fmt: skip
def test_a_stream_that_breaks_the_contract_is_refused(answer: Answer, expected: str) -> None:
    code, message = error_of(invoke(Scripted(answer=answer), stream=True))
    assert f"{code}: {message}".startswith(expected)


def test_a_stream_with_a_charset_is_an_event_stream() -> None:
    answer = sse(("done", json.dumps(success())), content_type="text/event-stream; charset=utf-8")
    assert invoke(Scripted(answer=answer), stream=True) == success()


# -- the health wait --------------------------------------------------------------------


def test_the_health_wait_returns_once_healthz_says_ok() -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, json={"ok": False}), None])

    def healthz(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/healthz")
        return next(answers) or httpx.Response(200, json={"ok": True})

    adapter = Scripted(answer=healthz)
    handle = adapter.acquire(SPEC)
    http.wait_healthy(handle, 30)
    assert next(answers, "spent") == "spent"


@pytest.mark.parametrize(
    ("answer", "last"),
    [
        (lambda r: httpx.Response(503), "HTTP 503"),
        (lambda r: httpx.Response(200, json={"ok": False}), "HTTP 200"),
        (lambda r: httpx.Response(200, text="ok"), "JSONDecodeError"),
        (lambda r: (_ for _ in ()).throw(httpx.ConnectError("no")), "ConnectError"),
    ],
    ids=["503", "not-ok", "not-json", "refused"],
)
def test_a_processor_never_healthy_is_err_health_with_its_last_answer(
    answer: Answer, last: str
) -> None:
    handle = Scripted(answer=answer, log="booting\n").acquire(SPEC)
    with pytest.raises(AdapterError) as raised:
        http.wait_healthy(handle, 0.2)
    assert (raised.value.code.value, raised.value.message) == (
        "ERR_HEALTH",
        f"not healthy within 0.2s ({last})",
    )
    assert raised.value.logs_tail == ["booting"]


def test_a_processor_that_exits_while_starting_is_err_health() -> None:
    handle = Scripted(log="crashed\n").acquire(SPEC)
    handle.gone = True
    with pytest.raises(AdapterError) as raised:
        http.wait_healthy(handle, 30)
    assert raised.value.message == "the processor exited before it became healthy"
    assert raised.value.logs_tail == ["crashed"]


def test_a_health_answer_over_its_cap_is_not_healthy() -> None:
    big = b'{"ok": true' + b" " * (64 * 1024) + b"}"
    handle = Scripted(answer=lambda r: httpx.Response(200, content=big)).acquire(SPEC)
    with pytest.raises(AdapterError) as raised:
        http.wait_healthy(handle, 0.2)
    assert raised.value.message == "not healthy within 0.2s (AnswerTooLarge)"


# -- the deadline and the capped readers ---------------------------------------------------


def test_a_deadline_counts_down_and_bounds_each_read() -> None:
    deadline = http.Deadline(30)
    assert 0 < deadline.remaining() <= 30 and deadline.seconds == 30
    deadline.check()
    timeout = deadline.timeout()
    assert 0 < timeout.read <= 30 and timeout.connect == http.CONNECT_TIMEOUT_S
    spent = http.Deadline(0)
    assert spent.remaining() == 0.0
    with pytest.raises(http.DeadlineExceeded, match="no whole answer within 0s"):
        spent.check()
    assert spent.timeout().read == 0.001 and spent.timeout().connect == 0.001
    assert isinstance(http.DeadlineExceeded("x"), httpx.TimeoutException)


def test_a_bounded_request_reads_the_whole_answer_and_drops_its_encoding() -> None:
    answer = httpx.Response(
        200, content=b"abc", headers={"content-encoding": "identity", "x-kept": "1"}
    )
    client = httpx.Client(transport=httpx.MockTransport(lambda r: answer), base_url="http://p")
    response = http.bounded_request(client, "GET", "/x", deadline_s=30)
    assert (response.status_code, response.content) == (200, b"abc")
    assert response.headers.get("x-kept") == "1" and "content-encoding" not in response.headers
    assert response.request.url.path == "/x"
    with pytest.raises(http.AnswerTooLarge, match="the answer exceeds 2 bytes"):
        http.bounded_request(client, "GET", "/x", deadline_s=30, limit=2)
    assert http.bounded_request(client, "GET", "/x", deadline_s=30, limit=3).content == b"abc"


def test_stream_events_are_capped_in_size() -> None:
    def events(body: bytes, limit: int) -> list[tuple[str, str]]:
        response = httpx.Response(200, content=body)
        return [(e.event, e.data) for e in http.iter_sse_capped(response, http.Deadline(30), limit)]

    body = b'event: log\ndata: {"a": 1}\n\nevent: done\ndata: {}\n\n'
    assert events(body, 100) == [("log", '{"a": 1}'), ("done", "{}")]
    assert events(b"event: log\ndata: {}", 100) == [], "an unclosed event is dropped"
    assert events(b"event: log\ndata: {}\n", 100) == [], "an unclosed event is dropped"
    with pytest.raises(http.AnswerTooLarge, match="a stream event exceeds 20 characters"):
        events(b"event: log\ndata: " + b"x" * 30 + b"\n\n", 20)
    with pytest.raises(http.AnswerTooLarge, match="a stream event exceeds 20 characters"):
        events(b"data: " + b"x" * 30, 20)
    # Event sizes reset at each blank line: many small events pass a small cap.
    assert len(events(b"event: log\ndata: {}\n\n" * 5, 20)) == 5


def test_the_calls_options_reach_digest_for_and_acquire() -> None:
    adapter = Scripted()
    opts = {"world_root": "/w", "build": "never"}
    invoke(adapter, adapter_opts=opts)
    assert adapter.asked == [
        ("digest", opts),
        ("acquire", "/w", opts),
        ("pin", "llm/litellm@1", opts),
    ]


def test_invoke_posts_to_run_unless_asked_to_stream() -> None:
    paths: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return echoing(request)

    kwargs = invoke_kwargs(SPEC, execution_id="e-1", inputs=llm_inputs(), secrets_present=[])
    del kwargs["stream"]
    assert Scripted(answer=record).invoke(**kwargs)["status"] == "success"
    assert paths == ["/run"]


def test_a_digest_that_cannot_be_found_is_an_error_envelope_without_one() -> None:
    adapter = Scripted(digest=AdapterError("ERR_IMAGE_UNAVAILABLE", "no image"))
    envelope = invoke(adapter)
    assert error_of(envelope) == ("ERR_IMAGE_UNAVAILABLE", "no image")
    assert envelope["meta"]["image_digest"] == "" and adapter.acquired == []


def test_the_status_message_names_the_code_only_for_an_error() -> None:
    assert refused(success(), 201) == (
        "ERR_ENVELOPE_INVALID: HTTP 201 does not go with a success envelope"
    )
    assert refused(REFUSAL, 500) == (
        "ERR_ENVELOPE_INVALID: HTTP 500 does not go with a error envelope (ERR_INPUTS)"
    )


def test_a_stream_failure_carries_the_processors_log_tail() -> None:
    cases = [
        lambda r: httpx.Response(500, json={}),
        sse(("done", "{}"), content_type="text/plain"),
        sse(("progress", "{}")),
    ]
    for answer in cases:
        envelope = invoke(Scripted(answer=answer, log="why\n"), stream=True)
        assert envelope["meta"]["logs_tail"] == ["why"], envelope


def test_a_stream_without_a_content_type_is_not_an_event_stream() -> None:
    answer = lambda r: httpx.Response(200, content=b"event: done\ndata: {}\n\n")  # noqa: E731
    assert error_of(invoke(Scripted(answer=answer), stream=True)) == (
        "ERR_ADAPTER_INVOCATION",
        "not an event stream (Content-Type '')",
    )


def events_of(body: bytes, limit: int = http.MAX_EVENT_BYTES) -> list[tuple[str, str]]:
    response = httpx.Response(200, content=body)
    return [(e.event, e.data) for e in http.iter_sse_capped(response, http.Deadline(30), limit)]


def test_an_event_of_exactly_the_limit_passes_and_one_more_character_does_not() -> None:
    event = b"event: log\ndata: 12345\n\n"  # lines of 10 and 11 characters
    assert events_of(event, 21) == [("log", "12345")]
    with pytest.raises(http.AnswerTooLarge):
        events_of(event, 20)
    # Counting starts afresh after each event: two such events pass the same limit.
    assert len(events_of(event * 2, 21)) == 2
    # A line still arriving counts too: 21 characters waiting for their line end pass.
    assert events_of(b"event: log\ndata: 12345", 21) == []
    with pytest.raises(http.AnswerTooLarge):
        events_of(b"event: log\ndata: 123456", 21)
    with pytest.raises(http.AnswerTooLarge):
        events_of(b"data: 1234567890123456", 21)  # 22 characters, no line end yet


def test_an_event_ended_by_carriage_returns_is_delivered() -> None:
    assert events_of(b"event: done\rdata: {}\r\r") == [("done", "{}")]


def test_bytes_that_are_not_utf8_are_replaced_not_fatal() -> None:
    assert events_of(b'event: token\ndata: {"text": "a\xffb"}\n\n') == [
        ("token", '{"text": "a\ufffdb"}')
    ]


@contextmanager
def stalled_server(content_type: bytes) -> Iterator[str]:
    """A raw socket that answers headers and then nothing (for 5 s, then hangs up)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    done = threading.Event()

    def stall() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type +
                     b"\r\ntransfer-encoding: chunked\r\n\r\n")  # fmt: skip
        done.wait(5)
        conn.close()

    thread = threading.Thread(target=stall, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join(10)
        server.close()


def test_a_stream_that_stalls_is_cut_at_the_calls_deadline() -> None:
    """Headers, then nothing: each read is bounded by the time left, so the call ends as
    ERR_TIMEOUT at its deadline (the fake gives up long after it, and then hangs up)."""

    class Stalled(Scripted):
        url = ""

        def acquire(self, spec: ProcessorSpec, **kwargs: Any) -> Handle:
            handle = Handle(httpx.Client(base_url=self.url, timeout=30), kwargs.get("environment"))
            self.acquired.append(handle)
            return handle

    with stalled_server(b"text/event-stream") as url:
        adapter = Stalled()
        adapter.url = url
        envelope = invoke(adapter, stream=True, adapter_opts={"timeout_s": 0.5})
    assert error_of(envelope) == ("ERR_TIMEOUT", "no whole answer within 0.5s")


def test_invoke_kwargs_keep_the_secrets_the_caller_reports() -> None:
    assert (
        invoke_kwargs(SPEC, execution_id="e", inputs={}, secrets_present=[])["secrets_present"]
        == []
    )


def test_the_payload_holds_a_copy_of_the_inputs() -> None:
    inputs = llm_inputs()
    invocation = preflight_ok(inputs_json=inputs)
    inputs["params"] = {}
    assert invocation.payload["inputs"] == llm_inputs()


def test_a_processor_answering_a_status_its_code_does_not_have_is_refused() -> None:
    refusal = error_envelope("ERR_INPUTS", "m", execution_id="e-1", image_digest=DIGEST)
    assert error_of(invoke(Scripted(answer=answering(refusal, 500)))) == (
        "ERR_ENVELOPE_INVALID",
        "HTTP 500 does not go with a error envelope (ERR_INPUTS)",
    )


def test_a_processor_exiting_just_after_a_dropped_connection_is_said_to_have_exited() -> None:
    adapter = Scripted()
    polls = iter([True, True])

    def drop(request: httpx.Request) -> httpx.Response:
        handle = adapter.acquired[-1]
        handle.alive = lambda: next(polls, False)  # type: ignore[method-assign]
        raise httpx.ReadError("reset")

    adapter.answer = drop
    assert error_of(invoke(adapter))[1] == (
        "connection lost during the run (ReadError); the processor exited"
    )


def test_the_health_wait_probes_again_within_its_last_second() -> None:
    answers = iter([httpx.Response(503)])
    handle = Scripted(
        answer=lambda r: next(answers, None) or httpx.Response(200, json={"ok": True})
    ).acquire(SPEC)
    http.wait_healthy(handle, 0.5)
    assert next(answers, "spent") == "spent"


def test_a_body_arriving_in_chunks_is_read_whole() -> None:
    def chunked(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"ab", b"cd", b"e"]))

    client = httpx.Client(transport=httpx.MockTransport(chunked), base_url="http://p")
    assert http.bounded_request(client, "GET", "/x", deadline_s=30).content == b"abcde"
    with pytest.raises(http.AnswerTooLarge):
        http.bounded_request(client, "GET", "/x", deadline_s=30, limit=4)


def test_a_request_whose_answer_stalls_is_cut_at_its_deadline() -> None:
    with stalled_server(b"application/json") as url:
        client = httpx.Client(base_url=url, timeout=30)
        with pytest.raises(httpx.TimeoutException):
            http.bounded_request(client, "GET", "/healthz", deadline_s=0.5)
