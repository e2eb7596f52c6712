"""Plans (budgets), executions, and the append-only ledger of what happened to them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Plan(models.Model):
    """A budget in micro-USD, split into what runs have reserved and what they spent.

    The database holds the line: reserved, spent and budget stay at or above
    zero, and reserved + spent never exceeds the budget.
    """

    key = models.SlugField(max_length=100, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="plans",
    )
    budget_usd_micro = models.BigIntegerField(default=0)
    reserved_usd_micro = models.BigIntegerField(default=0)
    spent_usd_micro = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(budget_usd_micro__gte=0), name="plan_budget_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(reserved_usd_micro__gte=0), name="plan_reserved_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(spent_usd_micro__gte=0), name="plan_spent_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(reserved_usd_micro__lte=F("budget_usd_micro") - F("spent_usd_micro")),
                name="plan_within_budget",
            ),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def available_usd_micro(self) -> int:
        return self.budget_usd_micro - self.reserved_usd_micro - self.spent_usd_micro


class Execution(models.Model):
    """One run of a processor, from admission to settlement."""

    class Status(models.TextChoices):
        PENDING = "pending"
        REFUSED = "refused"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=128)  # the execution id
    plan = models.ForeignKey(
        Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="executions"
    )
    ref = models.CharField(max_length=200)
    adapter = models.CharField(max_length=20)
    mode = models.CharField(max_length=10)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    write_prefix = models.CharField(max_length=4096)
    prefix = models.CharField(max_length=4096, blank=True)
    inputs_hash = models.CharField(max_length=67, blank=True)
    registry_snapshot = models.JSONField(default=dict)
    envelope = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    index_path = models.CharField(max_length=4096, blank=True)
    receipt_path = models.CharField(max_length=4096, blank=True)
    determinism_path = models.CharField(max_length=4096, blank=True)
    reserved_usd_micro = models.BigIntegerField(default=0)
    cost_usd_micro = models.BigIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    predicates = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    #: Past this, a pending or running execution is abandoned (its process died): the reaper
    #: fails it and gives its reservation back.
    deadline_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["ref", "status"]),
            models.Index(fields=["plan", "created_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(reserved_usd_micro__gte=0), name="execution_reserved_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(cost_usd_micro__gte=0), name="execution_cost_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.ref} {self.status}"


class LedgerImmutable(Exception):
    """The ledger is append-only."""


class LedgerQuerySet(models.QuerySet["LedgerEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise LedgerImmutable("ledger events are never updated")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise LedgerImmutable("ledger events are never deleted")


class LedgerEvent(models.Model):
    """One event; ``hash`` is BLAKE3 of the previous hash and ``canonical`` (this event's canonical
    JSON), so an edit or a deletion anywhere breaks the chain (``verify_ledger`` finds where)."""

    class Kind(models.TextChoices):
        ADMISSION = "admission"
        REFUSAL = "refusal"
        START = "start"
        RETRY = "retry"
        SETTLEMENT = "settlement"
        FAILURE = "failure"
        PLAN = "plan"
        REAPED = "reaped"

    seq = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    execution_id = models.CharField(max_length=128, blank=True, db_index=True)
    plan_key = models.CharField(max_length=100, blank=True)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    canonical = models.TextField()
    prev_hash = models.CharField(max_length=67)
    hash = models.CharField(max_length=67, unique=True)

    objects = LedgerQuerySet.as_manager()

    class Meta:
        ordering = ["seq"]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise LedgerImmutable("ledger events are never updated")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise LedgerImmutable("ledger events are never deleted")


class LedgerHead(models.Model):
    """The chain's last link (one row): appends lock it, and a truncated tail shows against it."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=67)
