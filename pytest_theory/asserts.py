"""Assertion helpers for processor runs, one per rule of the contract.

Registered for pytest's assertion rewriting, so a failure shows what was
expected and what came back. Each takes a ``Run`` (from the ``theory_run`` /
``theory_stream`` fixtures or a ``Driver``) and returns what it checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from pytest_theory.contracts import schemas
from pytest_theory.contracts.errors import is_valid_status, status_for
from pytest_theory.contracts.hashing import CID_RE, canonical_json, cid_of_bytes, inputs_hash
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


def _field(document: Any, *path: str) -> Any:
    """``document[path...]``, or ``MISSING`` where a level is absent or not an object."""
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return MISSING
        document = document[key]
    return document


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def assert_envelope(envelope: Any, kind: str = "envelope") -> dict[str, Any]:
    """``envelope`` validates against the contract's envelope schema (``envelope_success``/``_error``)."""
    problems = _problems(kind, envelope)
    assert not problems, f"not a valid {kind}:\n  {problems}\nreceived: {envelope!r}"
    result: dict[str, Any] = envelope
    return result


def assert_success(run: Run, *, image_digest: str | None = None) -> dict[str, Any]:
    """§4 Success (HTTP 200): the envelope's own fields (its output entries are the outputs
    rule's): status, execution_id, outputs, index_path, meta.image_digest and env_fingerprint."""
    assert run.status == 200, f"expected HTTP 200, got {run.status}: {run.text[:500]}"
    envelope = run.envelope
    assert isinstance(envelope, dict), f"expected a JSON object, received: {run.text[:500]!r}"
    received = {
        "status": _field(envelope, "status"),
        "execution_id": _field(envelope, "execution_id"),
        "index_path": _field(envelope, "index_path"),
        "outputs is a list": isinstance(_field(envelope, "outputs"), list),
    }
    expected = {
        "status": "success",
        "execution_id": run.execution_id,
        "index_path": run.prefix + "outputs.json",
        "outputs is a list": True,
    }
    assert received == expected, f"success envelope: expected {expected}, received {received}"
    digest = _field(envelope, "meta", "image_digest")
    if image_digest is not None:
        assert digest == image_digest, (
            f"meta.image_digest: expected {image_digest} (IMAGE_DIGEST), received {digest!r}"
        )
    fingerprint = _field(envelope, "meta", "env_fingerprint")
    assert isinstance(fingerprint, str) and fingerprint, (
        f"meta.env_fingerprint: expected a non-empty string, received {fingerprint!r}"
    )
    result: dict[str, Any] = envelope
    return result


def assert_error(run: Run, code: str, status: int | None = None) -> Any:
    """An error answer with ``code`` and its HTTP status (``status`` when SPEC allows several)."""
    expected_status = status if status is not None else status_for(code)
    envelope = run.envelope
    received = _field(envelope, "error", "code")
    received = None if received is MISSING else received
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
            f"meta.image_digest: expected {image_digest} (IMAGE_DIGEST), "
            f"received {envelope['meta']['image_digest']!r}"
        )
    message = envelope["error"]["message"]
    assert "Traceback" not in message and 'File "' not in message, "the message holds a traceback"
    return envelope


def outputs_of(run: Run) -> list[Any]:
    """The envelope's ``outputs`` as a list (empty when there is none to judge)."""
    outputs = _field(run.envelope, "outputs")
    return outputs if isinstance(outputs, list) else []


