"""What every adapter shares: the ``invoke`` signature, preflight checks, envelope checks.

Adapters are transport only. Each one finds or starts the processor, waits for
``/healthz``, posts the payload and hands back the processor's envelope after
checking it. Run-time failures never raise: they come back as error envelopes
with the adapter-side codes of SPEC section 4.

Exception tree (raised inside adapters, always turned into envelopes)::

    ContractError (contracts.errors)
    └── AdapterError     an adapter-side code, a message, and the log tail if any
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from pytest_theory.contracts import schemas
from pytest_theory.contracts.digests import digests_equal, normalize_digest
from pytest_theory.contracts.errors import ContractError, ErrorCode, error_envelope, is_valid_status
from pytest_theory.contracts.fingerprint import env_fingerprint
from pytest_theory.contracts.modes import check_ci_safety, parse_mode
from pytest_theory.contracts.worldpath import validate_execution_id
from pytest_theory.registry import ProcessorSpec, RegistryError, parse_ref

#: ``on_event(event, data)`` for ``/run-stream`` events before ``done``.
OnEvent = Callable[[str, dict[str, Any]], None]
LOGS_TAIL_LINES = 20


class AdapterError(ContractError):
    """An adapter-side failure with the processor's last stderr lines, when there are any."""

    def __init__(self, code: ErrorCode | str, message: str, *, logs_tail: Sequence[str] = ()):
        super().__init__(code, message)
        self.logs_tail = list(logs_tail)


