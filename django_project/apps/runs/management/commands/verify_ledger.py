"""``manage.py verify_ledger [--adopt]``: check the chain, its anchor, and plans and executions
against the events; exit 1 at the first finding. ``--adopt`` anchors a ledger that predates
the anchor file, once it checks out without it."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from pytest_theory.django_project.apps.runs.ledger import adopt, verify


class Command(BaseCommand):
    help = "Verify the event ledger's hash chain."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--adopt", action="store_true", help="anchor a ledger that has no anchor yet"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verdict = adopt() if options["adopt"] else verify()
        if verdict.ok:
            self.stdout.write(f"ledger intact: {verdict.events} events")
            return
        self.stdout.write(f"ledger broken: {verdict.problem}")
        sys.exit(1)
