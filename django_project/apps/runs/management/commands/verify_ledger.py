"""``manage.py verify_ledger``: recompute the hash chain; exit 1 at the first edit or deletion."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand

from pytest_theory.django_project.apps.runs.ledger import verify


class Command(BaseCommand):
    help = "Verify the event ledger's hash chain."

    def handle(self, *args: Any, **options: Any) -> None:
        verdict = verify()
        if verdict.ok:
            self.stdout.write(f"ledger intact: {verdict.events} events")
            return
        self.stdout.write(f"ledger broken: {verdict.problem}")
        sys.exit(1)
