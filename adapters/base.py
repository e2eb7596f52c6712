"""What every adapter is: one declared interface, one ``run``, one place errors become envelopes.

The shape is httpx's transports: ``Adapter`` owns the call (preflight, digest,
acquire, the HTTP exchange in ``adapters.http``, the envelope check) and each
adapter supplies only the parts that differ::

    acquire(spec, *, environment, world_root)  boot or find the processor: a ProcessorHandle
    digest_for(spec)                           what it must report as IMAGE_DIGEST
    errors()                                   its lower library's exceptions -> AdapterError
    close(keep=False)                          release what it started (keep: leave it running)

``ProcessorHandle`` declares what a check may observe of a processor; an
observation an adapter cannot make returns ``None`` ("not observable"), never
an empty value that means something else.

Exception tree (raised inside adapters, turned into error envelopes by ``Adapter.run``)::

    ContractError (contracts.errors)      a SPEC code and a message
    └── AdapterError                      an adapter-side code (SPEC section 4), a message, the log tail
        └── Unreachable                   the connection was refused: nothing was sent, safe to retry

    Lower libraries' exceptions never leave an adapter: httpx's are mapped in
    ``adapters.http.call``, the Docker SDK's and the image builder's in
    ``LocalAdapter.errors()``, the Modal SDK's in ``adapters.modal.lookup_web_url``.

Optional hooks: ``release(handle, broken=)`` after each call (the local pool discards a
broken container) and ``refusal(spec)`` (a processor the adapter cannot run at all).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

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
#: The write prefix a caller uses when it has no opinion (SPEC section 3).
DEFAULT_WRITE_PREFIX = "/artifacts/outputs/{execution_id}/"


class AdapterError(ContractError):
    """An adapter-side failure with the processor's last stderr lines, when there are any."""

    def __init__(self, code: ErrorCode | str, message: str, *, logs_tail: Sequence[str] = ()):
        super().__init__(code, message)
        self.logs_tail = list(logs_tail)


class Unreachable(AdapterError):
    """The connection was refused, so the payload never reached the processor: safe to retry."""


@dataclass(frozen=True)
class ImageConfig:
    """What an image says about how it runs (SPEC section 6)."""

    cmd: list[str]
    healthcheck: str  # the HEALTHCHECK test, joined with spaces ("" when there is none)


@dataclass(frozen=True)
class Launch:
    """How to start this processor again by hand: its image and its environment's names."""

    image: str
    environment_names: tuple[str, ...]


class ProcessorHandle(Protocol):
    """A processor an adapter can talk to, and what a check may observe of it.

    Observations return ``None`` when this adapter cannot make them (a check
    then skips, saying so); ``""`` means observed and empty.
    """

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

    def stderr(self) -> str | None:
        """Everything the processor wrote to stderr so far."""

    def stdout(self) -> str | None:
        """Everything the processor wrote to stdout so far."""

    def image_config(self) -> ImageConfig | None:
        """The image's CMD and HEALTHCHECK."""

    def exec(self, argv: Sequence[str]) -> int | None:
        """Run ``argv`` inside the processor's image; its exit code."""

    def docker_health(self, timeout_s: float) -> tuple[str, list[str]] | None:
        """Docker's own HEALTHCHECK verdict once past ``starting`` (waiting at most
        ``timeout_s``), with the output of its last probes."""

    def launch(self) -> Launch | None:
        """The image and environment names that start the same processor (for replays)."""

    def alive(self) -> bool: ...

    def close(self) -> None: ...


