"""The processor runtime keeps every processor-side rule of SPEC.md (driven in-process)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.contracts import (
    HASH_SCHEMA,
    canonical_json,
    cid_of_bytes,
    inputs_hash,
    is_valid,
    memo_key,
)
from pytest_theory.contracts.errors import is_valid_status
from pytest_theory.processors.runtime import Output, ProviderError, Result, RunContext
from tests.conftest import payload
from tests.processors.conftest import DIGEST, LLM, App

MakeApp = Callable[..., App]


def assert_error(response: Any, code: str, status: int) -> dict[str, Any]:
    envelope = response.json()
    assert response.status_code == status, envelope
    assert is_valid("envelope_error", envelope), envelope
    assert envelope["error"]["code"] == code, envelope
    assert is_valid_status(code, status)
    assert envelope["meta"]["image_digest"] == DIGEST
    assert envelope["meta"]["env_fingerprint"].startswith("cpu=1;memory_gb=")
    return envelope


# -- success ------------------------------------------------------------------


def test_healthz(make_app: MakeApp) -> None:
    response = make_app().request("GET", "/healthz")
    assert (response.status_code, response.json()) == (200, {"ok": True})


def test_success_writes_outputs_index_and_receipts(make_app: MakeApp) -> None:
    app = make_app()
    response = app.run(payload())
    envelope = response.json()
    assert response.status_code == 200 and is_valid("envelope_success", envelope), envelope
    prefix = "/artifacts/outputs/demo/e-1/"
    assert envelope["index_path"] == prefix + "outputs.json"
    assert [o["path"] for o in envelope["outputs"]] == [
        prefix + "outputs/metadata.json",
        prefix + "outputs/text/response.txt",
    ]
    for entry in envelope["outputs"]:
        data = app.world.joinpath(entry["path"].removeprefix("/artifacts/")).read_bytes()
        assert entry["cid"] == cid_of_bytes(data) and entry["size_bytes"] == len(data)
    index_bytes = app.world.joinpath("outputs/demo/e-1/outputs.json").read_bytes()
    assert index_bytes == canonical_json({"outputs": envelope["outputs"]})
    receipt = json.loads(app.world.joinpath("outputs/demo/e-1/receipt.json").read_bytes())
    determinism = json.loads(app.world.joinpath("execution/e-1/determinism.json").read_bytes())
    assert is_valid("receipt", receipt) and is_valid("determinism", determinism)
    cids = sorted(o["cid"] for o in envelope["outputs"])
    ih = inputs_hash(payload()["inputs"])
    assert receipt["output_cids"] == determinism["output_cids"] == cids
    assert receipt["inputs_hash"] == determinism["inputs_hash"] == ih
    assert receipt["hash_schema"] == HASH_SCHEMA and receipt["mode"] == "mock"
    assert receipt["image_digest"] == determinism["image_digest"] == DIGEST
    assert determinism["memo_key"] == memo_key(
        ref="llm/litellm@1", image_digest=DIGEST, mode="mock", inputs_hash=ih
    )
    assert app.files() == [
        "execution/e-1/determinism.json",
        "outputs/demo/e-1/outputs.json",
        "outputs/demo/e-1/outputs/metadata.json",
        "outputs/demo/e-1/outputs/text/response.txt",
        "outputs/demo/e-1/receipt.json",
    ]


def test_mock_outputs_do_not_depend_on_execution_id_or_time(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_theory.processors.runtime import app as runtime_app

    first = make_app().run(payload(execution_id="a")).json()
    # Five years later by the runtime's clock (not by sleeping), and the receipt says so.
    monkeypatch.setattr(runtime_app, "utc_timestamp", lambda: "2031-06-01T00:00:00.000Z")
    later = make_app()
    second = later.run(payload(execution_id="b")).json()
    receipt = json.loads(later.world.joinpath("outputs/demo/b/receipt.json").read_bytes())
    assert receipt["timestamp_utc"] == "2031-06-01T00:00:00.000Z"
    assert [o["cid"] for o in first["outputs"]] == [o["cid"] for o in second["outputs"]]


def test_attachments_are_read_from_the_world_and_checked(make_app: MakeApp) -> None:
    app = make_app()
    attachment = app.world / "inputs" / "note.txt"
    attachment.parent.mkdir()
    attachment.write_bytes(b"attached words")
    part = {
        "$artifact": "/artifacts/inputs/note.txt",
        "cid": cid_of_bytes(b"attached words"),
        "mime": "text/plain",
    }
    inputs = {
        "schema": "v1",
        "params": {"model": "m", "messages": [{"role": "user", "content": [part]}]},
    }
    envelope = app.run(payload(inputs=inputs)).json()
    response = app.world.joinpath("outputs/demo/e-1/outputs/text/response.txt").read_text()
    assert envelope["status"] == "success" and "attached words" in response
    tampered = {**part, "cid": cid_of_bytes(b"other")}
    bad = {
        "schema": "v1",
        "params": {"model": "m", "messages": [{"role": "user", "content": [tampered]}]},
    }
    assert_error(app.run(payload(inputs=bad, execution_id="e-2")), "ERR_INPUTS", 400)


# -- every processor-side error ---------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"content": b"{", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b'"text"', "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"\xff\xfe{}", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b'{"a": NaN}', "headers": {"content-type": "application/json"}}, 400),
        (
            {
                "content": b"[" * 100_000 + b"]" * 100_000,
                "headers": {"content-type": "application/json"},
            },
            400,
        ),
        ({"content": b'{"a": "\\ud800"}', "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"{}", "headers": {"content-type": "text/plain"}}, 415),
        ({"content": b"{}"}, 415),
    ],
    ids=[
        "truncated",
        "array",
        "string",
        "bad-utf8",
        "nan",
        "deep",
        "surrogate",
        "text-plain",
        "no-type",
    ],
)
def test_unreadable_bodies_are_payload_errors(
    make_app: MakeApp, kwargs: dict[str, Any], status: int
) -> None:
    app = make_app()
    envelope = assert_error(app.run(**kwargs), "ERR_PAYLOAD", status)
    assert envelope["execution_id"] == ""
    assert app.files() == []


def test_oversized_bodies_are_413(make_app: MakeApp) -> None:
    app = make_app(environ={"THEORY_MAX_BODY_BYTES": "1000"})
    assert_error(
        app.run(payload(inputs={"schema": "v1", "params": {"model": "m" * 2000}})),
        "ERR_PAYLOAD",
        413,
    )


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"schema": "v2"}, "ERR_PAYLOAD"),
        ({"execution_id": None}, "ERR_PAYLOAD"),
        ({"execution_id": ".."}, "ERR_PAYLOAD"),
        ({"ref": "other/proc@1"}, "ERR_PAYLOAD"),
        ({"inputs": "x"}, "ERR_PAYLOAD"),
        ({"surprise": 1}, "ERR_PAYLOAD"),
        ({"mode": "smoke"}, "ERR_MODE"),
        ({"mode": 3}, "ERR_MODE"),
        ({"write_prefix": "/artifacts/outputs/"}, "ERR_WRITE_PREFIX"),
        ({"write_prefix": "/artifacts/{execution_id}"}, "ERR_WRITE_PREFIX"),
        ({"write_prefix": "/plan/{execution_id}/"}, "ERR_WRITE_PREFIX"),
        ({"write_prefix": "/artifacts/%2e%2e/{execution_id}/"}, "ERR_WRITE_PREFIX"),
        ({"write_prefix": "/artifacts/../../etc/{execution_id}/"}, "ERR_WRITE_PREFIX"),
        ({"inputs": {"schema": "v1", "params": {"model": "m"}}}, "ERR_INPUTS"),
        (
            {
                "inputs": {
                    "schema": "v1",
                    "params": {"model": "m", "messages": [{"role": "robot", "content": ""}]},
                }
            },
            "ERR_INPUTS",
        ),
    ],
)
def test_refused_payloads_get_their_code_and_write_nothing(
    make_app: MakeApp, change: dict[str, Any], code: str
) -> None:
    app = make_app()
    body = payload()
    for key, value in change.items():
        if value is None:
            del body[key]
        else:
            body[key] = value
    assert_error(app.run(body), code, 400)
    assert app.files() == []


def test_missing_fields_are_payload_errors_naming_the_field(make_app: MakeApp) -> None:
    body = payload()
    del body["write_prefix"]
    envelope = assert_error(make_app().run(body), "ERR_PAYLOAD", 400)
    assert "write_prefix" in envelope["error"]["message"]


def test_real_under_ci_is_refused_before_anything_runs(make_app: MakeApp) -> None:
    calls = []
    app = make_app(lambda ctx: calls.append(ctx), environ={"CI": "true", "OPENAI_API_KEY": "sk-x"})
    assert_error(app.run(payload(mode="real")), "ERR_CI_SAFETY", 403)
    assert calls == [] and app.files() == []


def test_real_without_its_secret_is_refused(make_app: MakeApp) -> None:
    calls = []
    envelope = assert_error(
        make_app(lambda ctx: calls.append(ctx)).run(payload(mode="real")), "ERR_MISSING_SECRET", 500
    )
    assert "OPENAI_API_KEY" in envelope["error"]["message"] and calls == []


def test_mock_needs_no_secret_and_sees_none(make_app: MakeApp) -> None:
    seen: list[dict[str, str]] = []

    def handler(ctx: RunContext) -> Result:
        seen.append(dict(ctx.secrets))
        return Result([Output("metadata.json", b"{}")], "t")

    assert (
        make_app(handler, environ={"OPENAI_API_KEY": "sk-abcdef"}).run(payload()).status_code == 200
    )
    assert seen == [{}]


def test_provider_failures_are_502(make_app: MakeApp) -> None:
    def handler(ctx: RunContext) -> Result:
        raise ProviderError("upstream said no")

    assert_error(make_app(handler).run(payload()), "ERR_PROVIDER", 502)


def test_handler_bugs_are_internal_errors_never_pages(make_app: MakeApp) -> None:
    def crash(ctx: RunContext) -> Result:
        raise KeyError("secret-looking detail")

    envelope = assert_error(make_app(crash).run(payload()), "ERR_INTERNAL", 500)
    assert "secret-looking" not in json.dumps(envelope) and "Traceback" not in json.dumps(envelope)
    undeclared = make_app(lambda ctx: Result([Output("elsewhere.txt", b"x")], "t"))
    assert_error(undeclared.run(payload()), "ERR_INTERNAL", 500)
    assert undeclared.files() == []
    escaping = make_app(lambda ctx: Result([Output("../receipt.json", b"x")], "t"))
    assert_error(escaping.run(payload()), "ERR_INTERNAL", 500)
    assert_error(make_app(lambda ctx: "not a result").run(payload()), "ERR_INTERNAL", 500)


def test_timeouts_are_504_and_a_late_handler_writes_nothing(make_app: MakeApp) -> None:
    finished = threading.Event()

    def slow(ctx: RunContext) -> Result:
        time.sleep(0.6)  # fault: a handler slower than the timeout
        finished.set()
        return Result([Output("metadata.json", b"{}")], "t")

    app = make_app(slow, environ={"THEORY_TIMEOUT_S": "0.2"})
    assert_error(app.run(payload()), "ERR_TIMEOUT", 504)
    assert finished.wait(5)
    # Wait on the state, not the clock: the late job has left the handler threads, so
    # whatever it was going to commit is on disk by now.
    executor = app.app.state.processor.executor
    waiter = threading.Thread(target=executor.shutdown, kwargs={"wait": True})
    waiter.start()
    waiter.join(10)
    assert not waiter.is_alive(), "the late handler's job never finished"
    assert app.files() == []


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [
        ("provider", "ERR_PROVIDER", 502),
        ("internal", "ERR_INTERNAL", 500),
        ("timeout", "ERR_TIMEOUT", 504),
    ],
)
def test_fault_injection_when_enabled(
    make_app: MakeApp, fault: str, code: str, status: int
) -> None:
    env = {"THEORY_FAULT_INJECTION": "1", "THEORY_TIMEOUT_S": "0.3"}
    assert_error(make_app(environ=env).run(payload(meta={"fault": fault})), code, status)
    assert make_app().run(payload(meta={"fault": fault})).status_code == 200  # ignored when off


def test_a_failed_commit_leaves_no_file(make_app: MakeApp) -> None:
    app = make_app()
    blocker = app.world / "outputs/demo/e-1/outputs/text/response.txt"
    blocker.mkdir(parents=True)  # a directory where the second output must go
    assert_error(app.run(payload()), "ERR_INTERNAL", 500)
    assert app.files() == []


# -- streaming ------------------------------------------------------------------


def test_stream_ends_in_done_equal_to_run(make_app: MakeApp) -> None:
    app = make_app()
    events = app.stream(payload())
    assert [e.event for e in events][-1] == "done"
    assert {e.event for e in events[:-1]} <= {"progress", "log", "token"}
    assert any(e.event == "token" for e in events)
    for event in events:
        assert is_valid("sse_event", {"event": event.event, "data": json.loads(event.data)})
    streamed = json.loads(events[-1].data)
    ran = app.run(payload()).json()
    for envelope in (streamed, ran):
        envelope["meta"].pop("duration_ms")
    assert streamed == ran


def test_stream_errors_end_in_done_too(make_app: MakeApp) -> None:
    app = make_app()
    response = app.request(
        "POST", "/run-stream", content=b"nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/event-stream"
    )
    (done,) = [e for e in app.stream({"schema": "v1"})]
    assert done.event == "done" and json.loads(done.data)["error"]["code"] == "ERR_PAYLOAD"


# -- logs and secrets ------------------------------------------------------------


def test_logs_are_ndjson_with_run_ids_and_reasons(make_app: MakeApp) -> None:
    app = make_app()
    app.run(payload())
    app.run(payload(mode="smoke"))
    lines = app.log_lines()
    assert all(is_valid("log_line", line) for line in lines)
    events = [(line["event"], line.get("execution_id")) for line in lines]
    assert ("http.run.start", "e-1") in events and ("http.run.settle", "e-1") in events
    settle = next(line for line in lines if line["event"] == "http.run.settle")
    assert settle["status"] == "success" and settle["trace_id"] == "t-1" and "elapsed_ms" in settle
    (error,) = [line for line in lines if line["event"] == "http.run.error"]
    assert error["reason"] == "ERR_MODE"


def test_secret_values_are_redacted_everywhere(make_app: MakeApp) -> None:
    canary = "sk-canary-7f3a9c"

    def leaky(ctx: RunContext) -> Result:
        ctx.log("handler.leak", key=ctx.secrets["OPENAI_API_KEY"])
        ctx.emit("token", {"text": ctx.secrets["OPENAI_API_KEY"]})
        secret = ctx.secrets["OPENAI_API_KEY"]
        return Result(
            [Output("text/response.txt", f"key={secret}".encode())], f"info {secret}", {secret: 1}
        )

    app = make_app(leaky, environ={"OPENAI_API_KEY": canary})
    body = payload(mode="real")
    seen = [
        app.run(body).text,
        *(e.data for e in app.stream({**body, "execution_id": "e-2"})),
        app.log.getvalue(),
    ]
    seen += [p.read_text() for p in app.world.rglob("*") if p.is_file()]
    assert all(canary not in text for text in seen)
    assert any("[REDACTED]" in text for text in seen)


def test_log_lines_survive_unicode_line_separators(make_app: MakeApp) -> None:
    """A trace id holding U+0085 or U+2028 must not split a log line for any reader."""
    app = make_app()
    app.run(payload(meta={"trace_id": "a\u0085b\u2028c"}))
    text = app.log.getvalue()
    assert text.splitlines() == text.split("\n")[:-1]
    assert all(json.loads(line) for line in text.splitlines())


# -- hardening (issue 16) ---------------------------------------------------------------


def test_a_secret_split_across_tokens_is_redacted(make_app: MakeApp) -> None:
    secret = "sk-split-0123456789"

    def echo(ctx: RunContext) -> Result:
        text = f"the key: {ctx.secrets['OPENAI_API_KEY']}!"
        for i in range(0, len(text), 3):
            ctx.emit("token", {"text": text[i : i + 3]})
        ctx.emit("progress", {"stage": "between"})
        ctx.emit("token", {"text": "end"})
        return Result([Output("metadata.json", b"{}")], "t")

    app = make_app(echo, environ={"OPENAI_API_KEY": secret})
    events = app.stream(payload(mode="real"))
    tokens = "".join(json.loads(e.data)["text"] for e in events if e.event == "token")
    assert tokens == "the key: [REDACTED]!end"
    # Held-back text is sent before any other event, so the order of the text holds.
    between = next(i for i, e in enumerate(events) if "between" in e.data)
    before = "".join(json.loads(e.data)["text"] for e in events[:between] if e.event == "token")
    assert before == "the key: [REDACTED]!"
    assert all(secret not in e.data for e in events)


def test_non_finite_numbers_in_inputs_are_err_inputs(make_app: MakeApp) -> None:
    from pytest_theory.processors.replicate_generic.app.handler import handle
    from tests.processors.conftest import REGISTRY

    app = make_app(handle, registry_path=REGISTRY.get_spec("replicate/generic@1").path)
    body = json.dumps(
        payload(
            ref="replicate/generic@1",
            inputs={"schema": "v1", "params": {"model": "a/b", "input": {"x": 12345}}},
        )
    ).replace("12345", "1e999")
    response = app.run(content=body.encode(), headers={"content-type": "application/json"})
    assert_error(response, "ERR_INPUTS", 400)
    assert app.files() == []


def test_an_execution_id_with_a_trailing_newline_is_refused(make_app: MakeApp) -> None:
    app = make_app()
    envelope = assert_error(app.run(payload(execution_id="e-1\n")), "ERR_PAYLOAD", 400)
    assert envelope["execution_id"] == ""
    assert app.files() == []


def test_a_trailing_slash_is_not_redirected(make_app: MakeApp) -> None:
    response = make_app().request("POST", "/run/", json=payload(), headers={"host": "evil.example"})
    assert response.status_code == 404 and "location" not in response.headers


def test_a_body_that_trickles_is_cut_off(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from pytest_theory.processors.runtime import app as runtime_app

    monkeypatch.setattr(runtime_app, "BODY_READ_TIMEOUT_S", 0.2)

    async def trickle() -> Any:
        yield b"{"
        await asyncio.sleep(5)  # fault: a client that stops sending mid-body
        yield b"}"

    response = make_app().run(content=trickle(), headers={"content-type": "application/json"})
    envelope = assert_error(response, "ERR_PAYLOAD", 400)
    assert envelope["error"]["message"] == "the body did not arrive within 0.2s"


def test_the_commit_gate_decides_once() -> None:
    from pytest_theory.processors.runtime.world import CommitGate

    gate = CommitGate()
    assert gate.cancel() and not gate.claim()
    gate = CommitGate()
    assert gate.claim() and not gate.cancel()


# -- the receipt's mode, time and duration (issue 20) ---------------------------------


class Clock:
    """A monotonic clock that moves only when told: the runtime's ``time`` in these tests."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def written_receipts(app: App, execution_id: str = "e-1") -> tuple[dict[str, Any], dict[str, Any]]:
    receipt = json.loads(
        app.world.joinpath(f"outputs/demo/{execution_id}/receipt.json").read_bytes()
    )
    determinism = json.loads(
        app.world.joinpath(f"execution/{execution_id}/determinism.json").read_bytes()
    )
    return receipt, determinism


