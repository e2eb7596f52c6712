"""Assertion helpers for processor runs, one per rule of the contract.

Registered for pytest's assertion rewriting, so a failure shows what was
expected and what came back. Each takes a ``Run`` (from the ``theory_run`` /
``theory_stream`` fixtures or a ``Driver``) and returns what it checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pytest_theory.contracts import schemas
from pytest_theory.contracts.errors import is_valid_status, status_for
from pytest_theory.contracts.hashing import (
    HASH_SCHEMA,
    canonical_json,
    cid_of_bytes,
    inputs_hash,
    memo_key,
    seed_for,
)
from pytest_theory.contracts.outputs import declared_output, relpath_of
from pytest_theory.contracts.worldpath import determinism_receipt_path, is_under
from pytest_theory.driver import Run
from pytest_theory.registry import ProcessorSpec

STREAM_EVENTS = ("progress", "log", "token")

__all__ = [
    "assert_canonical_error",
    "assert_envelope",
    "assert_error",
    "assert_index",
    "assert_ndjson_logs",
    "assert_no_secret",
    "assert_outputs",
    "assert_receipts",
    "assert_stream",
    "assert_success",
]


def _problems(name: str, instance: Any) -> str:
    return "\n  ".join(schemas.problems(name, instance))


def assert_envelope(envelope: Any, kind: str = "envelope") -> dict[str, Any]:
    """``envelope`` validates against the contract's envelope schema (``envelope_success``/``_error``)."""
    problems = _problems(kind, envelope)
    assert not problems, f"not a valid {kind}:\n  {problems}\nreceived: {envelope!r}"
    result: dict[str, Any] = envelope
    return result


def assert_success(run: Run, *, image_digest: str | None = None) -> dict[str, Any]:
    """HTTP 200 with a valid success envelope for this execution (and this image digest)."""
    assert run.status == 200, f"expected HTTP 200, got {run.status}: {run.text[:500]}"
    envelope = assert_envelope(run.envelope, "envelope_success")
    assert envelope["execution_id"] == run.execution_id
    if image_digest is not None:
        assert envelope["meta"]["image_digest"] == image_digest, (
            "meta.image_digest is not IMAGE_DIGEST"
        )
    assert envelope["meta"]["env_fingerprint"], "meta.env_fingerprint is empty"
    return envelope


def assert_error(run: Run, code: str, status: int | None = None) -> Any:
    """An error answer with ``code`` and its HTTP status (``status`` when SPEC allows several)."""
    expected_status = status if status is not None else status_for(code)
    envelope = run.envelope
    received = envelope.get("error", {}).get("code") if isinstance(envelope, dict) else None
    assert (run.status, received) == (expected_status, code), (
        f"expected HTTP {expected_status} with {code}, got HTTP {run.status}: {run.text[:500]}"
    )
    return envelope


def assert_canonical_error(run: Run, *, image_digest: str | None = None) -> dict[str, Any]:
    """A valid error envelope whose HTTP status goes with its code, carrying the image digest."""
    envelope = assert_envelope(run.envelope, "envelope_error")
    code = envelope["error"]["code"]
    assert is_valid_status(code, run.status), f"HTTP {run.status} does not go with {code}"
    if image_digest is not None:
        assert envelope["meta"]["image_digest"] == image_digest, (
            "meta.image_digest is not IMAGE_DIGEST"
        )
    message = envelope["error"]["message"]
    assert "Traceback" not in message and 'File "' not in message, "the message holds a traceback"
    return envelope


def assert_outputs(run: Run, spec: ProcessorSpec) -> list[dict[str, Any]]:
    """Every output lies under P/outputs/, is declared, and has the cid, size and mime of its bytes."""
    envelope = run.envelope
    outputs: list[dict[str, Any]] = envelope["outputs"]
    for entry in outputs:
        path = entry["path"]
        assert is_under(path, run.prefix + "outputs"), f"{path} is not under {run.prefix}outputs/"
        declared = declared_output(spec.outputs, relpath_of(path, run.prefix))
        assert declared is not None, f"{path} is not declared in registry.yaml outputs"
        data = run.read(path)
        assert (entry["cid"], entry["size_bytes"]) == (cid_of_bytes(data), len(data)), path
        assert entry["mime"] == declared["mime"], (
            f"{path}: mime {entry['mime']} is not {declared['mime']}"
        )
    return outputs


