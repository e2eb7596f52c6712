"""Each assertion helper passes a real run and fails each way that run can break its rule.

The runs are real: llm/litellm@1's app served in-process, its answers and files as
written. Every break is one edit of that run (the envelope, a file, an event), and the
helper must fail with the message naming what broke (the first line of pytest's
rewritten message). Written for the mutation score of pytest_theory/asserts.py (issue 20).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from httpx_sse import ServerSentEvent

from pytest_theory import asserts
from pytest_theory.adapters import InprocessAdapter
from pytest_theory.contracts import canonical_json
from pytest_theory.driver import Driver, Run
from pytest_theory.registry import ProcessorSpec, Registry

DIGEST = "sha256:" + "ab" * 32
SPEC = Registry.discover().get_spec("llm/litellm@1")


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    adapter = InprocessAdapter(world_root=tmp_path / "world", image_digest=DIGEST)
    handle = adapter.acquire(SPEC)
    yield Driver(handle, SPEC, world=handle.world_root)
    adapter.close()


@pytest.fixture
def ran(driver: Driver) -> Run:
    run = driver.run()
    assert run.status == 200, run.text
    return run


def failure(check: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """The message ``check`` fails with, as written: pytest's rewriting appends its
    explanation and indents the message's continuation lines by two spaces."""
    with pytest.raises(AssertionError) as raised:
        check(*args, **kwargs)
    head, *rest = str(raised.value).split("\nassert ")[0].split("\n")
    return "\n".join([head, *(line.removeprefix("  ") for line in rest)])


def with_envelope(run: Run, change: Callable[[dict[str, Any]], Any]) -> Run:
    envelope = json.loads(run.text)
    change(envelope)
    return replace(run, text=json.dumps(envelope))


def rewrite(run: Run, world_path: str, document: Any) -> None:
    run.host_path(world_path).write_bytes(
        document if isinstance(document, bytes) else json.dumps(document).encode()
    )


# -- envelopes --------------------------------------------------------------------------


def test_assert_envelope(ran: Run) -> None:
    envelope = ran.envelope
    assert asserts.assert_envelope(envelope) is envelope
    assert asserts.assert_envelope(envelope, "envelope_success") is envelope
    message = failure(asserts.assert_envelope, envelope, "envelope_error")
    assert message.startswith("not a valid envelope_error:\n  ")
    assert message.endswith(f"\nreceived: {envelope!r}")
    assert failure(asserts.assert_envelope, {"status": "success"}).startswith(
        "not a valid envelope:\n  "
    )


def test_assert_success_passes_a_real_success(ran: Run) -> None:
    assert asserts.assert_success(ran) == ran.envelope
    assert asserts.assert_success(ran, image_digest=DIGEST) == ran.envelope


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.update(status="error"), "success envelope: expected {"),
        (lambda e: e.update(execution_id="other"), "success envelope: expected {"),
        (lambda e: e.update(index_path="/artifacts/x.json"), "success envelope: expected {"),
        (lambda e: e.update(outputs={}), "success envelope: expected {"),
        (lambda e: e.pop("outputs"), "success envelope: expected {"),
        (
            lambda e: e["meta"].update(env_fingerprint=""),
            "meta.env_fingerprint: expected a non-empty string, received ''",
        ),
        (
            lambda e: e["meta"].pop("env_fingerprint"),
            "meta.env_fingerprint: expected a non-empty string, received <missing>",
        ),
        (
            lambda e: e.update(meta=[]),
            "meta.env_fingerprint: expected a non-empty string, received <missing>",
        ),
    ],
    ids=[
        "status",
        "execution-id",
        "index-path",
        "outputs-object",
        "no-outputs",
        "empty-fingerprint",
        "no-fingerprint",
        "meta-not-object",
    ],
)
def test_assert_success_fails_each_field(
    ran: Run, change: Callable[[dict[str, Any]], Any], message: str
) -> None:
    assert failure(asserts.assert_success, with_envelope(ran, change)).startswith(message)