@pytest.mark.parametrize("mode", ["mock", "real"])
def test_the_receipt_records_the_runs_mode(make_app: MakeApp, mode: str) -> None:
    seen: list[str] = []

    def handler(ctx: RunContext) -> Result:
        seen.append(ctx.mode)
        return Result([Output("metadata.json", b"{}")], "t")

    app = make_app(handler, environ={"OPENAI_API_KEY": "sk-present"})
    assert app.run(payload(mode=mode)).status_code == 200
    receipt, determinism = written_receipts(app)
    assert seen == [mode] and receipt["mode"] == mode
    assert determinism["memo_key"] == memo_key(
        ref="llm/litellm@1",
        image_digest=DIGEST,
        mode=mode,
        inputs_hash=inputs_hash(payload()["inputs"]),
    )


def test_the_receipt_time_is_the_clocks_at_the_run(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_theory.processors.runtime import app as runtime_app

    stamps = iter(["2031-05-06T07:08:09.123Z", "2032-01-02T03:04:05.006Z"])
    monkeypatch.setattr(runtime_app, "utc_timestamp", lambda: next(stamps))
    app = make_app()
    for execution_id in ("e-1", "e-2"):
        assert app.run(payload(execution_id=execution_id)).status_code == 200
    assert written_receipts(app, "e-1")[0]["timestamp_utc"] == "2031-05-06T07:08:09.123Z"
    assert written_receipts(app, "e-2")[0]["timestamp_utc"] == "2032-01-02T03:04:05.006Z"


def test_utc_timestamp_is_rfc3339_utc_to_the_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from pytest_theory.processors.runtime import logs

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            assert tz is UTC, "the time is taken in UTC"
            return datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

    monkeypatch.setattr(logs, "datetime", Frozen)
    assert logs.utc_timestamp() == "2031-05-06T07:08:09.123Z"


def test_the_duration_is_the_runs_elapsed_time(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """duration_ms (receipt and envelope) and the settle line's elapsed_ms follow the clock
    from the request's start: the handler moves the injected clock, nothing waits."""
    from pytest_theory.processors.runtime import app as runtime_app

    clock = Clock()
    monkeypatch.setattr(runtime_app, "time", clock)

    def slow(ctx: RunContext) -> Result:
        clock.now += 1.2345
        return Result([Output("metadata.json", b"{}")], "t")

    app = make_app(slow)
    envelope = app.run(payload()).json()
    receipt, _ = written_receipts(app)
    assert receipt["duration_ms"] == envelope["meta"]["duration_ms"] == 1234
    (settle,) = [line for line in app.log_lines() if line["event"] == "http.run.settle"]
    assert settle["elapsed_ms"] == 1234


# -- what a handler is given, and what the runtime says (mutation score, issue 20) ------------


@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
def test_the_handler_gets_the_runs_context(make_app: MakeApp, stream: bool) -> None:
    from pytest_theory.contracts.hashing import seed_for

    seen: list[RunContext] = []

    def handler(ctx: RunContext) -> Result:
        seen.append(ctx)
        ctx.log("handler.note", "warn", detail=7)
        ctx.log("handler.plain")
        return Result([Output("metadata.json", b"{}")], "t")

    app = make_app(handler)
    body = payload(execution_id="e-7", meta={"trace_id": "t-7"})
    if stream:
        app.stream(body)
    else:
        app.run(body)
    (ctx,) = seen
    ihash = inputs_hash(body["inputs"])
    assert (ctx.execution_id, ctx.trace_id, ctx.ref, ctx.mode) == (
        "e-7",
        "t-7",
        "llm/litellm@1",
        "mock",
    )
    assert (ctx.inputs, ctx.inputs_hash, ctx.seed) == (body["inputs"], ihash, seed_for(ihash))
    assert ctx.streaming is stream and ctx.is_mock and ctx.params == body["inputs"]["params"]
    assert not ctx.cancelled.is_set() and dict(ctx.secrets) == {}
    notes = [line for line in app.log_lines() if line["event"].startswith("handler.")]
    assert [(n["event"], n["level"]) for n in notes] == [
        ("handler.note", "warn"),
        ("handler.plain", "info"),
    ]
    assert all((n["execution_id"], n["trace_id"]) == ("e-7", "t-7") for n in notes)
    assert notes[0]["detail"] == 7


def test_the_trace_id_defaults_to_the_execution_id(make_app: MakeApp) -> None:
    seen: list[RunContext] = []

    def handler(ctx: RunContext) -> Result:
        seen.append(ctx)
        return Result([Output("metadata.json", b"{}")], "t")

    app = make_app(handler)
    body = payload(execution_id="e-8")
    del body["meta"]
    assert app.run(body).status_code == 200
    assert seen[0].trace_id == "e-8"
    settle = next(line for line in app.log_lines() if line["event"] == "http.run.settle")
    assert (settle["execution_id"], settle["trace_id"]) == ("e-8", "e-8")


def test_a_stream_reports_its_stages_around_the_handlers_events(make_app: MakeApp) -> None:
    def handler(ctx: RunContext) -> Result:
        ctx.emit("log", {"message": "m"})
        return Result([Output("metadata.json", b"{}")], "t")

    events = make_app(handler).stream(payload())
    assert [(e.event, json.loads(e.data)) for e in events[:-1]] == [
        ("progress", {"stage": "running"}),
        ("log", {"message": "m"}),
        ("progress", {"stage": "writing"}),
    ]


def test_a_handler_emitting_an_unknown_event_fails_as_internal(make_app: MakeApp) -> None:
    def handler(ctx: RunContext) -> Result:
        ctx.emit("debug", {"x": 1})
        return Result([Output("metadata.json", b"{}")], "t")

    app = make_app(handler)
    events = app.stream(payload())
    assert [e.event for e in events] == ["progress", "done"]
    assert json.loads(events[-1].data)["error"]["code"] == "ERR_INTERNAL"
    assert app.files() == []


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([Output("elsewhere.txt", b"x")], "the handler produced an output registry.yaml does not declare"),
        ([Output("files/a", b"1"), Output("files/a", b"2")], "the handler produced one output path twice"),
        ([Output("files/", b"x")], "an output path escapes P/outputs/"),
        ([Output("files/../../receipt.json", b"x")], "output path refused: "),
    ],
    ids=["undeclared", "twice", "a-folder", "dot-dot"],
)  # fmt: skip
def test_a_handlers_bad_outputs_are_internal_errors_saying_why(
    make_app: MakeApp, outputs: list[Output], message: str
) -> None:
    """replicate/generic@1 declares ``files/*``: a glob that also matches bad paths."""
    from tests.processors.conftest import REGISTRY

    app = make_app(
        lambda ctx: Result(outputs, "t"),
        registry_path=REGISTRY.get_spec("replicate/generic@1").path,
    )
    inputs = {"schema": "v1", "params": {"model": "a/b", "input": {}}}
    body = payload(ref="replicate/generic@1", inputs=inputs)
    envelope = assert_error(app.run(body), "ERR_INTERNAL", 500)
    assert envelope["error"]["message"].startswith(message)
    assert message.endswith(": ") or envelope["error"]["message"] == message
    assert app.files() == []
    (error,) = [line for line in app.log_lines() if line["event"] == "http.run.error"]
    assert (error["reason"], error["level"]) == ("ERR_INTERNAL", "error")
    assert error["message"] == envelope["error"]["message"]


