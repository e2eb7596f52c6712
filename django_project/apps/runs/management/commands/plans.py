"""``manage.py plans``: create, re-budget and list plans; every change is a ledger event.

    manage.py plans create team --budget-usd-micro 5000000 [--owner ada@example.org]
    manage.py plans budget team --budget-usd-micro 8000000
    manage.py plans list [--json]

Budgets change only here (the admin shows them read-only), so ``verify_ledger`` can
check each plan's budget, reservations and spending against its events.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug
from django.db import transaction
from django.db.models import F

from pytest_theory.django_project.apps.runs import ledger
from pytest_theory.django_project.apps.runs.models import LedgerEvent, Plan


def usage(message: str) -> CommandError:
    return CommandError(message, returncode=2)


class Command(BaseCommand):
    help = "Create, re-budget and list plans (budgets in micro-USD)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="a new plan")
        create.add_argument("key")
        create.add_argument("--budget-usd-micro", type=int, required=True)
        create.add_argument("--owner", help="the owner's email")
        change = sub.add_parser("budget", help="set a plan's budget")
        change.add_argument("key")
        change.add_argument("--budget-usd-micro", type=int, required=True)
        listing = sub.add_parser("list", help="every plan with its balances")
        listing.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            return self._list(options["json"])
        amount = options["budget_usd_micro"]
        if amount < 0:
            raise usage("--budget-usd-micro must not be negative")
        key = options["key"]
        with transaction.atomic():
            if action == "create":
                plan = self._create(key, amount, options.get("owner"))
            else:
                # One conditional UPDATE: a budget never drops below what is reserved and spent.
                if not Plan.objects.filter(key=key).exists():
                    raise usage(f"no such plan: {key}")
                if not Plan.objects.filter(
                    key=key, reserved_usd_micro__lte=amount - F("spent_usd_micro")
                ).update(budget_usd_micro=amount):
                    raise usage(f"plan {key}: {amount} µUSD is less than reserved + spent")
                plan = Plan.objects.get(key=key)
            ledger.append(
                LedgerEvent.Kind.PLAN,
                plan_key=plan.key,
                data={"action": action, "budget_usd_micro": plan.budget_usd_micro},
            )
        self.stdout.write(f"plan {plan.key}: budget {plan.budget_usd_micro} µUSD")

    def _create(self, key: str, amount: int, owner_email: str | None) -> Plan:
        if Plan.objects.filter(key=key).exists():
            raise usage(f"plan {key} exists already")
        try:
            validate_slug(key)
        except ValidationError:
            raise usage(f"plan key {key!r}: letters, digits, '-' and '_' only") from None
        owner = None
        if owner_email:
            owner = get_user_model().objects.filter(email__iexact=owner_email).first()
            if owner is None:
                raise usage(f"--owner {owner_email}: no such user")
        return Plan.objects.create(key=key, budget_usd_micro=amount, owner=owner)

    def _list(self, as_json: bool) -> None:
        rows = [
            {
                "key": p.key,
                "owner": p.owner.email if p.owner else None,
                "budget_usd_micro": p.budget_usd_micro,
                "reserved_usd_micro": p.reserved_usd_micro,
                "spent_usd_micro": p.spent_usd_micro,
                "available_usd_micro": p.available_usd_micro,
            }
            for p in Plan.objects.select_related("owner").order_by("key")
        ]
        if as_json:
            self.stdout.write(json.dumps(rows))
            return
        for row in rows:
            self.stdout.write(
                f"{row['key']}  budget {row['budget_usd_micro']}  reserved "
                f"{row['reserved_usd_micro']}  spent {row['spent_usd_micro']}  available "
                f"{row['available_usd_micro']}  owner {row['owner'] or '-'}"
            )
