"""The ledger is a hash chain: any edit or deletion is found by verify_ledger."""

from __future__ import annotations

import itertools
import json
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from django.db import connection
from django.db.models import F

from pytest_theory.django_project.apps.runs import budget, ledger
from pytest_theory.django_project.apps.runs.models import (
    Execution,
    LedgerEvent,
    LedgerHead,
    LedgerImmutable,
    Plan,
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


def spec_hash(prev_hash: str, event: LedgerEvent) -> str:
    """The documented formula, computed here without the ledger's own functions: ``b3:`` of
    blake3 over the previous hash's text followed by the event's canonical JSON (sorted keys,
    no spaces) of kind, execution id, plan key, data and the UTC time in microseconds."""
    body = {
        "kind": event.kind,
        "execution_id": event.execution_id,
        "plan_key": event.plan_key,
        "data": event.data,
        "created_at": event.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return "b3:" + blake3(prev_hash.encode() + canonical).hexdigest()


def test_each_hash_is_blake3_of_the_previous_hash_and_the_event() -> None:
    events = three()
    prev = "b3:" + "0" * 64
    for event in events:
        assert event.prev_hash == prev
        assert event.hash == spec_hash(prev, event)
        prev = event.hash
    assert len(set(e.hash for e in events)) == 3


def test_the_same_event_after_another_head_links_differently() -> None:
    """The hash covers the previous hash: one body, two heads, two hashes."""
    body = b'{"kind":"plan"}'
    assert ledger.link("b3:" + "1" * 64, body) != ledger.link("b3:" + "2" * 64, body)
    assert (
        ledger.link("b3:" + "1" * 64, body) == "b3:" + blake3(b"b3:" + b"1" * 64 + body).hexdigest()
    )


def test_a_forged_hash_is_found_even_when_head_and_anchor_agree_with_it(
    ledger_anchor: Path,
) -> None:
    """Who can write the database and the anchor file can make them agree with each other;
    the hash still has to be the one the event's content gives."""
    events = three()
    forged = "b3:" + blake3(b"anything else").hexdigest()
    last = events[-1]
    sql("UPDATE runs_ledgerevent SET hash = %s WHERE seq = %s", forged, last.seq)
    LedgerHead.objects.filter(pk=1).update(hash=forged)
    lines = ledger_anchor.read_text().splitlines()
    ledger_anchor.write_text("\n".join([*lines[:-1], f"{last.seq} {forged}"]) + "\n")
    verdict = ledger.verify()
    assert not verdict.ok
    assert verdict.problem == f"event {last.seq}: its content was altered"


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


def test_data_that_is_not_an_object_is_named_as_such() -> None:
    events = three()
    sql("UPDATE runs_ledgerevent SET data = %s WHERE seq = %s", "[1]", events[1].seq)
    assert ledger.verify().problem == (
        f"event {events[1].seq}: malformed row (data is not a JSON object)"
    )


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local zone set away from UTC, so a time read as local shows."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("stored", "canonical"),
    [
        ("2026-01-02T03:04:05.123456+01:00", "2026-01-02T02:04:05.123456+00:00"),
        ("2026-01-02 03:04:05.5", "2026-01-02T03:04:05.500000+00:00"),  # naive: UTC
        (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05.000000+00:00"),
        (
            datetime(2026, 1, 2, 12, 0, tzinfo=timezone(timedelta(hours=9))),
            "2026-01-02T03:00:00.000000+00:00",
        ),
    ],
)
def test_a_stored_time_reads_as_utc_whatever_the_local_zone(
    tokyo: None, stored: Any, canonical: str
) -> None:
    assert ledger._timestamp(stored) == canonical


def test_a_stored_time_that_is_no_time_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^not a timestamp: 5$"):
        ledger._timestamp(5)


def test_the_anchor_file_is_made_private_with_its_folders(settings: Any, tmp_path: Path) -> None:
    settings.THEORY_LEDGER_ANCHOR = tmp_path / "new" / "dir" / "ledger.anchor"
    event = ledger.append("plan", plan_key="p", data={"budget_usd_micro": 1})
    anchor = Path(settings.THEORY_LEDGER_ANCHOR)
    assert anchor.read_text() == f"{event.seq} {event.hash}\n"
    assert stat.S_IMODE(anchor.stat().st_mode) == 0o600
    assert (event.execution_id, event.plan_key) == ("", "p")
    assert ledger.append("start", execution_id="e-1").plan_key == ""


def test_a_ledger_older_than_its_anchor_is_adopted_once(manage: Any, ledger_anchor: Any) -> None:
    three()
    ledger_anchor.unlink()  # as a database written before the anchor existed
    assert manage("verify_ledger").code == 1
    assert manage("verify_ledger", "--adopt").code == 0
    assert manage("verify_ledger").code == 0
    assert manage("verify_ledger", "--adopt").code == 1, "an anchored ledger is never re-adopted"


# A history as the control plane writes it (service.py, plans.py, reaper.py): two plans, a
# budget change, and executions that settled, failed, were refused, reaped, retried or are
# still running, each with the budget moved the way its events say.
Status = Execution.Status


def books(manage: Any) -> dict[str, Any]:
    assert manage("plans", "create", "team", "--budget-usd-micro", "1000").code == 0
    assert manage("plans", "create", "other", "--budget-usd-micro", "500").code == 0
    assert manage("plans", "budget", "team", "--budget-usd-micro", "2000").code == 0
    team = Plan.objects.get(key="team")

    def run(execution_id: str, reserved: int, *kinds: str, status: str, cost: int = 0) -> None:
        Execution.objects.create(
            id=execution_id, plan=team, ref="x/y@1", adapter="inprocess", mode="mock"
        )
        if kinds[0] == "admission":
            budget.reserve(team.pk, reserved)
        for kind in kinds:
            data: dict[str, Any] = {"reserved_usd_micro": reserved} if kind == "admission" else {}
            if kind == "settlement":
                data["cost_usd_micro"] = budget.settle(team.pk, reserved, cost)
            elif kind in ("failure", "reaped"):
                budget.release(team.pk, reserved)
            ledger.append(kind, execution_id=execution_id, plan_key="team", data=data)
        Execution.objects.filter(id=execution_id).update(
            status=status, cost_usd_micro=cost if kinds[-1] == "settlement" else 0
        )

    run("e-refused", 0, "refusal", status=Status.REFUSED)
    run("e-ok", 300, "admission", "start", "settlement", status=Status.SUCCEEDED, cost=120)
    run("e-fail", 100, "admission", "start", "failure", status=Status.FAILED)
    run("e-ok2", 100, "admission", "start", "settlement", status=Status.SUCCEEDED, cost=100)
    run("e-reaped", 40, "admission", "start", "reaped", status=Status.FAILED)
    run("e-retry", 50, "admission", "start", "retry", status=Status.RUNNING)
    run("e-run", 200, "admission", status=Status.PENDING)
    return {"team": team, "events": LedgerEvent.objects.count()}


def test_an_honest_history_checks_out_with_every_event_counted(manage: Any) -> None:
    made = books(manage)
    team = Plan.objects.get(key="team")
    assert (team.budget_usd_micro, team.reserved_usd_micro, team.spent_usd_micro) == (
        2000,
        250,
        220,
    )
    assert made["events"] == 3 + 1 + 3 + 3 + 3 + 3 + 3 + 1
    assert ledger.verify() == ledger.Verdict(True, made["events"])
    assert manage("verify_ledger").stdout == f"ledger intact: {made['events']} events\n"


def edit(model: Any, key: str, **change: Any) -> Callable[[], None]:
    field = "key" if model is Plan else "id"
    return lambda: model.objects.filter(**{field: key}).update(**change)


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (
            edit(Plan, "team", reserved_usd_micro=251),
            "plan team: budget/reserved/spent (2000, 251, 220) in the table, (2000, 250, 220) "
            "by the ledger",
        ),
        (
            edit(Plan, "team", spent_usd_micro=219),
            "plan team: budget/reserved/spent (2000, 250, 219) in the table, (2000, 250, 220) "
            "by the ledger",
        ),
        (
            edit(Plan, "team", budget_usd_micro=1000),
            "plan team: budget/reserved/spent (1000, 250, 220) in the table, (2000, 250, 220) "
            "by the ledger",
        ),
        (
            edit(Plan, "other", reserved_usd_micro=1),
            "plan other: budget/reserved/spent (500, 1, 0) in the table, (500, 0, 0) by the ledger",
        ),
        (
            lambda: Plan.objects.filter(key="other").delete(),
            "plan other is in the ledger but not in the table",
        ),
        (
            edit(Execution, "e-ok", status=Status.FAILED),
            "execution e-ok: status failed, but its last event is settlement",
        ),
        (
            edit(Execution, "e-fail", status=Status.SUCCEEDED),
            "execution e-fail: status succeeded, but its last event is failure",
        ),
        (
            edit(Execution, "e-reaped", status=Status.RUNNING),
            "execution e-reaped: status running, but its last event is reaped",
        ),
        (
            edit(Execution, "e-refused", status=Status.FAILED),
            "execution e-refused: status failed, but its last event is refusal",
        ),
        (
            edit(Execution, "e-retry", status=Status.PENDING),
            "execution e-retry: status pending, but its last event is retry",
        ),
        (
            edit(Execution, "e-run", status=Status.SUCCEEDED),
            "execution e-run: status succeeded, but its last event is admission",
        ),
        (
            edit(Execution, "e-ok", cost_usd_micro=300),
            "execution e-ok: cost 300 in the table, 120 by the ledger",
        ),
        (
            edit(Execution, "e-fail", cost_usd_micro=100),
            "execution e-fail: cost 100 in the table, 0 by the ledger",
        ),
        (
            lambda: Execution.objects.filter(id="e-refused").delete(),
            "execution e-refused is in the ledger but not in the table",
        ),
    ],
    ids=[
        "plan-reserved",
        "plan-spent",
        "plan-budget",
        "idle-plan-reserved",
        "plan-deleted",
        "settled-status",
        "failed-status",
        "reaped-status",
        "refused-status",
        "retried-status",
        "admitted-status",
        "settled-cost",
        "failed-cost",
        "execution-deleted",
    ],
)
def test_a_table_edited_against_its_events_is_found(
    manage: Any, tamper: Callable[[], None], problem: str
) -> None:
    books(manage)
    tamper()
    assert ledger.verify() == ledger.Verdict(False, 0, problem)


