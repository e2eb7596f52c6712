"""Error codes of the processor contract, their HTTP statuses and the error envelope.

Exception tree (everything a contract helper raises)::

    ValueError
    └── ContractError            code + stable message (+ HTTP status)
        ├── WorldPathError       a world path or write prefix is refused
        └── SchemaViolation      an instance fails one of the contract's JSON Schemas

Processors turn a ``ContractError`` into an error envelope with ``error_envelope``;
adapters build their own envelopes with the adapter-side codes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    # Processor side (SPEC section 4).
    ERR_PAYLOAD = "ERR_PAYLOAD"
    ERR_INPUTS = "ERR_INPUTS"
    ERR_WRITE_PREFIX = "ERR_WRITE_PREFIX"
    ERR_MODE = "ERR_MODE"
    ERR_CI_SAFETY = "ERR_CI_SAFETY"
    ERR_MISSING_SECRET = "ERR_MISSING_SECRET"
    ERR_PROVIDER = "ERR_PROVIDER"
    ERR_TIMEOUT = "ERR_TIMEOUT"
    ERR_INTERNAL = "ERR_INTERNAL"
    # Adapter side: returned by adapters, never by containers.
    ERR_DOCKER = "ERR_DOCKER"
    ERR_IMAGE_UNAVAILABLE = "ERR_IMAGE_UNAVAILABLE"
    ERR_HEALTH = "ERR_HEALTH"
    ERR_ADAPTER_INVOCATION = "ERR_ADAPTER_INVOCATION"
    ERR_ENVELOPE_INVALID = "ERR_ENVELOPE_INVALID"
    ERR_IMAGE_DIGEST_MISMATCH = "ERR_IMAGE_DIGEST_MISMATCH"
    ERR_REGISTRY = "ERR_REGISTRY"
    ERR_MODAL = "ERR_MODAL"
    # Control plane: refusals before any processor runs (SPEC is silent; see docs/decisions.md).
    ERR_BUDGET = "ERR_BUDGET"
    ERR_PREDICATE = "ERR_PREDICATE"


#: HTTP status a processor answers with for each of its codes.
PROCESSOR_STATUS: dict[ErrorCode, int] = {
    ErrorCode.ERR_PAYLOAD: 400,
    ErrorCode.ERR_INPUTS: 400,
    ErrorCode.ERR_WRITE_PREFIX: 400,
    ErrorCode.ERR_MODE: 400,
    ErrorCode.ERR_CI_SAFETY: 403,
    ErrorCode.ERR_MISSING_SECRET: 500,
    ErrorCode.ERR_PROVIDER: 502,
    ErrorCode.ERR_TIMEOUT: 504,
    ErrorCode.ERR_INTERNAL: 500,
}

#: ERR_PAYLOAD is the only code with more than one status.
PAYLOAD_STATUSES = frozenset({400, 413, 415})

#: Codes an adapter may return on its own. ERR_TIMEOUT and ERR_CI_SAFETY are
#: shared: an adapter also returns them when it gives up waiting or refuses first.
ADAPTER_CODES: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.ERR_DOCKER,
        ErrorCode.ERR_IMAGE_UNAVAILABLE,
        ErrorCode.ERR_HEALTH,
        ErrorCode.ERR_ADAPTER_INVOCATION,
        ErrorCode.ERR_ENVELOPE_INVALID,
        ErrorCode.ERR_IMAGE_DIGEST_MISMATCH,
        ErrorCode.ERR_TIMEOUT,
        ErrorCode.ERR_CI_SAFETY,
        ErrorCode.ERR_REGISTRY,
        ErrorCode.ERR_MODAL,
    }
)

#: Codes only the control plane returns: it refused before (or judged after) the run.
CONTROL_PLANE_CODES: frozenset[ErrorCode] = frozenset(
    {ErrorCode.ERR_BUDGET, ErrorCode.ERR_PREDICATE}
)

#: Adapter failures worth retrying: the processor was never reached or the
#: connection dropped. Everything else is an answer and retrying changes nothing.
TRANSIENT_ADAPTER_CODES: frozenset[ErrorCode] = frozenset(
    {ErrorCode.ERR_DOCKER, ErrorCode.ERR_HEALTH, ErrorCode.ERR_ADAPTER_INVOCATION}
)


def status_for(code: ErrorCode | str) -> int:
    """The HTTP status a processor answers with for ``code``."""
    return PROCESSOR_STATUS[ErrorCode(code)]


def is_valid_status(code: ErrorCode | str, status: int) -> bool:
    """True when ``status`` is an allowed HTTP status for the processor-side ``code``."""
    if ErrorCode(code) is ErrorCode.ERR_PAYLOAD:
        return status in PAYLOAD_STATUSES
    return PROCESSOR_STATUS.get(ErrorCode(code)) == status


class ContractError(ValueError):
    """A refusal with a canonical code and a stable message that is safe to show."""

    def __init__(self, code: ErrorCode | str, message: str, *, status: int | None = None):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.status = status if status is not None else PROCESSOR_STATUS.get(self.code, 500)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value}, {self.message!r})"


def error_envelope(
    code: ErrorCode | str,
    message: str,
    *,
    execution_id: str = "",
    image_digest: str = "",
    env_fingerprint: str = "",
    **meta: Any,
) -> dict[str, Any]:
    """The canonical error envelope of SPEC section 4."""
    return {
        "status": "error",
        "execution_id": execution_id,
        "error": {"code": ErrorCode(code).value, "message": message},
        "meta": {"image_digest": image_digest, "env_fingerprint": env_fingerprint, **meta},
    }