def test_assert_success_names_what_it_compared(ran: Run) -> None:
    broken = with_envelope(ran, lambda e: e.update(execution_id="other"))
    expected = {
        "status": "success",
        "execution_id": ran.execution_id,
        "index_path": ran.prefix + "outputs.json",
        "outputs is a list": True,
    }
    received = {**expected, "execution_id": "other"}
    assert failure(asserts.assert_success, broken) == (
        f"success envelope: expected {expected}, received {received}"
    )
    assert failure(asserts.assert_success, replace(ran, status=201)) == (
        f"expected HTTP 200, got 201: {ran.text[:500]}"
    )
    assert failure(asserts.assert_success, replace(ran, text="[1]")) == (
        "expected a JSON object, received: '[1]'"
    )
    other = "sha256:" + "cd" * 32
    assert failure(asserts.assert_success, ran, image_digest=other) == (
        f"meta.image_digest: expected {other} (IMAGE_DIGEST), received {DIGEST!r}"
    )


def test_assert_error_and_assert_canonical_error(driver: Driver) -> None:
    refused = driver.run(driver.payload(mode="smoke"))
    assert asserts.assert_error(refused, "ERR_MODE") == refused.envelope
    assert asserts.assert_error(refused, "ERR_MODE", 400) == refused.envelope
    assert failure(asserts.assert_error, refused, "ERR_MODE", 422) == (
        f"expected HTTP 422 with ERR_MODE, got HTTP 400: {refused.text[:500]}"
    )
    assert failure(asserts.assert_error, refused, "ERR_INTERNAL").startswith(
        "expected HTTP 500 with ERR_INTERNAL, got HTTP 400: "
    )
    not_json = replace(refused, text="oops")
    assert failure(asserts.assert_error, not_json, "ERR_MODE").startswith(
        "expected HTTP 400 with ERR_MODE, got HTTP 400: oops"
    )
    assert asserts.assert_canonical_error(refused) == refused.envelope
    assert asserts.assert_canonical_error(refused, image_digest=DIGEST) == refused.envelope
    other = "sha256:" + "cd" * 32
    assert failure(asserts.assert_canonical_error, refused, image_digest=other) == (
        f"meta.image_digest: expected {other} (IMAGE_DIGEST), received {DIGEST!r}"
    )
    assert failure(asserts.assert_canonical_error, replace(refused, status=500)) == (
        "HTTP 500 does not go with ERR_MODE"
    )
    for text in ("Traceback (most recent call last)", 'File "/srv/app/http.py", line 3'):
        leaky = with_envelope(refused, lambda e, t=text: e["error"].update(message=t))
        assert failure(asserts.assert_canonical_error, leaky) == "the message holds a traceback"
    assert failure(asserts.assert_canonical_error, driver.run()).startswith(
        "not a valid envelope_error:"
    )


# -- outputs and the index ----------------------------------------------------------------


def test_assert_outputs_passes_a_real_run(ran: Run) -> None:
    assert asserts.assert_outputs(ran, SPEC) == ran.envelope["outputs"]
    assert asserts.outputs_of(ran) == ran.envelope["outputs"]
    assert asserts.outputs_of(with_envelope(ran, lambda e: e.update(outputs={}))) == []