@pytest.mark.parametrize("kept", [0, 1])
def test_every_unanchored_event_is_named(ledger_anchor: Path, kept: int) -> None:
    events = three()
    lines = ledger_anchor.read_text().splitlines(keepends=True)
    ledger_anchor.write_text("".join(lines[:kept]))
    assert ledger.verify().problem == (
        f"events {events[kept].seq}..{events[2].seq} are not in the anchor {ledger_anchor}"
    )


def test_a_head_at_genesis_is_an_empty_chain() -> None:
    LedgerHead.objects.create(pk=1, seq=0, hash=ledger.GENESIS)
    assert ledger.verify() == ledger.Verdict(True, 0)


def test_a_plan_older_than_plan_events_is_held_to_its_own_budget() -> None:
    """A plan row no plan event mentions (made before plans were recorded) keeps its budget."""
    Plan.objects.create(key="legacy", budget_usd_micro=70)
    assert ledger.verify() == ledger.Verdict(True, 0)


def test_an_event_without_an_amount_counts_zero(manage: Any) -> None:
    Plan.objects.create(key="free", budget_usd_micro=0)
    ledger.append("plan", plan_key="free", data={"action": "create"})
    runs = {"e-0": ("admission", "start", "settlement"), "e-1": ("admission",)}
    for execution_id, kinds in runs.items():
        status = Status.SUCCEEDED if len(kinds) > 1 else Status.PENDING
        Execution.objects.create(
            id=execution_id, ref="x/y@1", adapter="inprocess", mode="mock", status=status
        )
        for kind in kinds:
            ledger.append(kind, execution_id=execution_id, plan_key="free")
    assert ledger.verify() == ledger.Verdict(True, 5)