def test_an_injected_provider_failure_says_so(make_app: MakeApp) -> None:
    env = {"THEORY_FAULT_INJECTION": "1"}
    envelope = assert_error(
        make_app(environ=env).run(payload(meta={"fault": "provider"})), "ERR_PROVIDER", 502
    )
    assert envelope["error"]["message"] == "injected provider failure"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"mode": "smoke"}, "ERR_MODE"),
        ({"write_prefix": "/plan/{execution_id}/"}, "ERR_WRITE_PREFIX"),
        ({"inputs": {"schema": "v1", "params": {}}}, "ERR_INPUTS"),
    ],
)
def test_a_refusal_names_the_execution_id_when_it_is_valid(
    make_app: MakeApp, change: dict[str, Any], code: str
) -> None:
    envelope = assert_error(make_app().run(payload(execution_id="e-5", **change)), code, 400)
    assert envelope["execution_id"] == "e-5"


def test_only_token_text_is_held_back_and_no_empty_token_is_sent(make_app: MakeApp) -> None:
    """With a secret set, token text is held back while a secret could be starting in it;
    a log event's text is not a token's, and a token with nothing to release is not sent."""

    def handler(ctx: RunContext) -> Result:
        ctx.emit("log", {"text": "a log line", "n": 1})
        for piece in ("ab", "cd", "ef"):
            ctx.emit("token", {"text": piece})
        return Result([Output("metadata.json", b"{}")], "t")

    app = make_app(handler, environ={"OPENAI_API_KEY": "sk-0123456789"})
    events = [(e.event, json.loads(e.data)) for e in app.stream(payload(mode="real"))[:-1]]
    assert ("log", {"text": "a log line", "n": 1}) in events
    tokens = [data for event, data in events if event == "token"]
    assert tokens == [{"text": "abcdef"}]


