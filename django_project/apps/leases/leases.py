"""``LeaseManager``: plan-scoped leases on world paths (exact files or prefixes).

Selectors are canonicalised with the contract's world-path rules (facet roots
only; percent-decoded once; NFC; ``//`` collapsed; ``.``/``..`` refused); an
``exact`` selector names a file and must not end with ``/``, a ``prefix``
selector names a folder and must. Two paths overlap when one is the other or
lies inside it, segment by segment (``/artifacts/foo`` and ``/artifacts/foobar``
do not).

While disabled (``LEASES_ENABLED=False``, the default) ``acquire`` checks the
selectors and hands back a handle but holds nothing. Enabled, leases are rows
in the database, so they hold across processes: an acquisition locks one row
(``select_for_update`` on PostgreSQL; SQLite's IMMEDIATE transactions take the
write lock), reclaims expired leases, and refuses with ``LeaseConflict`` when
another plan holds an overlapping active lease. Nothing is waited for.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from pytest_theory.contracts.worldpath import canonicalize
from pytest_theory.django_project.apps.leases.models import Lease, LeaseLock

Kind = Literal["exact", "prefix"]
DEFAULT_TTL_S = 3600.0


class LeaseError(ValueError):
    """A selector that cannot be leased."""


class LeaseConflict(RuntimeError):
    """Another plan holds an overlapping lease."""


@dataclass(frozen=True)
class Selector:
    kind: Kind
    path: str


def canonicalize_selector(selector: Mapping[str, Any] | Selector) -> Selector:
    """The canonical selector; ``LeaseError`` when the kind, path or trailing slash is wrong."""
    kind = selector.kind if isinstance(selector, Selector) else selector.get("kind")
    raw = selector.path if isinstance(selector, Selector) else selector.get("path")
    if kind not in ("exact", "prefix"):
        raise LeaseError("a selector's kind is 'exact' or 'prefix'")
    try:
        path = canonicalize(raw)
    except ValueError as exc:
        raise LeaseError(f"not a leasable world path: {exc}") from None
    if kind == "exact" and path.endswith("/"):
        raise LeaseError("an exact selector names a file: no trailing '/'")
    if kind == "prefix" and not path.endswith("/"):
        raise LeaseError("a prefix selector names a folder: it ends with '/'")
    return Selector(kind, path)  # type: ignore[arg-type]


def paths_overlap(a: str, b: str) -> bool:
    """True when one path is the other or lies inside it (segment-aware)."""
    a_parts = [p for p in canonicalize(a).split("/") if p]
    b_parts = [p for p in canonicalize(b).split("/") if p]
    shorter = min(len(a_parts), len(b_parts))
    return a_parts[:shorter] == b_parts[:shorter]


@dataclass
class LeaseHandle:
    plan_id: str
    selectors: tuple[Selector, ...]
    reason: str | None
    expires_at: datetime
    lease_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _manager: LeaseManager | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self._manager is not None and self._manager.clock() < self.expires_at

    def release(self) -> None:
        """Give the lease back; safe to call twice."""
        if self._manager is not None:
            self._manager._release(self)
            self._manager = None

    def __enter__(self) -> LeaseHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LeaseManager:
    def __init__(
        self,
        enabled: bool | None = None,
        *,
        default_ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], datetime] = timezone.now,
    ):
        if enabled is None:
            enabled = bool(getattr(settings, "LEASES_ENABLED", False))
        self.enabled = enabled
        self.default_ttl_s = default_ttl_s
        self.clock = clock

    def acquire(
        self,
        plan_id: str,
        selectors: Iterable[Mapping[str, Any] | Selector],
        *,
        reason: str | None = None,
        ttl_s: float | None = None,
    ) -> LeaseHandle:
        """Lease ``selectors`` for ``plan_id``; the selectors are checked even while disabled."""
        canonical = tuple(canonicalize_selector(s) for s in selectors)
        now = self.clock()
        handle = LeaseHandle(
            plan_id, canonical, reason, now + timedelta(seconds=ttl_s or self.default_ttl_s)
        )
        if not self.enabled:
            return handle  # the façade: nothing is held
        LeaseLock.objects.get_or_create(pk=1)
        with transaction.atomic():
            LeaseLock.objects.select_for_update().get(pk=1)  # acquisitions queue here
            active = Lease.objects.filter(released_at=None)
            active.filter(expires_at__lte=now).update(released_at=now)  # expiry reclaims
            for other in active.exclude(holder=plan_id).filter(expires_at__gt=now):
                if any(paths_overlap(mine.path, other.path) for mine in canonical):
                    raise LeaseConflict(
                        f"plan {other.holder} holds an overlapping lease on {other.path} "
                        f"until {other.expires_at.isoformat(timespec='seconds')}"
                    )
            Lease.objects.bulk_create(
                Lease(
                    token=handle.lease_id,
                    holder=plan_id,
                    kind=s.kind,
                    path=s.path,
                    reason=(reason or "")[:200],
                    created_at=now,
                    expires_at=handle.expires_at,
                )
                for s in canonical
            )
        handle._manager = self
        return handle

    def __call__(
        self,
        plan_id: str,
        selectors: Iterable[Mapping[str, Any] | Selector],
        *,
        reason: str | None = None,
        ttl_s: float | None = None,
    ) -> LeaseHandle:
        """``with lm(plan_id, selectors): ...``"""
        return self.acquire(plan_id, selectors, reason=reason, ttl_s=ttl_s)

    def held(self) -> list[tuple[str, str, str]]:
        """Active leases as ``(plan, kind, path)``; none while disabled."""
        if not self.enabled:
            return []
        rows = Lease.objects.filter(released_at=None, expires_at__gt=self.clock())
        return list(rows.order_by("id").values_list("holder", "kind", "path"))

    def _release(self, handle: LeaseHandle) -> None:
        Lease.objects.filter(token=handle.lease_id, released_at=None).update(
            released_at=self.clock()
        )