def assert_outputs(run: Run, spec: ProcessorSpec) -> list[dict[str, Any]]:
    """Every output entry is {path, cid, size_bytes, mime}, lies under P/outputs/, is declared,
    and has the cid (BLAKE3), size and declared mime of its bytes."""
    assert isinstance(_field(run.envelope, "outputs"), list), (
        f"expected the envelope's outputs list, received: {run.text[:500]}"
    )
    outputs: list[dict[str, Any]] = outputs_of(run)
    for number, entry in enumerate(outputs):
        keys = set(entry) if isinstance(entry, dict) else set()
        assert keys == ENTRY_KEYS, (
            f"output entry {number}: expected the fields {sorted(ENTRY_KEYS)}, received {entry!r}"
        )
        path = entry["path"]
        assert is_under(path, run.prefix + "outputs"), f"{path} is not under {run.prefix}outputs/"
        declared = declared_output(spec.outputs, relpath_of(path, run.prefix))
        assert declared is not None, f"{path} is not declared in registry.yaml outputs"
        assert run.exists(path), f"{path} is listed but no such file was written"
        data = run.read(path)
        expected = {"cid": cid_of_bytes(data), "size_bytes": len(data), "mime": declared["mime"]}
        received = {k: entry[k] for k in expected}
        assert received == expected, f"{path}: expected {expected}, received {received}"
    return outputs


ENTRY_KEYS = {"path", "cid", "size_bytes", "mime"}


def assert_index(run: Run) -> list[Any]:
    """§3 P/outputs.json: {"outputs": [...]}, sorted by path, bytes exactly
    json.dumps(sort_keys=True, separators=(",", ":")), listing the envelope's outputs.

    Judged from the bytes and the paths alone: the entries' own fields are the outputs rule's.
    """
    index_path = run.prefix + "outputs.json"
    assert run.exists(index_path), f"{index_path} is missing"
    raw = run.index_bytes
    try:
        index = json.loads(raw)
    except ValueError:
        raise AssertionError(f"{index_path} is not JSON: {raw[:300]!r}") from None
    entries = _field(index, "outputs")
    assert isinstance(entries, list), f'expected {{"outputs": [...]}}, received {raw[:300]!r}'
    paths = [str(_field(e, "path")) for e in entries]
    assert paths == sorted(paths), f"index entries are not sorted by path: {paths}"
    expected = canonical_json(index)
    assert raw == expected, (
        "index bytes are not exactly json.dumps(sort_keys, compact):\n"
        f"expected {expected[:300]!r}\nreceived {raw[:300]!r}"
    )

    def key(entry: Any) -> str:  # compared as sets: the envelope may list them in any order
        return json.dumps(entry, sort_keys=True)

    listed, indexed = sorted(map(key, outputs_of(run))), sorted(map(key, entries))
    assert indexed == listed, (
        f"the index does not list exactly the envelope's outputs:\nexpected {listed}\n"
        f"received {indexed}"
    )
    return entries


RECEIPT_FIELDS = (
    "execution_id", "processor_ref", "image_digest", "env_fingerprint", "mode", "inputs_hash",
    "hash_schema", "outputs_index", "output_cids", "processor_info", "usage", "timestamp_utc",
    "duration_ms",
)  # fmt: skip
DETERMINISM_FIELDS = (
    "execution_id", "processor_ref", "image_digest", "env_fingerprint", "inputs_hash",
    "memo_key", "seed", "output_cids",
)  # fmt: skip