@pytest.mark.parametrize(
    "inputs",
    [
        {"schema": "v1", "params": {"model": "m", "messages": [{"role": "user", "content": "a\ud800"}]}},
        {"schema": "v1", "params": {"model": "m", "messages": [{"role": "user", "\udfff": "x"}]}},
    ],
    ids=["in-a-value", "in-a-key"],
)  # fmt: skip
def test_a_lone_surrogate_anywhere_in_a_valid_payload_is_refused(
    make_app: MakeApp, inputs: dict[str, Any]
) -> None:
    body = json.dumps(payload(inputs=inputs)).encode()  # ASCII, the surrogate \u-escaped
    app = make_app()
    response = app.run(content=body, headers={"content-type": "application/json"})
    envelope = assert_error(response, "ERR_PAYLOAD", 400)
    assert envelope["error"]["message"] == "body holds an unpaired UTF-16 surrogate"
    assert app.files() == []


def test_the_refusal_messages_of_validation(make_app: MakeApp, tmp_path: Path) -> None:
    app = make_app()
    mode = assert_error(app.run(payload(mode="smoke")), "ERR_MODE", 400)
    assert mode["error"]["message"] == "mode must be 'mock' or 'real'"
    bad = {"schema": "v1", "params": {"model": "m"}}
    inputs = assert_error(app.run(payload(inputs=bad)), "ERR_INPUTS", 400)
    assert inputs["error"]["message"].startswith("inputs.params: ")
    huge = json.dumps(payload()).replace('"hello"', '"hello", "n": 12345').replace("12345", "1e999")
    finite = app.run(content=huge.encode(), headers={"content-type": "application/json"})
    assert assert_error(finite, "ERR_INPUTS", 400)["error"]["message"] == (
        "inputs hold a number too large for a JSON double"
    )
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        LLM.path.read_text().replace(
            "required: [OPENAI_API_KEY]", "required: [OPENAI_API_KEY, B_KEY]"
        )
    )
    two = make_app(registry_path=registry).run(payload(mode="real"))
    assert assert_error(two, "ERR_MISSING_SECRET", 500)["error"]["message"] == (
        "required secret(s) not set: OPENAI_API_KEY, B_KEY"
    )


