"""Reclaiming what dead runs hold: an execution past its deadline (its process was killed)
is failed, its reservation released and a ``reaped`` event written; expired leases end.

``manage.py reap`` runs it; ``run_processor`` runs it before each run, so a crashed run never
holds a budget for longer than its deadline plus the next run's start.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from pytest_theory.django_project.apps.leases.models import Lease
from pytest_theory.django_project.apps.runs import budget, ledger
from pytest_theory.django_project.apps.runs.models import Execution, LedgerEvent

OPEN = (Execution.Status.PENDING, Execution.Status.RUNNING)


def reap(now: datetime | None = None) -> list[str]:
    """Fail every open execution whose deadline has passed; the ids reaped."""
    now = now or timezone.now()
    reaped = []
    for execution_id in Execution.objects.filter(status__in=OPEN, deadline_at__lt=now).values_list(
        "id", flat=True
    ):
        with transaction.atomic():
            # The claim: whoever moves it out of OPEN first (settlement or reaper) releases.
            if not Execution.objects.filter(pk=execution_id, status__in=OPEN).update(
                status=Execution.Status.FAILED
            ):
                continue
            execution = Execution.objects.select_related("plan").get(pk=execution_id)
            released = execution.reserved_usd_micro
            if execution.plan is not None and released:
                budget.release(execution.plan.pk, released)
            execution.reserved_usd_micro = 0
            execution.error_code = "ERR_TIMEOUT"
            execution.finished_at = now
            execution.save()
            if LedgerEvent.objects.filter(execution_id=execution_id).exists():
                ledger.append(
                    LedgerEvent.Kind.REAPED,
                    execution_id=execution_id,
                    plan_key=execution.plan.key if execution.plan else "",
                    data={
                        "released_usd_micro": released,
                        "deadline_at": str(execution.deadline_at),
                    },
                )
        reaped.append(execution_id)
    Lease.objects.filter(released_at=None, expires_at__lte=now).update(released_at=now)
    return reaped
