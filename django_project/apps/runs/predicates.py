"""Admission and success predicates named in registry.yaml (``predicates.admission``/``success``).

budget.available@1  {required_usd_micro: N}   the plan has at least N available (admission)
artifact.exists@1   {path: "${prefix}outputs/x"}  the run wrote that file (success)
envelope.success@1  {}                         the run's envelope is a success (success)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_theory.django_project.apps.runs.models import Plan
from pytest_theory.django_project.apps.storage.store import ArtifactStore
from pytest_theory.registry import ProcessorSpec, RegistryError


@dataclass
class Context:
    store: ArtifactStore
    plan: Plan | None = None
    prefix: str = ""
    envelope: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    id: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ok": self.ok, "detail": self.detail}


def budget_available(ctx: Context, args: dict[str, Any]) -> tuple[bool, str]:
    required = int(args.get("required_usd_micro", 0))
    if ctx.plan is None:
        return True, "no plan: no budget to check"
    ctx.plan.refresh_from_db()
    available = ctx.plan.available_usd_micro
    return available >= required, f"{available} µUSD available, {required} required"


def artifact_exists(ctx: Context, args: dict[str, Any]) -> tuple[bool, str]:
    path = str(args["path"]).replace("${prefix}", ctx.prefix)
    if not path.startswith("/"):
        path = ctx.prefix + path
    return ctx.store.exists(path), path


def envelope_success(ctx: Context, args: dict[str, Any]) -> tuple[bool, str]:
    return ctx.envelope.get("status") == "success", str(ctx.envelope.get("status"))


#: id -> (phase, check)
PREDICATES: dict[str, tuple[str, Callable[[Context, dict[str, Any]], tuple[bool, str]]]] = {
    "budget.available@1": ("admission", budget_available),
    "artifact.exists@1": ("success", artifact_exists),
    "envelope.success@1": ("success", envelope_success),
}


def check_known(spec: ProcessorSpec) -> None:
    """Every predicate the registry names exists and belongs to its phase; else a RegistryError."""
    for phase, entries in (spec.data.get("predicates") or {}).items():
        for index, entry in enumerate(entries):
            known = PREDICATES.get(entry["id"])
            if known is None:
                raise RegistryError(
                    f"{spec.path}: predicates.{phase}[{index}].id: unknown predicate "
                    f"{entry['id']!r} (known: {', '.join(sorted(PREDICATES))})"
                )
            if known[0] != phase:
                raise RegistryError(
                    f"{spec.path}: predicates.{phase}[{index}].id: {entry['id']} is an "
                    f"{known[0]} predicate"
                )


def evaluate(spec: ProcessorSpec, phase: str, ctx: Context) -> list[Outcome]:
    outcomes = []
    for entry in (spec.data.get("predicates") or {}).get(phase, []):
        ok, detail = PREDICATES[entry["id"]][1](ctx, entry.get("args", {}))
        outcomes.append(Outcome(entry["id"], ok, detail))
    return outcomes
