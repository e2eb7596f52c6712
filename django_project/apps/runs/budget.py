"""Admission and settlement: each a single conditional UPDATE, so concurrent runs cannot overspend.

The database constraints on ``Plan`` are the backstop; these updates never rely
on them, they simply never ask for more than is available.
"""

from __future__ import annotations

from django.db.models import F

from pytest_theory.django_project.apps.runs.models import Plan


class BudgetRefused(Exception):
    """The run would take the plan past its budget."""


def reserve(plan_id: int, amount: int) -> None:
    """Move ``amount`` from available to reserved, or refuse."""
    if amount < 0:
        raise ValueError("a reservation is not negative")
    updated = (
        Plan.objects.filter(pk=plan_id)
        .filter(budget_usd_micro__gte=F("reserved_usd_micro") + F("spent_usd_micro") + amount)
        .update(reserved_usd_micro=F("reserved_usd_micro") + amount)
    )
    if updated != 1:
        raise BudgetRefused(f"reserving {amount} µUSD would overspend the plan")


def settle(plan_id: int, reserved: int, cost: int) -> int:
    """Move what the run cost (at most what it reserved) to spent and release the rest; the charge."""
    charge = max(0, min(cost, reserved))
    Plan.objects.filter(pk=plan_id).update(
        reserved_usd_micro=F("reserved_usd_micro") - reserved,
        spent_usd_micro=F("spent_usd_micro") + charge,
    )
    return charge


def release(plan_id: int, reserved: int) -> None:
    """Give a reservation back (the run failed or never started)."""
    Plan.objects.filter(pk=plan_id).update(reserved_usd_micro=F("reserved_usd_micro") - reserved)
