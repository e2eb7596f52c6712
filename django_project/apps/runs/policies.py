"""The run policy: the settings' default, overridden by the processor's registry ``policy``."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from pytest_theory.registry import ProcessorSpec


@dataclass(frozen=True)
class Policy:
    max_usd_micro: int
    reserve_usd_micro: int
    max_attempts: int
    backoff_ms: tuple[int, ...]
    lease_ttl_s: int
    path_leases: bool

    def backoff_s(self, attempt: int) -> float:
        """The pause before attempt ``attempt + 1`` (the last value repeats)."""
        if not self.backoff_ms:
            return 0.0
        return self.backoff_ms[min(attempt - 1, len(self.backoff_ms) - 1)] / 1000


def policy_for(spec: ProcessorSpec) -> Policy:
    merged: dict[str, Any] = copy.deepcopy(settings.THEORY_DEFAULT_POLICY)
    for section, values in (spec.data.get("policy") or {}).items():
        merged.setdefault(section, {}).update(values)
    return Policy(
        max_usd_micro=int(merged["budget"]["max_usd_micro"]),
        reserve_usd_micro=int(merged["budget"]["reserve_usd_micro"]),
        max_attempts=int(merged["retry"]["max_attempts"]),
        backoff_ms=tuple(int(ms) for ms in merged["retry"].get("backoff_ms", [])),
        lease_ttl_s=int(merged["leases"]["default_ttl_s"]),
        path_leases=bool(merged["leases"].get("enable_path_leases", False)),
    )
