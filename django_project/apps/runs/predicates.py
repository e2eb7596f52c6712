"""Admission and success predicates named in registry.yaml (``predicates.admission``/``success``).

budget.available@1  {required_usd_micro: N}          the plan has at least N available (admission);
                                                      N is also what a run reserves
artifact.exists@1   {path: "${outputs.text_path}"}   the run wrote that file (success)
envelope.success@1  {}                                the run's envelope is a success (success)

String arguments may hold placeholders, checked when the registry is loaded (``check_known``)
and expanded at settlement:

``${prefix}``             the run's write prefix, e.g. ``/artifacts/outputs/llm-litellm/e-1/``
``${outputs.NAME_path}``  the world path of the declared output whose first path segment,
                          without its extension, is NAME (``text/response.txt`` -> ``text``,
                          ``metadata.json`` -> ``metadata``); a glob or an ambiguous NAME
                          has no placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_theory.django_project.apps.runs.models import Plan
from pytest_theory.django_project.apps.storage.store import ArtifactStore
from pytest_theory.registry import ProcessorSpec, RegistryError

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


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


def output_placeholders(spec: ProcessorSpec) -> dict[str, str]:
    """``{"outputs.text_path": "outputs/text/response.txt", ...}``: relative to the prefix."""
    by_name: dict[str, list[str]] = {}
    for output in spec.outputs:
        path = output["path"]
        name = path.split("/", 1)[0].split(".", 1)[0]
        by_name.setdefault(name, []).append(path)
    return {
        f"outputs.{name}_path": "outputs/" + paths[0]
        for name, paths in by_name.items()
        if len(paths) == 1 and not any(c in paths[0] for c in "*?[")
    }


def known_placeholders(spec: ProcessorSpec) -> list[str]:
    return ["prefix", *sorted(output_placeholders(spec))]


def expand(value: Any, spec: ProcessorSpec, prefix: str) -> Any:
    """``value`` with every placeholder replaced (strings inside lists and dicts too)."""
    if isinstance(value, str):
        table = {"prefix": prefix, **{k: prefix + v for k, v in output_placeholders(spec).items()}}
        return PLACEHOLDER.sub(lambda m: table[m.group(1)], value)
    if isinstance(value, dict):
        return {k: expand(v, spec, prefix) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, spec, prefix) for v in value]
    return value


def _unknown_placeholders(value: Any, known: set[str]) -> list[str]:
    if isinstance(value, str):
        return [m.group(0) for m in PLACEHOLDER.finditer(value) if m.group(1) not in known]
    if isinstance(value, dict):
        return [u for v in value.values() for u in _unknown_placeholders(v, known)]
    if isinstance(value, list):
        return [u for v in value for u in _unknown_placeholders(v, known)]
    return []


def required_usd_micro(spec: ProcessorSpec) -> int:
    """What ``budget.available@1`` asks of the plan (0 when the processor declares no price)."""
    return max(
        (
            int((entry.get("args") or {}).get("required_usd_micro", 0))
            for entry in (spec.data.get("predicates") or {}).get("admission", [])
            if entry["id"] == "budget.available@1"
        ),
        default=0,
    )


def budget_available(ctx: Context, args: dict[str, Any]) -> tuple[bool, str]:
    required = int(args.get("required_usd_micro", 0))
    if ctx.plan is None:
        return required == 0, f"no plan, {required} µUSD required"
    ctx.plan.refresh_from_db()
    available = ctx.plan.available_usd_micro
    return available >= required, f"{available} µUSD available, {required} required"


def artifact_exists(ctx: Context, args: dict[str, Any]) -> tuple[bool, str]:
    path = str(args["path"])
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
    """Every predicate the registry names exists, belongs to its phase, and every placeholder
    in its arguments can be expanded; else a RegistryError naming the field."""
    known = set(known_placeholders(spec))
    for phase, entries in (spec.data.get("predicates") or {}).items():
        for index, entry in enumerate(entries):
            where = f"{spec.path}: predicates.{phase}[{index}]"
            found = PREDICATES.get(entry["id"])
            if found is None:
                raise RegistryError(
                    f"{where}.id: unknown predicate "
                    f"{entry['id']!r} (known: {', '.join(sorted(PREDICATES))})"
                )
            if found[0] != phase:
                raise RegistryError(f"{where}.id: {entry['id']} is an {found[0]} predicate")
            unknown = _unknown_placeholders(entry.get("args") or {}, known)
            if unknown:
                raise RegistryError(
                    f"{where}.args: {unknown[0]} cannot be expanded (known: "
                    + ", ".join("${" + k + "}" for k in sorted(known))
                    + ")"
                )


def evaluate(spec: ProcessorSpec, phase: str, ctx: Context) -> list[Outcome]:
    outcomes = []
    for entry in (spec.data.get("predicates") or {}).get(phase, []):
        args = expand(entry.get("args") or {}, spec, ctx.prefix)
        ok, detail = PREDICATES[entry["id"]][1](ctx, args)
        outcomes.append(Outcome(entry["id"], ok, detail))
    return outcomes
