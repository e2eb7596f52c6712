"""``LeaseManager``: plan-scoped leases on world paths (exact files or prefixes).

Selectors are canonicalised with the contract's world-path rules (facet roots
only; percent-decoded once; NFC; ``//`` collapsed; ``.``/``..`` refused); an
``exact`` selector names a file and must not end with ``/``, a ``prefix``
selector names a folder and must. Two paths overlap when one is the other or
lies inside it, segment by segment (``/artifacts/foo`` and ``/artifacts/foobar``
do not).

While disabled (``LEASES_ENABLED=False``, the default) ``acquire`` checks the
selectors and hands back a handle but holds nothing. Enabled, leases live in
this process, expire after their TTL, and a plan's lease that overlaps another
plan's is refused with ``LeaseConflict``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_theory.contracts.worldpath import canonicalize

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
    expires_at: float
    lease_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _manager: LeaseManager | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self._manager is not None and time.monotonic() < self.expires_at

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
    def __init__(self, enabled: bool | None = None, *, default_ttl_s: float = DEFAULT_TTL_S):
        if enabled is None:
            from django.conf import settings

            enabled = bool(getattr(settings, "LEASES_ENABLED", False))
        self.enabled = enabled
        self.default_ttl_s = default_ttl_s
        self._held: dict[str, LeaseHandle] = {}
        self._lock = threading.Lock()

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
        handle = LeaseHandle(
            plan_id, canonical, reason, time.monotonic() + (ttl_s or self.default_ttl_s)
        )
        if not self.enabled:
            return handle  # the façade: nothing is held
        with self._lock:
            now = time.monotonic()
            self._held = {k: h for k, h in self._held.items() if h.expires_at > now}
            for other in self._held.values():
                if other.plan_id != plan_id and any(
                    paths_overlap(mine.path, theirs.path)
                    for mine in canonical
                    for theirs in other.selectors
                ):
                    raise LeaseConflict(f"plan {other.plan_id} holds an overlapping lease")
            handle._manager = self
            self._held[handle.lease_id] = handle
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

    def held(self) -> list[LeaseHandle]:
        now = time.monotonic()
        with self._lock:
            return [h for h in self._held.values() if h.expires_at > now]

    def _release(self, handle: LeaseHandle) -> None:
        with self._lock:
            self._held.pop(handle.lease_id, None)
