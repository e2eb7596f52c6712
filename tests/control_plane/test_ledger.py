"""The ledger is a hash chain: any edit or deletion is found by verify_ledger."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from pytest_theory.django_project.apps.runs import ledger
from pytest_theory.django_project.apps.runs.models import LedgerEvent, LedgerImmutable

pytestmark = pytest.mark.django_db


def three() -> list[LedgerEvent]:
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