def test_assert_outputs_fails_each_way(ran: Run, tmp_path: Path) -> None:
    entry = ran.envelope["outputs"][0]
    path = entry["path"]

    def first(**changes: Any) -> Run:
        return with_envelope(ran, lambda e: e["outputs"][0].update(changes))

    unlisted = with_envelope(ran, lambda e: e.pop("outputs"))
    assert failure(asserts.assert_outputs, unlisted, SPEC) == (
        f"expected the envelope's outputs list, received: {unlisted.text[:500]}"
    )
    extra = with_envelope(ran, lambda e: e["outputs"][0].update(extra=1))
    assert failure(asserts.assert_outputs, extra, SPEC) == (
        f"output entry 0: expected the fields {sorted(asserts.ENTRY_KEYS)}, "
        f"received {extra.envelope['outputs'][0]!r}"
    )
    listed = with_envelope(ran, lambda e: e["outputs"].insert(0, "not an entry"))
    assert failure(asserts.assert_outputs, listed, SPEC).startswith("output entry 0: expected")
    outside = "/artifacts/elsewhere/x.txt"
    assert failure(asserts.assert_outputs, first(path=outside), SPEC) == (
        f"{outside} is not under {ran.prefix}outputs/"
    )
    undeclared = ran.prefix + "outputs/undeclared.bin"
    assert failure(asserts.assert_outputs, first(path=undeclared), SPEC) == (
        f"{undeclared} is not declared in registry.yaml outputs"
    )
    ran.host_path(path).unlink()
    assert failure(asserts.assert_outputs, ran, SPEC) == (
        f"{path} is listed but no such file was written"
    )


@pytest.mark.parametrize("field", ["cid", "size_bytes", "mime"])
def test_assert_outputs_compares_each_fact_of_the_bytes(ran: Run, field: str) -> None:
    entry = ran.envelope["outputs"][0]
    wrong = {"cid": "b3:" + "0" * 64, "size_bytes": entry["size_bytes"] + 1, "mime": "x/y"}
    broken = with_envelope(ran, lambda e: e["outputs"][0].update({field: wrong[field]}))
    expected = {k: entry[k] for k in ("cid", "size_bytes", "mime")}
    received = {**expected, field: wrong[field]}
    assert failure(asserts.assert_outputs, broken, SPEC) == (
        f"{entry['path']}: expected {expected}, received {received}"
    )


def test_assert_index_passes_a_real_run(ran: Run) -> None:
    assert asserts.assert_index(ran) == json.loads(ran.index_bytes)["outputs"]
    # The envelope may list the outputs in any order.
    assert asserts.assert_index(with_envelope(ran, lambda e: e["outputs"].reverse()))


def test_assert_index_fails_each_way(ran: Run) -> None:
    index = ran.prefix + "outputs.json"
    entries = json.loads(ran.index_bytes)["outputs"]
    rewrite(ran, index, b"{not json")
    assert failure(asserts.assert_index, ran) == f"{index} is not JSON: {b'{not json'!r}"
    rewrite(ran, index, canonical_json({"entries": entries}))
    assert failure(asserts.assert_index, ran).startswith('expected {"outputs": [...]}, received ')
    rewrite(ran, index, canonical_json({"outputs": entries[::-1]}))
    paths = [e["path"] for e in entries[::-1]]
    assert failure(asserts.assert_index, ran) == f"index entries are not sorted by path: {paths}"
    spaced = json.dumps({"outputs": entries}, sort_keys=True).encode()
    rewrite(ran, index, spaced)
    assert failure(asserts.assert_index, ran) == (
        "index bytes are not exactly json.dumps(sort_keys, compact):\n"
        f"expected {canonical_json({'outputs': entries})[:300]!r}\nreceived {spaced[:300]!r}"
    )
    rewrite(ran, index, canonical_json({"outputs": entries[:1]}))
    assert failure(asserts.assert_index, ran).startswith(
        "the index does not list exactly the envelope's outputs:\nexpected ["
    )
    ran.host_path(index).unlink()
    assert failure(asserts.assert_index, ran) == f"{index} is missing"


# -- receipts -----------------------------------------------------------------------------


def receipt_failure(run: Run, spec: ProcessorSpec = SPEC, **kwargs: Any) -> list[str]:
    message = failure(asserts.assert_receipts, run, spec, **kwargs)
    head, *problems = message.split("\n  ")
    assert head == "receipts:"
    return problems


def test_assert_receipts_passes_a_real_run(ran: Run) -> None:
    receipt, determinism = asserts.assert_receipts(ran, SPEC, image_digest=DIGEST)
    assert (receipt, determinism) == (ran.receipt, ran.determinism)
    assert asserts.assert_receipts(ran, SPEC) == (ran.receipt, ran.determinism)