def test_a_failure_outside_any_run_is_still_a_canonical_envelope(make_app: MakeApp) -> None:
    """What escapes the run's own handling (here: validation itself failing) reaches the app's
    last handler, which answers ERR_INTERNAL without details and logs the exception's type."""
    import asyncio

    import httpx

    app = make_app()
    processor = app.app.state.processor

    def broken(payload: Any) -> Any:
        raise LookupError("secret-looking detail")

    processor.validate = broken

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://processor") as client:
            return await client.post("/run", json=payload())

    envelope = assert_error(asyncio.run(post()), "ERR_INTERNAL", 500)
    assert (envelope["execution_id"], envelope["error"]["message"]) == ("", "internal error")
    (line,) = [line for line in app.log_lines() if line["event"] == "http.unhandled"]
    assert (line["level"], line["exc_type"]) == ("error", "LookupError")


def crash(ctx: RunContext) -> Result:
    raise KeyError("detail")


def cancelled_itself(ctx: RunContext) -> Result:
    from pytest_theory.processors.runtime import RunCancelled

    raise RunCancelled()


def refuse_upstream(ctx: RunContext) -> Result:
    raise ProviderError("upstream said no")


@pytest.mark.parametrize(
    ("handler", "change", "status", "code", "message", "level"),
    [
        (crash, {}, 500, "ERR_INTERNAL", "the processor failed unexpectedly", "error"),
        (cancelled_itself, {}, 504, "ERR_TIMEOUT", "the run exceeded runtime.timeout_s", "error"),
        (refuse_upstream, {}, 502, "ERR_PROVIDER", "upstream said no", "error"),
        (None, {"mode": "smoke"}, 400, "ERR_MODE", "mode must be 'mock' or 'real'", "warn"),
    ],
    ids=["crash", "cancelled", "provider", "refused"],
)
def test_every_failed_run_leaves_its_trail_in_the_log(
    make_app: MakeApp,
    handler: Any,
    change: dict[str, Any],
    status: int,
    code: str,
    message: str,
    level: str,
) -> None:
    app = make_app(handler) if handler else make_app()
    body = payload(execution_id="e-4", meta={"trace_id": "t-4"}, **change)
    envelope = assert_error(app.run(body), code, status)
    assert (envelope["execution_id"], envelope["error"]["message"]) == ("e-4", message)
    trail = [line for line in app.log_lines() if line["event"].startswith(("http.", "handler."))]
    ids = {"execution_id": "e-4", "trace_id": "t-4"}
    assert trail[0] == {**trail[0], "event": "http.run.start", "ref": "llm/litellm@1", **ids}
    *middle, error, settle = trail[1:]
    if handler is crash:
        (exception,) = middle
        assert exception == {**exception, "event": "handler.exception", "level": "error", **ids}
        assert exception["exc_type"] == "KeyError" and "detail" not in json.dumps(exception)
    else:
        assert middle == []
    expected_error = {"event": "http.run.error", "level": level, "reason": code, "message": message}
    assert error == {**error, **expected_error, **ids}
    expected_settle = {"event": "http.run.settle", "status": "error", "http_status": status}
    assert settle == {**settle, **expected_settle, **ids}
    assert isinstance(settle["elapsed_ms"], int)


