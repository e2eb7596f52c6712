"""Appending to and verifying the hash-chained ledger."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from pytest_theory.contracts.hashing import canonical_json, cid_of_bytes
from pytest_theory.django_project.apps.runs.models import LedgerEvent, LedgerHead

GENESIS = "b3:" + "0" * 64


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
    return event


@dataclass(frozen=True)
class Verdict:
    ok: bool
    events: int
    problem: str = ""


def verify() -> Verdict:
    """Walk the chain: every link, every event's own fields, and the head."""
    prev = GENESIS
    count = 0
    last_seq = 0
    for event in LedgerEvent.objects.order_by("seq").iterator():
        count += 1
        if event.prev_hash != prev:
            return Verdict(
                False,
                count,
                f"event {event.seq}: the chain breaks (an event before it was removed or altered)",
            )
        body = _body(
            event.kind,
            event.execution_id,
            event.plan_key,
            event.data,
            event.created_at.isoformat(timespec="microseconds"),
        )
        if body.decode() != event.canonical or link(prev, body) != event.hash:
            return Verdict(False, count, f"event {event.seq}: its content was altered")
        prev, last_seq = event.hash, event.seq
    head = LedgerHead.objects.filter(pk=1).first()
    if head is not None and (head.hash != prev or head.seq != last_seq):
        return Verdict(
            False, count, "the last events were removed (the head points past the chain)"
        )
    return Verdict(True, count)
