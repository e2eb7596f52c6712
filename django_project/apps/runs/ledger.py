"""Appending to and verifying the hash-chained ledger.

Three things make a rewrite show:

- the chain: each event's hash covers the previous hash and its own canonical JSON;
- the anchor: every append also writes ``seq hash`` to an append-only file outside the
  database (``THEORY_LEDGER_ANCHOR``), so deleting the tail, deleting everything, or
  recomputing the chain after an edit no longer matches what was anchored;
- the rows: each plan's reserved and spent amounts, and each execution's status and cost,
  must be what its events say.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from pytest_theory.contracts.hashing import canonical_json, cid_of_bytes
from pytest_theory.django_project.apps.runs.models import (
    Execution,
    LedgerEvent,
    LedgerHead,
    Plan,
)

GENESIS = "b3:" + "0" * 64
Kind = LedgerEvent.Kind
#: Events after which an execution holds no reservation.
TERMINAL = {Kind.SETTLEMENT, Kind.FAILURE, Kind.REFUSAL, Kind.REAPED}
STATUS_OF_LAST = {
    Kind.SETTLEMENT: {Execution.Status.SUCCEEDED},
    Kind.FAILURE: {Execution.Status.FAILED},
    Kind.REAPED: {Execution.Status.FAILED},
    Kind.REFUSAL: {Execution.Status.REFUSED},
    Kind.ADMISSION: {Execution.Status.PENDING, Execution.Status.RUNNING},
    Kind.START: {Execution.Status.RUNNING},
    Kind.RETRY: {Execution.Status.RUNNING},
}


def _body(
    kind: str, execution_id: str, plan_key: str, data: dict[str, Any], created_at: str
) -> bytes:
    return canonical_json(
        {
            "kind": kind,
            "execution_id": execution_id,
            "plan_key": plan_key,
            "data": data,
            "created_at": created_at,
        }
    )


def link(prev_hash: str, canonical: bytes) -> str:
    """``b3:`` of the previous hash followed by the event's canonical JSON."""
    return cid_of_bytes(prev_hash.encode() + canonical)


def anchor_path() -> Path:
    return Path(settings.THEORY_LEDGER_ANCHOR)


def _anchor(seq: int, hash_: str) -> None:
    """One line appended (O_APPEND: concurrent writers never interleave within a line)."""
    path = anchor_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{seq} {hash_}\n".encode())
    finally:
        os.close(fd)


def append(
    kind: str, *, execution_id: str = "", plan_key: str = "", data: dict[str, Any] | None = None
) -> LedgerEvent:
    """Add one event at the end of the chain (appends are serialised on the head row)."""
    data = json.loads(json.dumps(data or {}))  # exactly what the JSON column will give back
    with transaction.atomic():
        head = LedgerHead.objects.select_for_update().filter(pk=1).first()
        if head is None:
            head = LedgerHead.objects.create(pk=1, seq=0, hash=GENESIS)
        created_at = timezone.now().isoformat(timespec="microseconds")
        canonical = _body(kind, execution_id, plan_key, data, created_at)
        event = LedgerEvent.objects.create(
            kind=kind,
            execution_id=execution_id,
            plan_key=plan_key,
            data=data,
            created_at=timezone.datetime.fromisoformat(created_at),
            canonical=canonical.decode(),
            prev_hash=head.hash,
            hash=link(head.hash, canonical),
        )
        LedgerHead.objects.filter(pk=1).update(seq=event.seq, hash=event.hash)
        _anchor(event.seq, event.hash)  # under the head's lock: lines stay in chain order
    return event


@dataclass(frozen=True)
class Verdict:
    ok: bool
    events: int
    problem: str = ""


class Broken(Exception):
    pass


@dataclass(frozen=True)
class Row:
    seq: int
    kind: str
    execution_id: str
    plan_key: str
    data: dict[str, Any]
    created_at: str
    canonical: str
    prev_hash: str
    hash: str