def test_a_timed_out_run_answers_with_its_execution_id_and_logs_it(make_app: MakeApp) -> None:
    release = threading.Event()

    def stuck(ctx: RunContext) -> Result:
        release.wait(30)
        return Result([Output("metadata.json", b"{}")], "t")

    app = make_app(stuck, environ={"THEORY_TIMEOUT_S": "0.1"})
    try:
        envelope = assert_error(app.run(payload(execution_id="e-3")), "ERR_TIMEOUT", 504)
    finally:
        release.set()
    assert (envelope["execution_id"], envelope["error"]["message"]) == (
        "e-3",
        "the run exceeded runtime.timeout_s",
    )
    (error,) = [line for line in app.log_lines() if line["event"] == "http.run.error"]
    assert (error["reason"], error["level"], error["execution_id"]) == (
        "ERR_TIMEOUT",
        "error",
        "e-3",
    )
    settle = next(line for line in app.log_lines() if line["event"] == "http.run.settle")
    assert (settle["status"], settle["http_status"]) == ("error", 504)


def test_a_success_settles_with_status_200(make_app: MakeApp) -> None:
    app = make_app()
    assert app.run(payload()).status_code == 200
    settle = next(line for line in app.log_lines() if line["event"] == "http.run.settle")
    assert (settle["status"], settle["http_status"], settle["level"]) == ("success", 200, "info")
    assert not [line for line in app.log_lines() if line["event"] == "http.run.error"]


