"""The runtime every processor image carries (no Django, no pytest).

A processor is a handler ``handle(ctx: RunContext) -> Result`` plus one line in
``app/http.py``::

    app = create_app(handle, registry_path=REGISTRY)

The runtime does the rest of the contract: validation, envelopes, statuses,
confinement to the write prefix, atomic outputs, index and receipts, NDJSON
logs with redaction, timeouts and the CI-safety refusal.
"""

from pytest_theory.processors.runtime.api import (
    Emit,
    Handler,
    Output,
    ProviderError,
    Result,
    RunCancelled,
    RunContext,
)
from pytest_theory.processors.runtime.app import create_app, hosted

__all__ = [
    "Emit",
    "Handler",
    "Output",
    "ProviderError",
    "Result",
    "RunCancelled",
    "RunContext",
    "create_app",
    "hosted",
]