def test_assert_receipts_checks_each_field_against_the_run(ran: Run) -> None:
    receipt_path = ran.prefix + "receipt.json"
    det_path = f"/artifacts/execution/{ran.execution_id}/determinism.json"
    other = "sha256:" + "cd" * 32
    assert receipt_failure(ran, image_digest=other) == [
        f"{receipt_path}: image_digest: expected {other!r}, received {DIGEST!r}",
        f"{det_path}: image_digest: expected {other!r}, received {DIGEST!r}",
    ]
    other_spec = Registry.discover().get_spec("replicate/generic@1")
    assert receipt_failure(ran, other_spec) == [
        f"{receipt_path}: processor_ref: expected 'replicate/generic@1', received 'llm/litellm@1'",
        f"{det_path}: processor_ref: expected 'replicate/generic@1', received 'llm/litellm@1'",
    ]
    real = replace(ran, payload={**ran.payload, "mode": "real"})
    assert receipt_failure(real) == [f"{receipt_path}: mode: expected 'real', received 'mock'"]
    changed = replace(ran, payload={**ran.payload, "inputs": {"schema": "v1", "params": {}}})
    problems = receipt_failure(changed)
    assert [p.split(":")[1] for p in problems] == [" inputs_hash", " inputs_hash"]
    elsewhere = replace(ran, payload={**ran.payload, "execution_id": "other-id"})
    assert receipt_failure(elsewhere)[0].endswith("is missing")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: r.pop("duration_ms"), "{receipt}: field duration_ms is missing"),
        (lambda r: r.pop("timestamp_utc"), "{receipt}: field timestamp_utc is missing"),
        (lambda r: r.pop("usage"), "{receipt}: field usage is missing"),
        (
            lambda r: r.update(outputs_index="/artifacts/x.json"),
            "{receipt}: outputs_index: expected '{index}', received '/artifacts/x.json'",
        ),
        (
            lambda r: r.update(hash_schema=""),
            "{receipt}: hash_schema: expected a non-empty string, received ''",
        ),
        (
            lambda r: r.update(hash_schema=3),
            "{receipt}: hash_schema: expected a non-empty string, received 3",
        ),
        (
            lambda r: r.update(output_cids=r["output_cids"][::-1]),
            "{receipt}: output_cids: expected",
        ),
    ],
    ids=[
        "duration",
        "timestamp",
        "usage",
        "outputs-index",
        "empty-hash-schema",
        "number-hash-schema",
        "unsorted-cids",
    ],
)
def test_assert_receipts_fails_each_receipt_break(
    ran: Run, edit: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    path = ran.prefix + "receipt.json"
    receipt = ran.receipt
    edit(receipt)
    rewrite(ran, path, receipt)
    problems = receipt_failure(ran)
    assert problems[0].startswith(expected.format(receipt=path, index=ran.prefix + "outputs.json"))


def test_assert_receipts_fails_each_determinism_break(ran: Run) -> None:
    path = f"/artifacts/execution/{ran.execution_id}/determinism.json"
    original = ran.determinism
    for name in asserts.DETERMINISM_FIELDS:
        rewrite(ran, path, {k: v for k, v in original.items() if k != name})
        assert f"{path}: field {name} is missing" in receipt_failure(ran)
    rewrite(ran, path, {**original, "memo_key": "m-1"})
    assert receipt_failure(ran) == [f"{path}: memo_key: expected b3:<64 hex>, received 'm-1'"]
    cids = original["output_cids"]
    rewrite(ran, path, {**original, "output_cids": cids[::-1]})
    assert receipt_failure(ran)[-1] == f"{path}: output_cids are not sorted: {cids[::-1]}"


def test_assert_receipts_fails_unreadable_receipts(ran: Run) -> None:
    path = ran.prefix + "receipt.json"
    rewrite(ran, path, b"{")
    assert receipt_failure(ran) == [f"{path} is not JSON"]
    rewrite(ran, path, [1, 2])
    assert receipt_failure(ran) == [f"{path}: expected a JSON object, received [1, 2]"]
    ran.host_path(path).unlink()
    assert receipt_failure(ran) == [f"{path} is missing"]


def test_a_receipt_listed_as_an_output_fails(ran: Run) -> None:
    receipt_path = ran.prefix + "receipt.json"
    data = ran.read(receipt_path)
    entry = {"path": receipt_path, "cid": "b3:" + "0" * 64, "size_bytes": len(data), "mime": "x"}
    listed = with_envelope(ran, lambda e: e["outputs"].append(entry))
    problems = receipt_failure(listed)
    assert problems[-1] == f"the receipt {receipt_path} is listed as an output"


# -- streams ------------------------------------------------------------------------------


def test_assert_stream_passes_a_real_stream(driver: Driver) -> None:
    streamed = driver.stream()
    assert asserts.assert_stream(streamed) == streamed.envelope
    assert streamed.envelope["status"] == "success"


def event(name: str, data: str = "{}") -> ServerSentEvent:
    return ServerSentEvent(event=name, data=data)


def test_assert_stream_fails_each_way(driver: Driver) -> None:
    streamed = driver.stream()
    done = streamed.events[-1]
    assert failure(asserts.assert_stream, replace(streamed, status=500)) == (
        "/run-stream answered HTTP 500"
    )
    plain = replace(streamed, headers={**streamed.headers, "content-type": "application/json"})
    assert failure(asserts.assert_stream, plain) == "content-type is 'application/json'"
    untyped = replace(streamed, headers={})
    assert failure(asserts.assert_stream, untyped) == "content-type is ''"
    cases = {
        "twice": ([event("progress"), done, done], "expected exactly one done event, got "),
        "none": ([event("progress")], "expected exactly one done event, got ['progress']"),
        "not-last": ([done, event("log")], "the stream does not end with done: ['done', 'log']"),
        "unknown": ([event("debug"), done], "unexpected event 'debug'"),
        "not-json": ([event("token", "{x"), done], "token data is not JSON: '{x'"),
        "not-object": ([event("log", "[1]"), done], "log data is not a JSON object: [1]"),
        "no-events": (None, "expected exactly one done event, got []"),
    }
    for name, (events, message) in cases.items():
        assert failure(asserts.assert_stream, replace(streamed, events=events)).startswith(
            message
        ), name
    for bad in ('{"status": "pending"}', "[]"):
        odd = replace(streamed, events=[event("done", bad)])
        assert failure(asserts.assert_stream, odd).startswith(
            "done data: expected an envelope (status success or error), received "
        )
    refused = replace(streamed, events=[event("done", '{"status": "error"}')])
    assert asserts.assert_stream(refused) == {"status": "error"}


# -- logs and secrets ---------------------------------------------------------------------

TS = "ts: expected an RFC 3339 string or a number, received "
LEVEL = "level: expected one of ('debug', 'info', 'warn', 'error'), received "
GOOD = {"ts": "2026-01-02T03:04:05.678Z", "level": "info", "event": "e", "service": "s"}


@pytest.mark.parametrize(
    "ts",
    [
        "2026-01-02T03:04:05Z",
        "2026-01-02t03:04:05.1z",
        "2026-01-02 03:04:05+01:00",
        "2026-01-02T03:04:05.123456-05:30",
        1767323045,
        1767323045.5,
        0,
    ],
)
def test_log_lines_with_an_rfc3339_or_numeric_ts_pass(ts: Any) -> None:
    assert asserts.log_line_problems({**GOOD, "ts": ts}) == []


@pytest.mark.parametrize(
    ("record", "problems"),
    [
        ([1], ["expected a JSON object, received [1]"]),
        ({}, ["ts is missing", "level is missing", "event is missing", "service is missing"]),
        ({**GOOD, "ts": "yesterday"}, [TS + "'yesterday'"]),
        ({**GOOD, "ts": "x2026-01-02T03:04:05Z"}, [TS + "'x2026-01-02T03:04:05Z'"]),
        ({**GOOD, "ts": "2026-01-02T03:04:05Zx"}, [TS + "'2026-01-02T03:04:05Zx'"]),
        ({**GOOD, "ts": "2026-01-02T03:04:05"}, [TS + "'2026-01-02T03:04:05'"]),
        ({**GOOD, "ts": True}, [TS + "True"]),
        ({**GOOD, "ts": None}, [TS + "None"]),
        ({**GOOD, "level": "warning"}, [LEVEL + "'warning'"]),
        ({**GOOD, "event": ""}, ["event: expected a non-empty string, received ''"]),
        ({**GOOD, "service": 3}, ["service: expected a non-empty string, received 3"]),
    ],
)  # fmt: skip
def test_log_line_problems_name_each_break(record: Any, problems: list[str]) -> None:
    assert asserts.log_line_problems(record) == problems


@pytest.mark.parametrize("level", asserts.LEVELS)
def test_every_level_of_spec_passes(level: str) -> None:
    assert asserts.log_line_problems({**GOOD, "level": level}) == []


def test_assert_ndjson_logs() -> None:
    line = json.dumps(GOOD)
    assert asserts.assert_ndjson_logs(f"{line}\n\n  \n{line}\n") == [GOOD, GOOD]
    assert asserts.assert_ndjson_logs("") == []
    assert failure(asserts.assert_ndjson_logs, f"{line}\nplain text\n") == (
        "stderr line 2 is not JSON: 'plain text'"
    )
    bad = json.dumps({**GOOD, "level": "loud"})
    assert failure(asserts.assert_ndjson_logs, f"{line}\n{line}\n{bad}") == (
        "stderr line 3: level: expected one of ('debug', 'info', 'warn', 'error'), "
        f"received 'loud': {bad!r}"
    )
    missing = json.dumps({"ts": 1, "level": "info"})
    assert failure(asserts.assert_ndjson_logs, missing) == (
        f"stderr line 1: event is missing; service is missing: {missing!r}"
    )


def test_assert_no_secret() -> None:
    secret = "sk-canary-0123"
    asserts.assert_no_secret(secret, ["clean", "", "sk-canary-012 almost"])
    before, after = "a" * 100, "b" * 60
    texts = ["clean", f"{before}{secret}{after}"]
    assert failure(asserts.assert_no_secret, secret, texts) == (
        f"the secret leaked (text 1): …{'a' * 80}[SECRET]{'b' * 40}…"
    )
    assert failure(asserts.assert_no_secret, secret, [f"{secret} twice {secret}"]) == (
        "the secret leaked (text 0): …[SECRET] twice [SECRET]…"
    )


# -- what each message quotes, and how much of it ------------------------------------------

LONG = "x" * 1000


def test_messages_quote_a_bounded_part_of_what_came_back(ran: Run, driver: Driver) -> None:
    text = json.dumps([LONG])
    assert failure(asserts.assert_success, replace(ran, text=text)) == (
        f"expected a JSON object, received: {text[:500]!r}"
    )
    assert failure(asserts.assert_error, replace(ran, status=400, text=text), "ERR_MODE") == (
        f"expected HTTP 400 with ERR_MODE, got HTTP 400: {text[:500]}"
    )
    assert failure(asserts.assert_outputs, replace(ran, text=text), SPEC) == (
        f"expected the envelope's outputs list, received: {text[:500]}"
    )
    index = ran.prefix + "outputs.json"
    raw = b"{" + LONG.encode()
    rewrite(ran, index, raw)
    assert failure(asserts.assert_index, ran) == f"{index} is not JSON: {raw[:300]!r}"
    raw = canonical_json({"entries": [LONG]})
    rewrite(ran, index, raw)
    assert failure(asserts.assert_index, ran) == (
        f'expected {{"outputs": [...]}}, received {raw[:300]!r}'
    )
    receipt = ran.prefix + "receipt.json"
    rewrite(ran, receipt, [LONG])
    (problem,) = receipt_failure(ran)
    assert problem == f"{receipt}: expected a JSON object, received {[LONG]!r}"[:300]
    streamed = driver.stream()
    bad = replace(streamed, events=[event("token", "{" + LONG), streamed.events[-1]])
    assert failure(asserts.assert_stream, bad) == f"token data is not JSON: {('{' + LONG)[:200]!r}"
    odd = {"status": LONG}
    weird = replace(streamed, events=[event("done", json.dumps(odd))])
    assert (
        failure(asserts.assert_stream, weird)
        == (f"done data: expected an envelope (status success or error), received {odd!r}"[:500])
    )
    assert failure(asserts.assert_ndjson_logs, LONG) == f"stderr line 1 is not JSON: {LONG[:300]!r}"
    record = json.dumps({**GOOD, "level": LONG})
    assert failure(asserts.assert_ndjson_logs, record).endswith(f": {record[:300]!r}")


def test_every_schema_problem_is_listed_on_its_own_line(ran: Run) -> None:
    from pytest_theory.contracts import schemas

    broken = {**ran.envelope, "status": "done", "index_path": 3}
    problems = schemas.problems("envelope_success", broken)
    assert len(problems) >= 2
    assert failure(asserts.assert_envelope, broken, "envelope_success") == (
        "not a valid envelope_success:\n  " + "\n  ".join(problems) + f"\nreceived: {broken!r}"
    )


def test_the_index_must_list_the_envelopes_own_entries(ran: Run) -> None:
    index = ran.prefix + "outputs.json"
    entries = json.loads(ran.index_bytes)["outputs"]
    entries[0] = {**entries[0], "cid": "b3:" + "0" * 64}
    rewrite(ran, index, canonical_json({"outputs": entries}))
    assert failure(asserts.assert_index, ran).startswith(
        "the index does not list exactly the envelope's outputs:\nexpected ["
    )


def test_an_output_entry_that_is_not_an_object_fails_as_such(ran: Run) -> None:
    listed = with_envelope(ran, lambda e: e["outputs"].insert(0, 5))
    assert failure(asserts.assert_outputs, listed, SPEC) == (
        f"output entry 0: expected the fields {sorted(asserts.ENTRY_KEYS)}, received 5"
    )


def test_a_leak_is_shown_where_it_first_occurs() -> None:
    secret = "sk-canary-0123"
    text = f"{secret}{'a' * 100}{secret}{'b' * 100}"
    assert failure(asserts.assert_no_secret, secret, [text]) == (
        f"the secret leaked (text 0): …[SECRET]{'a' * 40}…"
    )


def test_a_receipt_naming_another_execution_fails(ran: Run) -> None:
    receipt_path = ran.prefix + "receipt.json"
    rewrite(ran, receipt_path, {**ran.receipt, "execution_id": "other"})
    assert receipt_failure(ran) == [
        f"{receipt_path}: execution_id: expected {ran.execution_id!r}, received 'other'"
    ]


def test_a_missing_memo_key_is_reported_once(ran: Run) -> None:
    path = f"/artifacts/execution/{ran.execution_id}/determinism.json"
    rewrite(ran, path, {k: v for k, v in ran.determinism.items() if k != "memo_key"})
    assert receipt_failure(ran) == [f"{path}: field memo_key is missing"]


def test_an_output_path_that_is_not_text_is_not_read_for_the_receipts(ran: Run) -> None:
    """An entry without a text path is the outputs rule's to fail; the receipts are judged
    on the entries that name files."""
    odd = with_envelope(ran, lambda e: e["outputs"].append({"path": None}))
    assert asserts.assert_receipts(odd, SPEC) == (ran.receipt, ran.determinism)