@pytest.mark.parametrize("line", ["one b3:" + "0" * 64, "1 sha256:" + "0" * 64, "1"])
def test_a_malformed_anchor_line_is_a_finding(ledger_anchor: Path, line: str) -> None:
    three()
    lines = ledger_anchor.read_text().splitlines()
    ledger_anchor.write_text("\n".join([lines[0], line, *lines[2:]]) + "\n")
    assert ledger.verify() == ledger.Verdict(False, 0, f"{ledger_anchor}:2: malformed anchor line")


def test_a_head_whose_seq_runs_past_the_chain_is_a_finding() -> None:
    three()
    LedgerHead.objects.filter(pk=1).update(seq=F("seq") + 1)
    assert (
        ledger.verify().problem == "the last events were removed (the head points past the chain)"
    )


def test_adoption_anchors_each_event_and_refuses_a_broken_chain(
    manage: Any, ledger_anchor: Path
) -> None:
    events = three()
    ledger_anchor.unlink()
    assert manage("verify_ledger", "--adopt").stdout == "ledger intact: 3 events\n"
    assert ledger_anchor.read_text() == "".join(f"{e.seq} {e.hash}\n" for e in events)
    ledger_anchor.unlink()
    sql("UPDATE runs_ledgerevent SET data = %s WHERE seq = %s", '{"n": 42}', events[1].seq)
    assert ledger.adopt() == ledger.Verdict(
        False, 0, f"event {events[1].seq}: its content was altered"
    )
    assert not ledger_anchor.exists()
    sql("UPDATE runs_ledgerevent SET data = %s WHERE seq = %s", '{"n": 1}', events[1].seq)
    ledger_anchor.write_text(f"{events[0].seq} {events[0].hash}\n")
    assert ledger.adopt() == ledger.Verdict(
        False, 0, f"{ledger_anchor} anchors events already: nothing to adopt"
    )


def test_a_finding_made_while_the_ledger_moves_is_looked_at_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Events really committed between verify's looks (as concurrent runs do): a finding made
    while the head moved is not reported until a look finds the head still."""
    events = three()
    sql("UPDATE runs_ledgerevent SET data = %s WHERE seq = %s", '{"n": 42}', events[1].seq)
    read = ledger._rows
    moves = {"left": 0}

    def rows_while_a_run_commits() -> list[ledger.Row]:
        if moves["left"]:
            moves["left"] -= 1
            ledger.append("start", execution_id="e-1", plan_key="p")
        return read()

    monkeypatch.setattr(ledger, "_rows", rows_while_a_run_commits)
    moves["left"] = 2
    altered = ledger.Verdict(False, 0, f"event {events[1].seq}: its content was altered")
    assert ledger.verify(attempts=3) == altered and moves["left"] == 0
    moves["left"] = 5
    assert ledger.verify() == ledger.Verdict(
        False, 0, "the ledger kept moving: no quiet moment in 5 looks"
    )