def test_handlers_run_in_the_processors_own_threads(make_app: MakeApp) -> None:
    names: list[str] = []

    def handler(ctx: RunContext) -> Result:
        names.append(threading.current_thread().name)
        return Result([Output("metadata.json", b"{}")], "t")

    make_app(handler).run(payload())
    assert names[0].startswith("handler")


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        ([1, 2], ("", "")),
        ({"execution_id": 5, "meta": {"trace_id": "t-1"}}, ("", "t-1")),
        ({"execution_id": "e-9", "meta": "not an object"}, ("e-9", "e-9")),
        ({"execution_id": "e-9", "meta": {"trace_id": 3}}, ("e-9", "e-9")),
        ({"execution_id": "x" * 300, "meta": {"trace_id": "t" * 300}}, ("x" * 128, "t" * 256)),
        ({"execution_id": "x" * 300}, ("x" * 128, "x" * 256)),
    ],
    ids=["array", "numeric-id", "meta-text", "numeric-trace", "long", "long-no-trace"],
)
def test_a_refused_request_is_logged_with_the_ids_it_names(
    make_app: MakeApp, body: Any, ids: tuple[str, str]
) -> None:
    app = make_app()
    assert app.run(body).status_code == 400
    for line in app.log_lines():
        if line["event"].startswith("http.run."):
            assert (line["execution_id"], line["trace_id"]) == ids, line


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", " application/json ;x=y"],
)
def test_json_is_recognised_by_its_media_type(make_app: MakeApp, content_type: str) -> None:
    body = json.dumps(payload()).encode()
    assert make_app().run(content=body, headers={"content-type": content_type}).status_code == 200


def test_the_app_serves_its_openapi_document_and_nothing_else_of_fastapis(
    make_app: MakeApp,
) -> None:
    from pytest_theory.contracts.openapi import openapi_document

    app = make_app()
    document = app.request("GET", "/openapi.json")
    assert document.status_code == 200
    assert document.json() == openapi_document(
        title="llm/litellm@1",
        version="1",
        inputs_schema=app.app.state.processor.config.inputs_schema,
        ref="llm/litellm@1",
    )
    for path in ("/docs", "/redoc"):
        missing = app.request("GET", path)
        assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    wrong = app.request("GET", "/run")
    assert (wrong.status_code, wrong.json()) == (405, {"detail": "Method Not Allowed"})
    assert wrong.headers["allow"] == "POST"
    answer = app.run(payload())
    assert answer.headers["content-type"] == "application/json"


def test_the_app_says_it_started_with_its_digest(make_app: MakeApp) -> None:
    app = make_app(environ={"THEORY_FAULT_INJECTION": "1"})
    (start,) = [line for line in app.log_lines() if line["event"] == "processor.start"]
    assert start == {
        **start,
        "ref": "llm/litellm@1",
        "image_digest": DIGEST,
        "fault_injection": True,
        "service": "llm/litellm@1",
    }


def test_a_hosted_app_takes_the_hosts_environment_world_and_log(tmp_path: Path) -> None:
    import io

    from pytest_theory.processors.llm_litellm.app.handler import handle
    from pytest_theory.processors.runtime import create_app, hosted

    log = io.StringIO()
    with hosted({"IMAGE_DIGEST": DIGEST, "CI": "true"}, tmp_path / "w", log):
        app = create_app(handle, registry_path=LLM.path)
        own_log = io.StringIO()
        explicit = create_app(
            handle, registry_path=LLM.path, environ={}, artifacts_root=tmp_path / "x",
            log_stream=own_log,
        )  # fmt: skip
    config = app.state.processor.config
    assert (dict(config.environ), config.artifacts_root) == (
        {"IMAGE_DIGEST": DIGEST, "CI": "true"},
        tmp_path / "w",
    )
    assert '"processor.start"' in log.getvalue()
    other = explicit.state.processor.config
    assert (dict(other.environ), other.artifacts_root) == ({}, tmp_path / "x")
    assert log.getvalue().count("processor.start") == 1
    assert own_log.getvalue().count("processor.start") == 1
    outside = create_app(handle, registry_path=LLM.path, environ={}, log_stream=io.StringIO())
    assert outside.state.processor.config.artifacts_root == Path("/artifacts")


def test_the_handler_api_defaults(make_app: MakeApp) -> None:
    """ProviderError's own message, params of inputs without any, and the cancel check."""
    from pytest_theory.processors.runtime import RunCancelled

    envelope = assert_error(
        make_app(lambda ctx: (_ for _ in ()).throw(ProviderError())).run(payload()),
        "ERR_PROVIDER",
        502,
    )
    assert envelope["error"]["message"] == "the upstream provider failed"
    ctx = RunContext(
        execution_id="e", trace_id="t", ref="r", mode="real", inputs={"schema": "v1"},
        inputs_hash="h", seed=1, secrets={}, emit=lambda e, d: None, log=lambda *a, **k: None,
        read_artifact=lambda p, c: b"", cancelled=threading.Event(),
    )  # fmt: skip
    assert ctx.params == {} and not ctx.is_mock and ctx.streaming is False
    ctx.check_cancelled()
    ctx.cancelled.set()
    with pytest.raises(RunCancelled):
        ctx.check_cancelled()
    assert Result([], "p").usage == {}


def test_an_injected_timeout_lasts_until_the_runs_timeout(make_app: MakeApp) -> None:
    """The injected fault waits on the run's cancellation; its own backstop bound lies beyond
    runtime.timeout_s, so even at 2.5 s the answer is the timeout, not a late success."""
    env = {"THEORY_FAULT_INJECTION": "1", "THEORY_TIMEOUT_S": "2.5"}
    assert_error(make_app(environ=env).run(payload(meta={"fault": "timeout"})), "ERR_TIMEOUT", 504)