def _receipt_problems(
    run: Run, path: str, fields: tuple[str, ...], expected: dict[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    """What is wrong with one receipt, judged on its own."""
    if not run.exists(path):
        return [f"{path} is missing"], {}
    try:
        document = json.loads(run.read(path))
    except ValueError:
        return [f"{path} is not JSON"], {}
    if not isinstance(document, dict):
        return [f"{path}: expected a JSON object, received {document!r}"[:300]], {}
    problems = [f"{path}: field {name} is missing" for name in fields if name not in document]
    for name, value in expected.items():
        if name in document and document[name] != value:
            problems.append(f"{path}: {name}: expected {value!r}, received {document[name]!r}")
    return problems, document


def assert_receipts(
    run: Run, spec: ProcessorSpec, *, image_digest: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """§3 Both receipts exist with their fields, agree with the run, and are not outputs.

    Each is judged on its own and every problem is reported: ``inputs_hash`` is recomputed,
    ``output_cids`` are the BLAKE3 of the listed outputs' bytes, ``hash_schema`` is any
    non-empty string, ``memo_key`` a b3 id (SPEC does not fix its byte layout).
    """
    ihash = inputs_hash(run.payload["inputs"])
    cids = []
    for entry in outputs_of(run):
        path = _field(entry, "path")
        if isinstance(path, str) and run.exists(path):
            cids.append(cid_of_bytes(run.read(path)))
    common: dict[str, Any] = {
        "execution_id": run.execution_id,
        "processor_ref": str(spec.ref),
        "inputs_hash": ihash,
        "output_cids": sorted(cids),
    }
    if image_digest:
        common["image_digest"] = image_digest
    receipt_path = run.prefix + "receipt.json"
    determinism_path = determinism_receipt_path(run.execution_id)
    problems, receipt = _receipt_problems(
        run,
        receipt_path,
        RECEIPT_FIELDS,
        {**common, "mode": run.payload["mode"], "outputs_index": run.prefix + "outputs.json"},
    )
    more, determinism = _receipt_problems(run, determinism_path, DETERMINISM_FIELDS, common)
    problems += more
    schema_name = receipt.get("hash_schema", "x")
    if not (isinstance(schema_name, str) and schema_name):
        problems.append(f"{receipt_path}: hash_schema: expected a non-empty string, "
                        f"received {schema_name!r}")  # fmt: skip
    for name, document in ((receipt_path, receipt), (determinism_path, determinism)):
        listed = document.get("output_cids")
        if isinstance(listed, list) and listed != sorted(map(str, listed)):
            problems.append(f"{name}: output_cids are not sorted: {listed}")
    memo = determinism.get("memo_key", "b3:" + "0" * 64)
    if not (isinstance(memo, str) and CID_RE.match(memo)):
        problems.append(f"{determinism_path}: memo_key: expected b3:<64 hex>, received {memo!r}")
    listed_paths = {_field(o, "path") for o in outputs_of(run)}
    for path in (receipt_path, determinism_path):
        if path in listed_paths:
            problems.append(f"the receipt {path} is listed as an output")
    assert not problems, "receipts:\n  " + "\n  ".join(problems)
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
        try:
            data = json.loads(event.data)
        except ValueError:
            raise AssertionError(f"{event.event} data is not JSON: {event.data[:200]!r}") from None
        assert isinstance(data, dict), f"{event.event} data is not a JSON object: {data!r}"
    envelope = run.envelope
    status = _field(envelope, "status")
    assert status in ("success", "error"), (
        f"done data: expected an envelope (status success or error), received {envelope!r}"[:500]
    )
    return envelope


def log_line_problems(record: Any) -> list[str]:
    """§5 What is wrong with one stderr line: a JSON object with ``ts`` (an RFC 3339 string or
    Unix seconds as a number), ``level`` (debug|info|warn|error), ``event`` and ``service``."""
    if not isinstance(record, dict):
        return [f"expected a JSON object, received {record!r}"]
    problems = [f"{k} is missing" for k in ("ts", "level", "event", "service") if k not in record]
    ts = record.get("ts", 0)
    if isinstance(ts, bool) or not (
        isinstance(ts, (int, float)) or (isinstance(ts, str) and _RFC3339.match(ts))
    ):
        problems.append(f"ts: expected an RFC 3339 string or a number, received {ts!r}")
    if "level" in record and record["level"] not in LEVELS:
        problems.append(f"level: expected one of {LEVELS}, received {record['level']!r}")
    for key in ("event", "service"):
        if key in record and not (isinstance(record[key], str) and record[key]):
            problems.append(f"{key}: expected a non-empty string, received {record[key]!r}")
    return problems


LEVELS = ("debug", "info", "warn", "error")


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
        problems = log_line_problems(record)
        assert not problems, f"stderr line {number}: {'; '.join(problems)}: {line[:300]!r}"
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