def assert_index(run: Run) -> list[dict[str, Any]]:
    """P/outputs.json is the canonical JSON of the envelope's outputs, sorted by path."""
    raw = run.index_bytes
    index = json.loads(raw)
    assert schemas.is_valid("outputs_index", index), _problems("outputs_index", index)
    entries: list[dict[str, Any]] = index["outputs"]
    paths = [e["path"] for e in entries]
    assert paths == sorted(paths), f"index entries are not sorted by path: {paths}"
    assert raw == canonical_json(index), (
        "index bytes are not exactly json.dumps(sort_keys, compact)"
    )

    def key(entry: Any) -> str:  # compared as sets: the envelope may list them in any order
        return json.dumps(entry, sort_keys=True)

    assert sorted(map(key, entries)) == sorted(map(key, run.envelope["outputs"])), (
        "the index does not list exactly the envelope's outputs"
    )
    return entries


def assert_receipts(run: Run, spec: ProcessorSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both receipts exist with their fields, agree with the run, and are not outputs."""
    assert run.exists(run.prefix + "receipt.json"), f"{run.prefix}receipt.json is missing"
    determinism_path = determinism_receipt_path(run.execution_id)
    assert run.exists(determinism_path), f"{determinism_path} is missing"
    receipt, determinism = run.receipt, run.determinism
    assert_envelope(receipt, "receipt")
    assert_envelope(determinism, "determinism")
    envelope = run.envelope
    digest = envelope["meta"]["image_digest"]
    ihash = inputs_hash(run.payload["inputs"])
    cids = sorted(o["cid"] for o in envelope["outputs"])
    expected = {
        "execution_id": run.execution_id,
        "processor_ref": str(spec.ref),
        "image_digest": digest,
        "env_fingerprint": envelope["meta"]["env_fingerprint"],
        "inputs_hash": ihash,
        "output_cids": cids,
    }
    for name, document in (("receipt.json", receipt), ("determinism.json", determinism)):
        got = {k: document[k] for k in expected}
        assert got == expected, f"{name} disagrees with the run"
    assert receipt["mode"] == run.payload["mode"] and receipt["hash_schema"] == HASH_SCHEMA
    assert receipt["outputs_index"] == run.prefix + "outputs.json"
    assert determinism["memo_key"] == memo_key(
        ref=str(spec.ref), image_digest=digest, mode=run.payload["mode"], inputs_hash=ihash
    ), "memo_key is not b3 of [ref, image digest, mode, inputs hash]"
    assert determinism["seed"] == seed_for(ihash)
    listed = {o["path"] for o in envelope["outputs"]}
    assert not listed & {run.prefix + "receipt.json", determinism_path}, (
        "a receipt is listed as an output"
    )
    return receipt, determinism


def assert_stream(run: Run) -> Any:
    """progress/log/token events with JSON object data, then exactly one ``done``, last."""
    assert run.status == 200, f"/run-stream answered HTTP {run.status}"
    content_type = run.headers.get("content-type", "")
    assert content_type.startswith("text/event-stream"), f"content-type is {content_type!r}"
    events = run.events or []
    names = [e.event for e in events]
    assert names.count("done") == 1, f"expected exactly one done event, got {names}"
    assert names[-1] == "done", f"the stream does not end with done: {names}"
    for event in events[:-1]:
        assert event.event in STREAM_EVENTS, f"unexpected event {event.event!r}"
        assert isinstance(json.loads(event.data), dict), f"{event.event} data is not a JSON object"
    return assert_envelope(run.envelope)


def assert_ndjson_logs(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line is a JSON object with ts, level, event and service (lines end in \\n)."""
    records = []
    for number, line in enumerate(stderr.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"stderr line {number} is not JSON: {line[:300]!r}") from None
        assert schemas.is_valid("log_line", record), (
            f"stderr line {number}: {_problems('log_line', record)}"
        )
        records.append(record)
    return records


def assert_no_secret(secret: str, texts: Iterable[str]) -> None:
    """``secret`` appears in none of ``texts`` (logs, outputs, receipts, envelopes)."""
    for number, text in enumerate(texts):
        position = text.find(secret)
        if position >= 0:
            around = text[max(0, position - 80) : position + len(secret) + 40].replace(
                secret, "[SECRET]"
            )
            raise AssertionError(f"the secret leaked (text {number}): …{around}…")
