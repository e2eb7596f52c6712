"""Budgets: admission reserves, settlement spends, and nothing ever goes negative."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_theory.django_project.apps.runs import budget
from pytest_theory.django_project.apps.runs.models import Plan


def fresh(budget_usd_micro: int) -> Plan:
    return Plan.objects.create(
        key=f"p-{Plan.objects.count()}-{budget_usd_micro}", budget_usd_micro=budget_usd_micro
    )


@pytest.mark.django_db
def test_reserve_settle_release() -> None:
    plan = fresh(1000)
    budget.reserve(plan.pk, 600)
    with pytest.raises(budget.BudgetRefused):
        budget.reserve(plan.pk, 500)
    assert budget.settle(plan.pk, 600, 250) == 250
    plan.refresh_from_db()
    assert (plan.reserved_usd_micro, plan.spent_usd_micro, plan.available_usd_micro) == (
        0,
        250,
        750,
    )
    budget.reserve(plan.pk, 750)
    budget.release(plan.pk, 750)
    plan.refresh_from_db()
    assert plan.available_usd_micro == 750
    assert budget.settle(plan.pk, 0, 99) == 0, "a run never costs more than it reserved"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change",
    [
        {"reserved_usd_micro": -1},
        {"spent_usd_micro": -1},
        {"budget_usd_micro": -1},
        {"reserved_usd_micro": F("budget_usd_micro") + 1},
    ],
)
def test_the_database_refuses_a_negative_budget(change: dict[str, Any]) -> None:
    plan = fresh(100)
    with pytest.raises(IntegrityError), transaction.atomic():
        Plan.objects.filter(pk=plan.pk).update(**change)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(0, 400)),
        st.tuples(st.just("settle"), st.integers(0, 500)),
        st.tuples(st.just("release"), st.just(0)),
    ),
    max_size=30,
)


@pytest.mark.django_db
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(total=st.integers(0, 1000), ops=operations)
def test_no_sequence_of_runs_overspends(total: int, ops: list[tuple[str, int]]) -> None:
    """A hypothesis property: whatever runs are admitted, settled or released, the plan stays
    within budget, and a reservation is refused exactly when it would overspend."""
    plan = fresh(total)
    open_reservations: list[int] = []
    spent = 0
    for op, amount in ops:
        if op == "reserve":
            available = total - sum(open_reservations) - spent
            if amount <= available:
                budget.reserve(plan.pk, amount)
                open_reservations.append(amount)
            else:
                with pytest.raises(budget.BudgetRefused):
                    budget.reserve(plan.pk, amount)
        elif open_reservations:
            reserved = open_reservations.pop()
            if op == "settle":
                spent += budget.settle(plan.pk, reserved, amount)
            else:
                budget.release(plan.pk, reserved)
        plan.refresh_from_db()
        assert plan.reserved_usd_micro == sum(open_reservations) >= 0
        assert plan.spent_usd_micro == spent >= 0
        assert plan.available_usd_micro >= 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_admissions_never_overspend() -> None:
    """Runs admitted from many threads at once: exactly as many fit as the budget allows.

    On PostgreSQL this is the real race; on SQLite writers queue on the database lock.
    """
    if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"]):
        pytest.skip(
            "threads cannot share SQLite's in-memory test database: run with DATABASE_URL=postgres://..."
        )
    plan = fresh(10)
    admitted = []

    def admit() -> None:
        try:
            budget.reserve(plan.pk, 1)
            admitted.append(1)
        except budget.BudgetRefused:
            pass
        finally:
            connection.close()

    threads = [threading.Thread(target=admit) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    plan.refresh_from_db()
    assert len(admitted) == 10 and plan.reserved_usd_micro == 10 and plan.available_usd_micro == 0


def amounts(plan: Plan) -> tuple[int, int, int]:
    plan.refresh_from_db()
    return plan.budget_usd_micro, plan.reserved_usd_micro, plan.spent_usd_micro


@pytest.mark.django_db
def test_a_reservation_may_take_the_plan_exactly_to_its_budget_and_no_further() -> None:
    plan = fresh(1000)
    budget.settle(plan.pk, 0, 0)
    budget.reserve(plan.pk, 400)
    assert budget.settle(plan.pk, 400, 300) == 300
    budget.reserve(plan.pk, 600)
    assert amounts(plan) == (1000, 600, 300)
    with pytest.raises(budget.BudgetRefused) as refused:
        budget.reserve(plan.pk, 101)
    assert str(refused.value) == (
        f"reserving 101 µUSD would overspend plan {plan.key} (100 µUSD available)"
    )
    budget.reserve(plan.pk, 100)
    assert amounts(plan) == (1000, 700, 300)


@pytest.mark.django_db
def test_a_negative_reservation_is_refused_before_it_touches_the_plan() -> None:
    plan = fresh(1000)
    with pytest.raises(ValueError, match=r"^a reservation is not negative$"):
        budget.reserve(plan.pk, -1)
    budget.reserve(plan.pk, 0)
    assert amounts(plan) == (1000, 0, 0)


@pytest.mark.django_db
def test_the_policy_cap_bounds_reserved_plus_spent_below_the_budget() -> None:
    plan = fresh(1000)
    budget.reserve(plan.pk, 200, cap=500)
    assert budget.settle(plan.pk, 200, 150) == 150
    budget.reserve(plan.pk, 250, cap=500)
    assert amounts(plan) == (1000, 250, 150)
    with pytest.raises(budget.BudgetRefused) as refused:
        budget.reserve(plan.pk, 101, cap=500)
    assert str(refused.value) == (
        f"reserving 101 µUSD would take plan {plan.key} to 501 µUSD, over the policy's "
        "max_usd_micro of 500"
    )
    budget.reserve(plan.pk, 100, cap=500)
    assert amounts(plan) == (1000, 350, 150)
    budget.reserve(plan.pk, 100)  # no cap: the budget alone bounds it
    assert amounts(plan) == (1000, 450, 150)


@pytest.mark.django_db
def test_a_cap_above_the_budget_leaves_the_refusal_to_the_budget() -> None:
    plan = fresh(100)
    with pytest.raises(budget.BudgetRefused) as refused:
        budget.reserve(plan.pk, 150, cap=150)
    assert str(refused.value) == (
        f"reserving 150 µUSD would overspend plan {plan.key} (100 µUSD available)"
    )
    assert amounts(plan) == (100, 0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("reserved", "cost", "charge"),
    [(300, 120, 120), (300, 300, 300), (300, 900, 300), (300, -5, 0)],
)
def test_settling_charges_the_cost_within_zero_and_the_reservation(
    reserved: int, cost: int, charge: int
) -> None:
    plan = fresh(1000)
    budget.reserve(plan.pk, reserved)
    assert budget.settle(plan.pk, reserved, cost) == charge
    assert amounts(plan) == (1000, 0, charge)


@pytest.mark.django_db
def test_releasing_gives_back_exactly_the_reservation() -> None:
    plan = fresh(1000)
    budget.reserve(plan.pk, 300)
    budget.reserve(plan.pk, 200)
    budget.release(plan.pk, 300)
    assert amounts(plan) == (1000, 200, 0)
