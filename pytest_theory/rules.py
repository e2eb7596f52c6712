"""The rules of SPEC.md the contract suite checks, and the marker that ties a check to its rule.

Every rule cites a section of SPEC.md, which ships in the package as
``pytest_theory/contracts/SPEC.md`` (``SPEC_PATH``). A rule may have several
checks (its cases); a processor that breaks one rule fails that rule's checks
and no other's. Reports count rules per processor.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_theory import contracts

F = TypeVar("F", bound=Callable[..., Any])
#: The contract the rules come from, as installed with the package.
SPEC_PATH = Path(contracts.__file__).resolve().parent / "SPEC.md"

#: rule id -> what SPEC.md says (quoted or summarised), in report order.
RULES: dict[str, str] = {
    "registry": "§7 The registry file itself validates against a JSON Schema in contracts/.",
    "image": "§6 ARG BASE_IMAGE, uvicorn CMD, HEALTHCHECK on /healthz; no Django: its code imports "
    "none, and `import django` fails inside the image.",
    "healthz": '§2 GET /healthz answers 200 {"ok": true}.',
    "openapi": "§2 GET /openapi.json is an OpenAPI 3 document describing the three endpoints.",
    "success-envelope": "§4 Success (HTTP 200): one envelope carrying meta.image_digest (from "
    "IMAGE_DIGEST) and meta.env_fingerprint.",
    "outputs": "§3 P/outputs/** holds the artifacts; each entry's cid is BLAKE3 of the bytes, with "
    "their size and the declared mime; every output is declared in registry.yaml.",
    "index": '§3 P/outputs.json: {"outputs": [...]}, entries sorted by path, bytes exactly '
    'json.dumps(obj, sort_keys=True, separators=(",", ":")) in UTF-8.',
    "receipts": "§3 P/receipt.json and /artifacts/execution/<id>/determinism.json, with their fields; "
    "receipts are never listed as outputs.",
    "determinism": "§3 In mock mode the same inputs give byte-identical outputs (same cids) whatever "
    "the execution id, time or machine.",
    "confinement": "§3 A run writes under P (and its determinism receipt), nothing else anywhere; "
    "under P only outputs/**, outputs.json and receipt.json; it leaves no half-written file.",
    "errors": "§4 Every failure is a canonical error envelope with SPEC's code and HTTP status, "
    "carrying meta.image_digest and meta.env_fingerprint; never a framework page; fuzzed payloads "
    "never get a 5xx.",
    "stream": "§2 /run-stream: progress/log/token events with JSON data, then exactly one `done` "
    "whose data is the envelope /run would return; errors end in `done` too.",
    "logs": "§5 Stdout stays empty; every stderr line is a JSON object with ts, level, event, "
    "service; run lines carry execution_id and trace_id; http.run.start/settle/error are logged.",
    "secrets": "§5 Secret values are redacted everywhere: logs, outputs, receipts, envelopes.",
    "ci-safety": "§1 With CI=true, `real` is refused with ERR_CI_SAFETY by the adapters before any "
    "container starts, and by the processor itself.",
    "digest-drift": "§4/§8 Adapters check digest drift: sha256:x and repo@sha256:x normalise to the "
    "same digest; a mismatch is ERR_IMAGE_DIGEST_MISMATCH.",
    "concurrency": "Concurrent runs with separate prefixes all succeed, each writing its own outputs.",
    "properties": "§2 Every inputs value the registry schema accepts gets an envelope, never a 5xx; "
    "successes are internally consistent.",
}


def rule(rule_id: str) -> Callable[[F], F]:
    """Mark a check as one case of ``rule_id``."""
    if rule_id not in RULES:
        raise KeyError(f"unknown rule {rule_id!r}")
    marker: Callable[[F], F] = pytest.mark.theory_rule(rule_id)
    return marker


def rule_text(rule_id: str) -> str:
    """The rule as a failure report shows it: its SPEC.md text and where SPEC.md is."""
    return f"{rule_id}: {RULES[rule_id]}\nSPEC.md: {SPEC_PATH}"


def markdown_table() -> str:
    """The README's rules table, written from ``RULES`` (``python -m pytest_theory.rules``)."""
    rows = [f"| {rule_id} | {text} |" for rule_id, text in RULES.items()]
    return "\n".join(["| rule | what SPEC.md says |", "|---|---|", *rows])


def rule_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("theory_rule")
    return str(marker.args[0]) if marker else None


if __name__ == "__main__":
    print(markdown_table())
