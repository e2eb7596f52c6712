"""Admission and success predicates named in registry.yaml (``predicates.admission``/``success``).

budget.available@1  {required_usd_micro: N}   the plan has at least N available (admission)
conformance.attested@1  {}                     the image has a PASSED conformance attestation
                                               in the ArtifactStore, and no FAILED one (admission)
artifact.exists@1   {path: "${prefix}outputs/x"}  the run wrote that file (success)
envelope.success@1  {}                         the run's envelope is a success (success)

The policy switch ``THEORY_REQUIRE_ATTESTATION`` (a setting, or ``=1`` in the
environment) adds conformance.attested@1 to every processor's admission, named
in its registry.yaml or not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings

from pytest_theory.contracts import cid_of_bytes
from pytest_theory.django_project.apps.runs.models import Plan
from pytest_theory.django_project.apps.storage.store import ArtifactStore
from pytest_theory.registry import ProcessorSpec, RegistryError
from pytest_theory.report import attest
from pytest_theory.report.sources import known_digest

ATTESTED = "conformance.attested@1"
#: Where statements live in the world, one folder per image digest.
ATTESTATIONS = "/artifacts/attestations/"


@dataclass
class Context:
    store: ArtifactStore
    plan: Plan | None = None
    prefix: str = ""
    envelope: dict[str, Any] = field(default_factory=dict)
    spec: ProcessorSpec | None = None
    #: The digest the run will use; found from the spec (built image, else pin) when empty.
    image_digest: str = ""


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


def attestation_folder(digest: str) -> str:
    return f"{ATTESTATIONS}sha256/{digest.removeprefix('sha256:')}/"


def store_attestation(store: ArtifactStore, data: bytes) -> list[str]:
    """Store an in-toto test-result statement under each of its subjects' digests.

    Raises ``attest.AttestationError`` when ``data`` is not such a statement.
    """
    try:
        statement = json.loads(data)
    except ValueError as exc:
        raise attest.AttestationError(f"not JSON ({exc})") from None
    attest.check(statement)
    name = cid_of_bytes(data).removeprefix("b3:")[:32] + attest.SUFFIX
    paths = []
    for digest in sorted(attest.subject_digests(statement)):
        paths.append(store.put(attestation_folder(digest) + name, data).path)
    return paths


def attestations_for(store: ArtifactStore, digest: str) -> list[dict[str, Any]]:
    """The statements stored for ``digest`` (files that no longer validate are ignored)."""
    found = []
    for path in store.list(attestation_folder(digest)):
        try:
            found.append(attest.check(json.loads(store.read(path))))
        except (ValueError, attest.AttestationError):
            continue
    return found


def conformance_attested(ctx: Context, args: dict[str, Any]) -> tuple[bool, str]:
    digest = ctx.image_digest or (known_digest(ctx.spec, "inprocess") if ctx.spec else None)
    if not digest:
        return False, "the image's digest is not known before the run: nothing to check"
    return attest.verdict(attestations_for(ctx.store, digest), digest)


def attestation_required() -> bool:
    return bool(getattr(settings, "THEORY_REQUIRE_ATTESTATION", False)) or (
        os.environ.get("THEORY_REQUIRE_ATTESTATION") == "1"
    )


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
    ATTESTED: ("admission", conformance_attested),
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
    entries = list((spec.data.get("predicates") or {}).get(phase, []))
    named = any(entry["id"] == ATTESTED for entry in entries)
    if phase == "admission" and attestation_required() and not named:
        entries.insert(0, {"id": ATTESTED})  # first: refused before a budget is looked at
    ctx = ctx if ctx.spec is not None else replace(ctx, spec=spec)
    for entry in entries:
        ok, detail = PREDICATES[entry["id"]][1](ctx, entry.get("args", {}))
        outcomes.append(Outcome(entry["id"], ok, detail))
    return outcomes
