"""Users log in with their email, whatever its case; the Core App's profile fields exist."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import authenticate, get_user_model
from django.db import IntegrityError, transaction

from pytest_theory.django_project.apps.runs import ledger
from pytest_theory.django_project.apps.runs.models import Execution, LedgerEvent, Plan

pytestmark = pytest.mark.django_db
User = get_user_model()


def test_email_is_the_login() -> None:
    user = User.objects.create_user(
        username="john", email="john@example.com", password="s3cret-pass"
    )
    assert authenticate(email="john@example.com", password="s3cret-pass") == user
    assert authenticate(email="JOHN@Example.COM", password="s3cret-pass") == user
    assert authenticate(email="john@example.com", password="wrong") is None
    assert authenticate(email="nobody@example.com", password="s3cret-pass") is None
    assert User.USERNAME_FIELD == "email"


def test_emails_are_unique_whatever_their_case() -> None:
    User.objects.create_user(email="ada@example.com", password="x")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(username="other", email="ADA@example.com", password="x")


def test_profile_fields_and_timestamps() -> None:
    user = User.objects.create_user(
        email="grace@example.com",
        password="x",
        bio="Rear admiral",
        date_of_birth=datetime.date(1906, 12, 9),
        phone_number="+1 555 0100",
    )
    assert (user.bio, user.phone_number, user.is_profile_complete) == (
        "Rear admiral",
        "+1 555 0100",
        False,
    )
    assert user.created_at is not None and user.updated_at >= user.created_at
    assert user.username == "grace@example.com"  # username defaults to the email


def test_email_is_required() -> None:
    with pytest.raises(ValueError, match="email"):
        User.objects.create_user(username="nameless", email="", password="x")


def test_superusers_and_the_admin() -> None:
    root = User.objects.create_superuser(email="root@example.com", password="x")
    assert root.is_staff and root.is_superuser
    for model in (User, Plan, Execution, LedgerEvent):
        assert model in admin.site._registry


def test_the_admin_pages_answer(client: object) -> None:
    User.objects.create_superuser(email="root@example.com", password="pw")
    assert client.login(email="root@example.com", password="pw")  # type: ignore[attr-defined]
    for url in (
        "/admin/accounts/user/",
        "/admin/runs/plan/",
        "/admin/runs/execution/",
        "/admin/runs/ledgerevent/",
    ):
        assert client.get(url).status_code == 200, url  # type: ignore[attr-defined]


def test_the_admin_cannot_change_a_balance(client: Any, manage: Any) -> None:
    """A superuser posting new balances changes nothing; budgets move only through the ledger."""
    User.objects.create_superuser(email="root@example.com", password="pw")
    assert client.login(email="root@example.com", password="pw")
    assert manage("plans", "create", "team", "--budget-usd-micro", "1000").code == 0
    plan = Plan.objects.get(key="team")
    page = client.get(f"/admin/runs/plan/{plan.pk}/change/")
    assert page.status_code == 200
    assert b'name="spent_usd_micro"' not in page.content
    assert b'name="budget_usd_micro"' not in page.content
    client.post(
        f"/admin/runs/plan/{plan.pk}/change/",
        {"key": "team", "budget_usd_micro": 10**9, "spent_usd_micro": 0, "reserved_usd_micro": 0},
    )
    plan.refresh_from_db()
    assert (plan.budget_usd_micro, plan.spent_usd_micro) == (1000, 0)
    assert ledger.verify().ok


def test_the_admin_add_views_answer_without_a_500(client: Any) -> None:
    User.objects.create_superuser(email="root@example.com", password="pw")
    assert client.login(email="root@example.com", password="pw")
    for url in ("/admin/runs/execution/add/", "/admin/runs/plan/add/"):
        assert client.get(url).status_code == 403, url  # made by runs and `plans`, not typed in


def test_a_balance_edited_behind_the_admins_back_is_found(manage: Any) -> None:
    assert manage("plans", "create", "team", "--budget-usd-micro", "1000").code == 0
    Plan.objects.filter(key="team").update(budget_usd_micro=10**9)
    verdict = ledger.verify()
    assert not verdict.ok and "plan team: budget/reserved/spent" in verdict.problem


def test_plans_are_created_and_listed(manage: Any) -> None:
    assert manage("plans", "create", "team", "--budget-usd-micro", "5000").code == 0
    assert manage("plans", "create", "team", "--budget-usd-micro", "1").code == 2
    assert manage("plans", "create", "bad key", "--budget-usd-micro", "1").code == 2
    assert manage("plans", "budget", "team", "--budget-usd-micro", "7000").code == 0
    listed = json.loads(manage("plans", "list", "--json").stdout)
    assert listed == [
        {
            "key": "team",
            "owner": None,
            "budget_usd_micro": 7000,
            "reserved_usd_micro": 0,
            "spent_usd_micro": 0,
            "available_usd_micro": 7000,
        }
    ]
    assert "team  budget 7000" in manage("plans", "list").stdout
    assert ledger.verify().ok