def _timestamp(value: Any) -> str:
    """A stored ``created_at`` as the canonical JSON has it; ``ValueError`` when malformed."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise ValueError(f"not a timestamp: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _rows() -> list[Row]:
    """Every event, read as raw values: a malformed row is a finding, never a traceback."""
    table = LedgerEvent._meta.db_table
    columns = "seq, kind, execution_id, plan_key, data, created_at, canonical, prev_hash, hash"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {table} ORDER BY seq")
        raw = cursor.fetchall()
    rows = []
    for seq, kind, execution_id, plan_key, data, created_at, canonical, prev, hash_ in raw:
        try:
            parsed = json.loads(data) if isinstance(data, str | bytes) else data
            if not isinstance(parsed, dict):
                raise ValueError("data is not a JSON object")
            stamp = _timestamp(created_at)
        except (ValueError, TypeError) as exc:
            raise Broken(f"event {seq}: malformed row ({exc})") from None
        rows.append(Row(seq, kind, execution_id, plan_key, parsed, stamp, canonical, prev, hash_))
    return rows


def _anchored() -> list[tuple[int, str]]:
    path = anchor_path()
    if not path.exists():
        return []
    anchored = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        seq, _, hash_ = line.partition(" ")
        if not seq.isdigit() or not hash_.startswith("b3:"):
            raise Broken(f"{path}:{number}: malformed anchor line")
        anchored.append((int(seq), hash_))
    return anchored


def _check_chain(rows: list[Row]) -> None:
    prev = GENESIS
    for event in rows:
        if event.prev_hash != prev:
            raise Broken(
                f"event {event.seq}: the chain breaks (an event before it was removed or altered)"
            )
        body = _body(event.kind, event.execution_id, event.plan_key, event.data, event.created_at)
        if body.decode() != event.canonical or link(prev, body) != event.hash:
            raise Broken(f"event {event.seq}: its content was altered")
        prev = event.hash
    head = LedgerHead.objects.filter(pk=1).first()
    last_seq = rows[-1].seq if rows else 0
    if head is not None and (head.hash != prev or head.seq != last_seq):
        raise Broken("the last events were removed (the head points past the chain)")


def _check_anchor(rows: list[Row]) -> None:
    by_seq = {event.seq: event for event in rows}
    anchored = _anchored()
    for seq, hash_ in anchored:
        event = by_seq.get(seq)
        if event is None:
            raise Broken(f"event {seq} was anchored but is gone from the ledger")
        if event.hash != hash_:
            raise Broken(f"event {seq}: rewritten (its hash differs from the anchored one)")
    last = anchored[-1][0] if anchored else 0
    unanchored = [event.seq for event in rows if event.seq > last]
    if unanchored:
        raise Broken(
            f"events {unanchored[0]}..{unanchored[-1]} are not in the anchor {anchor_path()}"
        )


def _check_rows(rows: list[Row]) -> None:
    """Plans and executions against the events: a balance or status edited in place shows."""
    reserved: dict[str, int] = defaultdict(int)
    spent: dict[str, int] = defaultdict(int)
    budgets: dict[str, int] = {}
    last: dict[str, Row] = {}
    holding: dict[str, int] = {}
    for event in rows:
        if event.kind == Kind.PLAN:
            budgets[event.plan_key] = int(event.data.get("budget_usd_micro", 0))
            continue
        if not event.execution_id:
            continue
        last[event.execution_id] = event
        if event.kind == Kind.ADMISSION:
            holding[event.execution_id] = int(event.data.get("reserved_usd_micro", 0))
            reserved[event.plan_key] += holding[event.execution_id]
        elif event.kind in TERMINAL:
            reserved[event.plan_key] -= holding.pop(event.execution_id, 0)
            if event.kind == Kind.SETTLEMENT:
                spent[event.plan_key] += int(event.data.get("cost_usd_micro", 0))
    for plan in Plan.objects.all():
        expected = (
            budgets.get(plan.key, plan.budget_usd_micro),
            reserved[plan.key],
            spent[plan.key],
        )
        found = (plan.budget_usd_micro, plan.reserved_usd_micro, plan.spent_usd_micro)
        if found != expected:
            raise Broken(
                f"plan {plan.key}: budget/reserved/spent {found} in the table, {expected} "
                "by the ledger"
            )
    missing = set(budgets) - set(Plan.objects.values_list("key", flat=True))
    if missing:
        raise Broken(f"plan {sorted(missing)[0]} is in the ledger but not in the table")
    executions = {e.id: e for e in Execution.objects.all()}
    for execution_id, event in last.items():
        execution = executions.get(execution_id)
        if execution is None:
            raise Broken(f"execution {execution_id} is in the ledger but not in the table")
        if execution.status not in STATUS_OF_LAST.get(event.kind, {execution.status}):
            raise Broken(
                f"execution {execution_id}: status {execution.status}, but its last event "
                f"is {event.kind}"
            )
        cost = int(event.data.get("cost_usd_micro", 0)) if event.kind == Kind.SETTLEMENT else 0
        if execution.cost_usd_micro != cost:
            raise Broken(
                f"execution {execution_id}: cost {execution.cost_usd_micro} in the table, "
                f"{cost} by the ledger"
            )


def adopt() -> Verdict:
    """For a ledger older than the anchor: when the chain and the rows check out and nothing
    was anchored yet, anchor every event as it stands (from now on, rewrites show)."""
    try:
        rows = _rows()
        _check_chain(rows)
        _check_rows(rows)
        if _anchored():
            raise Broken(f"{anchor_path()} anchors events already: nothing to adopt")
    except Broken as exc:
        return Verdict(False, 0, str(exc))
    for event in rows:
        _anchor(event.seq, event.hash)
    return Verdict(True, len(rows))


def _head() -> tuple[int, str] | None:
    return LedgerHead.objects.filter(pk=1).values_list("seq", "hash").first()


def verify(attempts: int = 5) -> Verdict:
    """The chain, the anchor, then plans and executions against the events.

    Runs may commit while this reads (each commit moves the head with its event): a finding
    made while the head moved is checked again, at most ``attempts`` times in all.
    """
    for _ in range(attempts):
        before = _head()
        try:
            rows = _rows()
            _check_chain(rows)
            _check_anchor(rows)
            _check_rows(rows)
        except Broken as exc:
            if _head() != before:
                continue  # the ledger moved under us: look again
            return Verdict(False, 0, str(exc))
        return Verdict(True, len(rows))
    return Verdict(False, 0, f"the ledger kept moving: no quiet moment in {attempts} looks")
