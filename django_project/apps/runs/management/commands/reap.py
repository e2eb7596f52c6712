"""``manage.py reap``: fail runs whose process died (past their deadline), release what they hold."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from pytest_theory.django_project.apps.runs.reaper import reap


class Command(BaseCommand):
    help = "Fail executions past their deadline, releasing their reservations and leases."

    def handle(self, *args: Any, **options: Any) -> None:
        reaped = reap(world_root=settings.THEORY_WORLD_ROOT)
        for execution_id in reaped:
            self.stdout.write(f"reaped {execution_id}")
        self.stdout.write(f"{len(reaped)} executions reaped")
