"""The ledger is a hash chain: any edit or deletion is found by verify_ledger."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from pytest_theory.django_project.apps.runs import ledger
from pytest_theory.django_project.apps.runs.models import (
    Execution,
    LedgerEvent,
    LedgerHead,
    LedgerImmutable,
)

pytestmark = pytest.mark.django_db


def three() -> list[LedgerEvent]:
    Execution.objects.create(id="e-1", ref="x/y@1", adapter="inprocess", mode="mock")
    return [
        ledger.append("admission", execution_id="e-1", plan_key="p", data={"n": n})
        for n in range(3)
    ]


def sql(statement: str, *params: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def test_each_hash_links_to_the_previous() -> None:
    events = three()
    assert events[0].prev_hash == ledger.GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
        assert after.hash == ledger.link(before.hash, after.canonical.encode())
    assert ledger.verify().ok and ledger.verify().events == 3


def test_the_orm_refuses_to_change_history() -> None:
    event = three()[0]
    event.data = {"n": 99}
    with pytest.raises(LedgerImmutable):
        event.save()
    with pytest.raises(LedgerImmutable):
        event.delete()
    with pytest.raises(LedgerImmutable):
        LedgerEvent.objects.filter(pk=event.pk).update(kind="start")
    with pytest.raises(LedgerImmutable):
        LedgerEvent.objects.all().delete()


@pytest.mark.parametrize(
    ("tamper", "found"),
    [
        (
            lambda e: sql(
                "UPDATE runs_ledgerevent SET data = %s WHERE seq = %s", '{"n": 42}', e[1].seq
            ),
            "altered",
        ),
        (
            lambda e: sql("UPDATE runs_ledgerevent SET kind = 'start' WHERE seq = %s", e[0].seq),
            "altered",
        ),
        (lambda e: sql("DELETE FROM runs_ledgerevent WHERE seq = %s", e[1].seq), "chain breaks"),
        (
            lambda e: sql("DELETE FROM runs_ledgerevent WHERE seq = %s", e[2].seq),
            "last events were removed",
        ),
    ],
    ids=["edit-data", "edit-kind", "delete-middle", "delete-last"],
)
def test_edits_and_deletions_are_detected(
    tamper: Callable[[list[LedgerEvent]], None], found: str, manage: Any
) -> None:
    events = three()
    assert manage("verify_ledger").code == 0
    tamper(events)
    verdict = ledger.verify()
    assert not verdict.ok and found in verdict.problem
    result = manage("verify_ledger")
    assert result.code == 1 and found in result.stdout


def rechain_from(seq: int, change: Callable[[dict[str, Any]], None]) -> None:
    """What an insider with the project's own functions does: edit an event's body and
    recompute every hash from there, head included. Only the anchor can tell."""
    events = list(LedgerEvent.objects.order_by("seq"))
    prev = ledger.GENESIS
    for event in events:
        body = json.loads(event.canonical)
        if event.seq == seq:
            change(body)
        canonical = ledger._body(
            body["kind"], body["execution_id"], body["plan_key"], body["data"], body["created_at"]
        )
        new_hash = ledger.link(prev, canonical)
        sql(
            "UPDATE runs_ledgerevent SET data = %s, canonical = %s, prev_hash = %s, hash = %s "
            "WHERE seq = %s",
            json.dumps(body["data"]),
            canonical.decode(),
            prev,
            new_hash,
            event.seq,
        )
        prev = new_hash
    LedgerHead.objects.filter(pk=1).update(hash=prev)


def drop_tail_and_move_head(events: list[LedgerEvent]) -> None:
    sql("DELETE FROM runs_ledgerevent WHERE seq = %s", events[2].seq)
    LedgerHead.objects.filter(pk=1).update(seq=events[1].seq, hash=events[1].hash)


def drop_everything(events: list[LedgerEvent]) -> None:
    sql("DELETE FROM runs_ledgerevent")
    sql("DELETE FROM runs_ledgerhead")


@pytest.mark.parametrize(
    ("tamper", "found"),
    [
        (drop_tail_and_move_head, "anchored but is gone"),
        (drop_everything, "anchored but is gone"),
        (
            lambda e: rechain_from(e[1].seq, lambda body: body["data"].update(n=42)),
            "rewritten",
        ),
    ],
    ids=["tail-and-head", "everything", "edit-and-rechain"],
)
def test_rewrites_that_keep_the_chain_whole_are_caught_by_the_anchor(
    tamper: Callable[[list[LedgerEvent]], None], found: str, manage: Any
) -> None:
    events = three()
    tamper(events)
    result = manage("verify_ledger")
    assert result.code == 1 and found in result.stdout, result.stdout


@pytest.mark.parametrize(("column", "value"), [("created_at", "not a date"), ("data", '"text"')])
def test_a_malformed_row_is_a_finding_not_a_traceback(manage: Any, column: str, value: str) -> None:
    if column == "created_at" and connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's timestamp column refuses a malformed value itself")
    events = three()
    sql(f"UPDATE runs_ledgerevent SET {column} = %s WHERE seq = %s", value, events[1].seq)
    result = manage("verify_ledger")
    assert result.code == 1 and f"event {events[1].seq}: malformed row" in result.stdout


def test_a_ledger_older_than_its_anchor_is_adopted_once(manage: Any, ledger_anchor: Any) -> None:
    three()
    ledger_anchor.unlink()  # as a database written before the anchor existed
    assert manage("verify_ledger").code == 1
    assert manage("verify_ledger", "--adopt").code == 0
    assert manage("verify_ledger").code == 0
    assert manage("verify_ledger", "--adopt").code == 1, "an anchored ledger is never re-adopted"
