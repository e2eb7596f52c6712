"""What a processor's handler receives and returns."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_theory.contracts.errors import ContractError, ErrorCode

#: ``emit(event, data)``: send a ``progress``/``log``/``token`` event to a streaming caller.
Emit = Callable[[str, dict[str, Any]], None]
#: ``log(event, level="info", **fields)``: one NDJSON line tagged with the run's ids.
Log = Callable[..., None]
#: ``read_artifact(world_path, cid)``: bytes of a file under ``/artifacts``, cid-checked.
ReadArtifact = Callable[[str, str | None], bytes]


class ProviderError(ContractError):
    """The upstream provider failed; becomes ``ERR_PROVIDER`` (502)."""

    def __init__(self, message: str = "the upstream provider failed"):
        super().__init__(ErrorCode.ERR_PROVIDER, message)


class RunCancelled(Exception):
    """Raised inside a handler that keeps going after its run timed out."""


@dataclass(frozen=True)
class Output:
    """One artifact: a path relative to ``P/outputs/`` (declared in registry.yaml) and its bytes."""

    relpath: str
    data: bytes


@dataclass(frozen=True)
class Result:
    outputs: list[Output]
    processor_info: str
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """Everything one run may use. Secrets come from here, never from ``os.environ``."""

    execution_id: str
    trace_id: str
    ref: str
    mode: str
    inputs: dict[str, Any]
    inputs_hash: str
    seed: int
    secrets: Mapping[str, str]
    emit: Emit
    log: Log
    read_artifact: ReadArtifact
    cancelled: threading.Event
    #: True on /run-stream: the handler may emit ``token`` events as they arrive.
    streaming: bool = False

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = self.inputs.get("params", {})
        return params

    @property
    def is_mock(self) -> bool:
        return self.mode == "mock"

    def check_cancelled(self) -> None:
        """Stop a long handler once its run has timed out."""
        if self.cancelled.is_set():
            raise RunCancelled()


#: A processor's handler: ``handle(ctx) -> Result``.
Handler = Callable[[RunContext], Result]
