"""Reclaiming what dead runs hold: an execution past its deadline (its process was killed)
is failed, its reservation released and a ``reaped`` event written; expired leases end; and
attachment uploads a killed process left half-written (``.NAME.tmp-HEX`` beside where the
file was going) are removed once older than ``PARTIAL_UPLOAD_TTL``.

``manage.py reap`` runs it; ``run_processor`` runs it before each run, so a crashed run never
holds a budget for longer than its deadline plus the next run's start.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from pytest_theory.contracts.errors import ErrorCode, error_envelope
from pytest_theory.django_project.apps.leases.models import Lease
from pytest_theory.django_project.apps.runs import budget, ledger
from pytest_theory.django_project.apps.runs.models import Execution, LedgerEvent

OPEN = (Execution.Status.PENDING, Execution.Status.RUNNING)
#: An upload still unfinished after this long has no process behind it.
PARTIAL_UPLOAD_TTL = timedelta(hours=1)
PARTIAL = re.compile(r"\..+\.tmp-[0-9a-f]{32}")


def sweep_partial_uploads(world_root: str | Path, now: datetime) -> list[Path]:
    """Remove half-written attachment uploads older than ``PARTIAL_UPLOAD_TTL``."""
    inputs = Path(world_root) / "artifacts" / "inputs"
    cutoff = (now - PARTIAL_UPLOAD_TTL).timestamp()
    removed = []
    for folder in inputs.iterdir() if inputs.is_dir() else []:
        for file in folder.iterdir() if folder.is_dir() else []:
            if PARTIAL.fullmatch(file.name) and file.lstat().st_mtime < cutoff:
                file.unlink(missing_ok=True)
                removed.append(file)
    return removed


def reap(now: datetime | None = None, *, world_root: str | Path | None = None) -> list[str]:
    """Fail every open execution whose deadline has passed; the ids reaped."""
    now = now or timezone.now()
    if world_root is not None:
        sweep_partial_uploads(world_root, now)
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
            execution.error_code = ErrorCode.ERR_TIMEOUT.value
            execution.envelope = error_envelope(
                ErrorCode.ERR_TIMEOUT,
                "the run outlived its deadline (its process died or hung) and was reaped",
                execution_id=execution_id,
            )
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