def test_a_commit_failing_midway_removes_what_it_placed_and_the_folders_it_made(
    tmp_path: Path,
) -> None:
    """The first unit is placed (making its parent folders), the second one's parent is a
    file: the commit is refused, the first unit goes back, and the folders made go too."""
    from pytest_theory.contracts.errors import ContractError
    from pytest_theory.processors.runtime.world import CommitGate, PlannedFile, World

    (tmp_path / "a-file-here").write_bytes(b"not a folder")
    first, second = "/artifacts/n1/n2/p/", "/artifacts/a-file-here/q/r/"
    files = [PlannedFile(first + "x.txt", b"x"), PlannedFile(second + "y.txt", b"y")]
    with pytest.raises(ContractError) as refused:
        World(tmp_path).commit(files, units=[first, second], gate=CommitGate())
    assert refused.value.code.value == "ERR_WRITE_PREFIX"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file-here"]


def test_a_body_that_is_not_json_by_its_type_says_so(make_app: MakeApp) -> None:
    response = make_app().run(content=b"{}", headers={"content-type": "text/plain"})
    envelope = assert_error(response, "ERR_PAYLOAD", 415)
    assert envelope["error"]["message"] == "Content-Type must be application/json"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe{}", "body is not valid UTF-8"),
        (b'{"a": NaN}', "body is not acceptable JSON"),
        (b"[1]", "body must be a JSON object"),
    ],
)
def test_an_unreadable_body_says_why(make_app: MakeApp, content: bytes, message: str) -> None:
    response = make_app().run(content=content, headers={"content-type": "application/json"})
    assert assert_error(response, "ERR_PAYLOAD", 400)["error"]["message"] == message


def test_nan_is_refused_as_json_even_where_the_inputs_would_take_a_number(
    make_app: MakeApp,
) -> None:
    body = json.dumps(payload(meta={"trace_id": "t", "n": 1})).replace('"n": 1', '"n": NaN')
    response = make_app().run(content=body.encode(), headers={"content-type": "application/json"})
    assert assert_error(response, "ERR_PAYLOAD", 400)["error"]["message"] == (
        "body is not acceptable JSON"
    )


def test_a_body_of_exactly_the_limit_is_read(make_app: MakeApp) -> None:
    body = json.dumps(payload()).encode()
    app = make_app(environ={"THEORY_MAX_BODY_BYTES": str(len(body))})
    assert app.run(content=body, headers={"content-type": "application/json"}).status_code == 200
    chunks = iter([body[:10], body[10:]])

    async def streamed() -> Any:
        for chunk in chunks:
            yield chunk

    response = app.run(
        content=streamed(), headers={"content-type": "application/json"}
    )  # no Content-Length: counted while reading
    assert response.status_code == 200, response.text


# -- what the app takes from its registry and its environment -----------------------------


def test_an_attachment_over_the_registrys_artifact_limit_is_refused(
    make_app: MakeApp, tmp_path: Path
) -> None:
    """runtime.max_artifact_bytes in registry.yaml bounds every $artifact the app reads."""
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        LLM.path.read_text().replace("timeout_s: 600,", "timeout_s: 600, max_artifact_bytes: 8,")
    )
    app = make_app(registry_path=registry)
    (app.world / "inputs").mkdir()
    (app.world / "inputs" / "note.txt").write_bytes(b"nine byte")
    part = {"$artifact": "/artifacts/inputs/note.txt", "mime": "text/plain"}
    part["cid"] = cid_of_bytes(b"nine byte")
    inputs = {
        "schema": "v1",
        "params": {"model": "m", "messages": [{"role": "user", "content": [part]}]},
    }
    refused = assert_error(app.run(payload(inputs=inputs)), "ERR_INPUTS", 400)
    assert refused["error"]["message"] == "an $artifact exceeds 8 bytes"


def test_as_many_handlers_as_the_runtime_promises_run_at_once(make_app: MakeApp) -> None:
    """HANDLER_THREADS runs are inside their handlers together: none waits for a thread
    (a timed-out handler keeps its thread until it notices, so the pool is not the CPUs)."""
    import asyncio

    import httpx

    from pytest_theory.processors.llm_litellm.app.handler import handle
    from pytest_theory.processors.runtime.app import HANDLER_THREADS

    together = threading.Barrier(HANDLER_THREADS, timeout=30)

    def meet_then_answer(ctx: RunContext) -> Result:
        together.wait()
        return handle(ctx)

    app = make_app(meet_then_answer)

    async def all_at_once() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            runs = [
                client.post("/run", json=payload(execution_id=f"r-{i}"), timeout=60)
                for i in range(HANDLER_THREADS)
            ]
            return await asyncio.gather(*runs)

    answers = asyncio.run(all_at_once())
    assert [a.json()["status"] for a in answers] == ["success"] * HANDLER_THREADS


def test_an_app_that_owns_the_process_output_turns_logging_into_its_ndjson(
    taken_over: Any, tmp_path: Path
) -> None:
    """THEORY_LOG_STDIO=1 (the server process): stdlib logging lands in the app's log."""
    import logging

    from pytest_theory.processors.llm_litellm.app.handler import handle
    from pytest_theory.processors.runtime import create_app

    create_app(
        handle,
        registry_path=LLM.path,
        environ={"IMAGE_DIGEST": DIGEST, "THEORY_LOG_STDIO": "1"},
        artifacts_root=tmp_path,
        log_stream=taken_over,
    )
    logging.getLogger("some.library").warning("from a library")
    events = [json.loads(line) for line in taken_over.getvalue().splitlines()]
    assert [(e["event"], e.get("message")) for e in events][-1] == (
        "log.some.library",
        "from a library",
    )
