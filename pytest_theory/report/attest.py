"""in-toto attestations of a cell: a Statement v1 with a test-result v0.1 predicate, unsigned.

The subject is the processor's image by its sha256 digest; the configuration
names SPEC.md, the processor's registry.yaml and the harness, each by digest.
``cosign attest --type https://in-toto.io/attestation/test-result/v0.1`` or
``gh attestation`` can sign it; ``statements_for`` reads them back for admission.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_theory.contracts.schemas import problems

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"
SUFFIX = ".intoto.json"


class AttestationError(ValueError):
    """Not a test-result statement this project can use."""


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def _descriptor(name: str, file: dict[str, Any], **extra: Any) -> dict[str, Any]:
    path = Path(file["path"])
    descriptor: dict[str, Any] = {
        "name": name,
        "uri": path.as_uri() if path.is_absolute() else path.name,
    }
    if file["digest"]:
        descriptor["digest"] = {"sha256": _hex(file["digest"])}
    descriptor.update(extra)
    return descriptor


def statement(cell: dict[str, Any]) -> dict[str, Any]:
    """The statement for ``cell``; its image digest must be known."""
    if not cell["image"]["digest"]:
        raise AttestationError(f"{cell['ref']} ({cell['adapter']}): no image digest to attest")
    harness = cell["harness"]
    by_outcome: dict[str, list[str]] = {"passed": [], "failed": [], "not-run": []}
    for check in cell["checks"]:
        by_outcome[check["outcome"]].append(check["id"])
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": cell["image"]["name"], "digest": {"sha256": _hex(cell["image"]["digest"])}}
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "result": cell["result"],
            "configuration": [
                _descriptor("SPEC.md", cell["spec_md"]),
                _descriptor(
                    "registry.yaml", cell["registry_yaml"], annotations={"ref": cell["ref"]}
                ),
                {
                    "name": harness["name"],
                    "uri": f"pkg:pypi/{harness['name']}@{harness['version']}",
                    "digest": {"sha256": _hex(harness["digest"])},
                    "annotations": {
                        "adapter": cell["adapter"],
                        "mode": cell["mode"],
                        "options": cell["options"],
                        "reused_from": cell["reused_from"],
                    },
                },
            ],
            "passedTests": by_outcome["passed"],
            "warnedTests": by_outcome["not-run"],
            "failedTests": by_outcome["failed"],
        },
    }


def check(statement_: Any) -> dict[str, Any]:
    """``statement_`` when it is a test-result statement; else an ``AttestationError``."""
    found = problems("intoto_test_result", statement_)
    if found:
        raise AttestationError(f"not an in-toto test-result statement: {found[0]}")
    assert isinstance(statement_, dict)
    return statement_


def subject_digests(statement_: dict[str, Any]) -> set[str]:
    return {"sha256:" + s["digest"]["sha256"] for s in statement_["subject"]}


def write(report_dir: Path, slug: str, cell: dict[str, Any]) -> Path:
    path = report_dir / "attestations" / f"{slug}{SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(check(statement(cell)), indent=2, sort_keys=True) + "\n", "utf-8")
    return path


def verdict(statements: Iterable[dict[str, Any]], digest: str) -> tuple[bool, str]:
    """Admission by attestation: ``digest`` needs a PASSED statement, and no FAILED one.

    A FAILED statement about the same image outweighs any PASSED one: the digest
    names the same bytes, so the failure stands until the image changes.
    """
    about = [s for s in statements if digest in subject_digests(s)]
    results = [s["predicate"]["result"] for s in about]
    if "FAILED" in results:
        return False, f"{digest} has a FAILED conformance attestation"
    if "PASSED" not in results:
        seen = f" (only {', '.join(sorted(set(results)))})" if results else ""
        return False, f"{digest} has no PASSED conformance attestation{seen}"
    return True, f"{digest} has a PASSED conformance attestation"
