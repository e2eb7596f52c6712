"""Leases in the database, so they hold across processes (see ``leases.LeaseManager``)."""

from __future__ import annotations

from django.db import models


class Lease(models.Model):
    """One selector of one acquisition (``token``); active until released or expired."""

    token = models.CharField(max_length=32, db_index=True)
    holder = models.CharField(max_length=200)  # the plan (leases are plan-scoped)
    kind = models.CharField(max_length=10)  # exact | prefix
    path = models.CharField(max_length=4096)
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    released_at = models.DateTimeField(null=True, blank=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.holder} {self.kind} {self.path}"


class LeaseLock(models.Model):
    """The one row every acquisition locks (``select_for_update``), so overlap checks queue."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
