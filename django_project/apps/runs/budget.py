"""Admission and settlement: each a single conditional UPDATE, so concurrent runs cannot overspend.

The database constraints on ``Plan`` are the backstop; these updates never rely
on them, they simply never ask for more than is available.
"""

from __future__ import annotations

from django.db.models import F, Q

from pytest_theory.django_project.apps.runs.models import Plan


class BudgetRefused(Exception):
    """The run would take the plan past its budget (or past the policy's cap on its total)."""


def reserve(plan_id: int, amount: int, *, cap: int | None = None) -> None:
    """Move ``amount`` from available to reserved, or refuse.

    ``cap`` is the policy's ``max_usd_micro``: reserved + spent may not pass it either,
    whatever the plan's own budget.
    """
    if amount < 0:
        raise ValueError("a reservation is not negative")
    committed = F("reserved_usd_micro") + F("spent_usd_micro") + amount
    condition = Q(budget_usd_micro__gte=committed)
    if cap is not None:
        condition &= Q(reserved_usd_micro__lte=cap - amount - F("spent_usd_micro"))
    updated = (
        Plan.objects.filter(pk=plan_id)
        .filter(condition)
        .update(reserved_usd_micro=F("reserved_usd_micro") + amount)
    )
    if updated != 1:
        plan = Plan.objects.get(pk=plan_id)
        committed_now = plan.reserved_usd_micro + plan.spent_usd_micro
        if cap is not None and committed_now + amount > cap:
            raise BudgetRefused(
                f"reserving {amount} µUSD would take plan {plan.key} to "
                f"{committed_now + amount} µUSD, over the policy's max_usd_micro of {cap}"
            )
        raise BudgetRefused(
            f"reserving {amount} µUSD would overspend plan {plan.key} "
            f"({plan.available_usd_micro} µUSD available)"
        )


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