class Adapter(ABC):
    """One ``invoke`` (SPEC section 8) for every adapter, and the one ``run`` behind it.

    A call that fails preflight gets its error envelope without touching a
    processor; one that passes is carried by ``run``, which never raises for a
    run-time failure.
    """

    name: ClassVar[str] = ""
    #: Whether ``acquire`` can start a processor with an environment of the caller's
    #: choosing (a deployed endpoint's environment is its deployment's).
    sets_environment: ClassVar[bool] = True
    #: Processors this adapter started so far (a check that nothing started reads it).
    boots: int = 0

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

    def expected_pin(self, spec: ProcessorSpec, opts: Mapping[str, Any]) -> str | None:
        """The registry pin envelopes must report when this run is pinned (SPEC section 6),
        which can differ from the digest handed to the processor; ``None`` when unpinned."""
        return None

    def run(
        self, invocation: Invocation, opts: Mapping[str, Any], on_event: OnEvent | None = None
    ) -> dict[str, Any]:
        """Carry a checked call to the processor: the one place failures become envelopes."""
        from pytest_theory.adapters import http  # http imports this module

        digest = ""
        try:
            with self.errors():
                digest = self.digest_for(invocation.spec, opts)
                for attempt in (1, 2):
                    handle = self.acquire(
                        invocation.spec,
                        environment=invocation.container_environment(digest),
                        world_root=opts.get("world_root"),
                        opts=opts,
                    )
                    broken = True
                    try:
                        envelope = http.call(
                            handle,
                            invocation,
                            timeout_s=opts.get("timeout_s"),
                            expected_digest=(
                                opts.get("expected_digest")
                                or self.expected_pin(invocation.spec, opts)
                                or digest
                                or None
                            ),
                            on_event=on_event,
                        )
                        broken = False
                        return envelope
                    except Unreachable:
                        if attempt == 2:
                            raise
                        # A reused processor died since its last call and nothing was
                        # sent: once more, with a fresh one.
                    except AdapterError as exc:
                        broken = (
                            exc.code
                            in (
                                ErrorCode.ERR_TIMEOUT,
                                ErrorCode.ERR_ADAPTER_INVOCATION,
                            )
                            or not handle.alive()
                        )
                        raise
                    finally:
                        self.release(handle, broken=broken)
                raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
        except ContractError as exc:
            return invocation.error(exc, digest)

    # -- what each adapter supplies ----------------------------------------------------

    @abstractmethod
    def acquire(
        self,
        spec: ProcessorSpec,
        *,
        environment: Mapping[str, str] | None = None,
        world_root: str | Path | None = None,
        opts: Mapping[str, Any] | None = None,
    ) -> ProcessorHandle:
        """A ready processor for ``spec`` with ``environment`` (default: what this adapter
        passes, ``default_environment``) and its world at ``world_root``; raises
        ``AdapterError``. ``opts`` are the call's ``adapter_opts``."""

    @abstractmethod
    def digest_for(self, spec: ProcessorSpec, opts: Mapping[str, Any] | None = None) -> str:
        """The digest a processor of ``spec`` runs as (its IMAGE_DIGEST), found without booting it."""

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Map this adapter's lower library's exceptions to ``AdapterError`` (none by default)."""
        yield

    def refusal(self, spec: ProcessorSpec) -> str | None:
        """Why a processor of ``spec`` cannot run through this adapter at all, or ``None``."""
        return None

    def release(self, handle: ProcessorHandle, *, broken: bool) -> None:  # noqa: B027 (optional)
        """A call on ``handle`` is over; ``broken``: it hung or crashed, never hand it out again."""

    def close(self, keep: bool = False) -> None:  # noqa: B027 (optional)
        """Release whatever the adapter started (``keep``: leave it running, for debugging)."""

    # -- shared ------------------------------------------------------------------------

    def default_environment(
        self, spec: ProcessorSpec, secrets_present: Sequence[str] = ()
    ) -> dict[str, str]:
        """What this adapter passes a processor of ``spec``: IMAGE_DIGEST, declared secrets, CI."""
        return container_environment(self.digest_for(spec), present_secrets(spec, secrets_present))


def invoke_kwargs(
    spec: ProcessorSpec,
    *,
    execution_id: str,
    inputs: Mapping[str, Any],
    mode: str = "mock",
    write_prefix: str = DEFAULT_WRITE_PREFIX,
    adapter_opts: Mapping[str, Any] | None = None,
    secrets_present: Sequence[str] | None = None,
    stream: bool = False,
) -> dict[str, Any]:
    """The keyword set of SPEC section 8's ``invoke`` for ``spec``, built in this one place."""
    return {
        "processor_ref": str(spec.ref),
        "mode": mode,
        "inputs_json": dict(inputs),
        "write_prefix": write_prefix,
        "execution_id": execution_id,
        "registry_snapshot": spec.snapshot(),
        "adapter_opts": dict(adapter_opts or {}),
        "secrets_present": list(
            spec.secrets_declared if secrets_present is None else secrets_present
        ),
        "stream": stream,
    }


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
            code = envelope.get("error", {}).get("code", "")
            raise AdapterError(
                ErrorCode.ERR_ENVELOPE_INVALID,
                f"HTTP {status} does not go with a {envelope['status']} envelope"
                + (f" ({code})" if code else ""),
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