class ProcessorHandle(Protocol):
    """A processor an adapter can talk to: a container, an in-process app or a Modal endpoint."""

    @property
    def ref(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    @property
    def client(self) -> httpx.Client: ...

    @property
    def image_digest(self) -> str: ...

    @property
    def world_root(self) -> Path | None:
        """The world folder whose ``artifacts/`` the processor sees, when visible from here."""

    def stderr(self) -> str: ...

    def stdout(self) -> str | None: ...

    def alive(self) -> bool: ...

    def close(self) -> None: ...


class Adapter:
    """What every adapter is: one ``invoke`` (SPEC section 8) that preflights the call,
    then hands it to the adapter's ``run``.

    A call that fails preflight gets its error envelope without touching a
    processor; subclasses carry the checked call in ``run``.
    """

    name = ""

    def invoke(
        self,
        *,
        processor_ref: str,
        mode: str,
        inputs_json: Mapping[str, Any],
        write_prefix: str,
        execution_id: str,
        registry_snapshot: Mapping[str, Any],
        adapter_opts: Mapping[str, Any] | None = None,
        secrets_present: Sequence[str] = (),
        stream: bool = False,
        on_event: OnEvent | None = None,
    ) -> dict[str, Any]:
        """Run one payload; always returns an envelope."""
        try:
            invocation = preflight(
                processor_ref=processor_ref,
                mode=mode,
                inputs_json=inputs_json,
                write_prefix=write_prefix,
                execution_id=execution_id,
                registry_snapshot=registry_snapshot,
                adapter_opts=adapter_opts,
                secrets_present=secrets_present,
                stream=stream,
            )
        except ContractError as exc:
            return error_envelope(exc.code, exc.message)
        return self.run(invocation, dict(adapter_opts or {}), on_event)

    def run(
        self, invocation: Invocation, opts: dict[str, Any], on_event: OnEvent | None
    ) -> dict[str, Any]:
        """Carry a checked call to the processor; failures come back as error envelopes."""
        raise NotImplementedError

    def digest_for(self, spec: ProcessorSpec) -> str:
        """The digest a processor of ``spec`` runs as (its IMAGE_DIGEST), found without booting it."""
        raise NotImplementedError

    def close(self) -> None:
        """Release whatever the adapter started."""


@dataclass(frozen=True)
class Invocation:
    """One call, checked before anything starts."""

    spec: ProcessorSpec
    payload: dict[str, Any]
    secret_names: list[str]  # declared, reported present, and set here
    stream: bool

    @property
    def execution_id(self) -> str:
        execution_id: str = self.payload["execution_id"]
        return execution_id

    @property
    def fingerprint(self) -> str:
        return env_fingerprint(self.spec.runtime, self.secret_names)

    def error(self, exc: ContractError, image_digest: str = "") -> dict[str, Any]:
        """An error envelope for this call (with ``meta.logs_tail`` for adapter errors)."""
        extra = (
            {"logs_tail": exc.logs_tail} if isinstance(exc, AdapterError) and exc.logs_tail else {}
        )
        return error_envelope(
            exc.code,
            exc.message,
            execution_id=_safe_id(self.execution_id),
            image_digest=_safe_digest(image_digest),
            env_fingerprint=self.fingerprint,
            **extra,
        )

    def container_environment(self, image_digest: str) -> dict[str, str]:
        return container_environment(image_digest, self.secret_names)


def present_secrets(spec: ProcessorSpec, secrets_present: Sequence[str]) -> list[str]:
    """Declared secrets the caller reports present and that are set here."""
    present = set(secrets_present)
    return [n for n in spec.secrets_declared if n in present and os.environ.get(n)]


def container_environment(image_digest: str, secret_names: Sequence[str]) -> dict[str, str]:
    """All an adapter passes in: IMAGE_DIGEST, declared secrets that are present, and CI."""
    environment = {"IMAGE_DIGEST": image_digest}
    environment.update({name: os.environ[name] for name in secret_names})
    if "CI" in os.environ:
        environment["CI"] = os.environ["CI"]
    return environment


def _safe_id(execution_id: object) -> str:
    """The execution id when it is valid (an error envelope may not carry an invalid one)."""
    try:
        return validate_execution_id(execution_id)
    except ContractError:
        return ""


def _safe_digest(value: str) -> str:
    try:
        return normalize_digest(value)
    except ValueError:
        return ""


def preflight(
    *,
    processor_ref: str,
    mode: str,
    inputs_json: Mapping[str, Any],
    write_prefix: str,
    execution_id: str,
    registry_snapshot: Mapping[str, Any],
    adapter_opts: Mapping[str, Any] | None,
    secrets_present: Sequence[str],
    stream: bool,
) -> Invocation:
    """Check what can be checked before anything starts; raises ``ContractError``.

    CI safety is decided here, so ``real`` under ``CI=true`` never starts a
    container. Everything else about the payload is the processor's to judge.
    """
    try:
        spec = ProcessorSpec.from_snapshot(dict(registry_snapshot))
    except (KeyError, TypeError, RegistryError):
        raise ContractError(
            ErrorCode.ERR_REGISTRY, "registry_snapshot is not a registry snapshot"
        ) from None
    if str(parse_ref(processor_ref)) != str(spec.ref):
        raise ContractError(
            ErrorCode.ERR_REGISTRY, f"registry_snapshot is for {spec.ref}, not {processor_ref}"
        )
    try:
        check_ci_safety(parse_mode(mode))
    except ContractError as exc:
        if exc.code is ErrorCode.ERR_CI_SAFETY:
            raise
    opts = dict(adapter_opts or {})
    payload = {
        "schema": "v1",
        "execution_id": execution_id,
        "ref": str(spec.ref),
        "mode": mode,
        "inputs": dict(inputs_json) if isinstance(inputs_json, Mapping) else inputs_json,
        "write_prefix": write_prefix,
        "meta": {"trace_id": str(opts.get("trace_id") or execution_id)},
    }
    names = present_secrets(spec, secrets_present)
    return Invocation(spec=spec, payload=payload, secret_names=names, stream=stream)


def check_envelope(
    invocation: Invocation, status: int | None, envelope: Any, *, expected_digest: str | None
) -> dict[str, Any]:
    """The processor's envelope, or raise ``AdapterError`` when it breaks the contract or drifted."""
    meta = envelope.get("meta") if isinstance(envelope, dict) else None
    reported = meta.get("image_digest") if isinstance(meta, dict) else None
    # Drift first: it is judged from meta.image_digest alone, even in an invalid envelope.
    if (
        isinstance(reported, str)
        and reported
        and expected_digest
        and not digests_equal(reported, expected_digest)
    ):
        raise AdapterError(
            ErrorCode.ERR_IMAGE_DIGEST_MISMATCH,
            f"the processor runs {reported}, expected {normalize_digest(expected_digest)}",
        )
    problems = schemas.problems("envelope", envelope)
    if problems:
        raise AdapterError(
            ErrorCode.ERR_ENVELOPE_INVALID,
            "the envelope does not match the contract: " + "; ".join(problems[:3]),
        )
    if status is not None:
        ok = (
            status == 200
            if envelope["status"] == "success"
            else is_valid_status(envelope["error"]["code"], status)
        )
        if not ok:
            raise AdapterError(
                ErrorCode.ERR_ENVELOPE_INVALID,
                f"HTTP {status} does not go with a {envelope['status']} envelope "
                f"({envelope.get('error', {}).get('code', '')})".rstrip(" ()"),
            )
    if envelope["status"] == "success" and envelope["execution_id"] != invocation.execution_id:
        raise AdapterError(
            ErrorCode.ERR_ENVELOPE_INVALID, "the envelope names another execution_id"
        )
    reported = envelope["meta"]["image_digest"]
    if expected_digest and not digests_equal(reported, expected_digest):
        raise AdapterError(
            ErrorCode.ERR_IMAGE_DIGEST_MISMATCH,
            f"the processor runs {reported or 'an unreported digest'}, "
            f"expected {normalize_digest(expected_digest)}",
        )
    result: dict[str, Any] = envelope
    return result


def logs_tail(text: str, lines: int = LOGS_TAIL_LINES) -> list[str]:
    return [line for line in text.split("\n") if line.strip()][-lines:]  # NDJSON: \n-delimited
