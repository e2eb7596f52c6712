"""Valid and invalid examples of the report schemas, for tests/contracts/test_schemas.py."""

from __future__ import annotations

import copy
from typing import Any

from pytest_theory.report import attest
from pytest_theory.report.cells import CellKey, Check, make_cell
from tests.conftest import DIGEST

SHA = "sha256:" + "ef" * 32
CELL = make_cell(
    CellKey("llm/litellm@1", "local", "mock"),
    checks=[
        Check("test_contract.py::test_healthz_answers_ok", "healthz", "passed"),
        Check("test_contract.py::test_x[a]", "errors", "failed", "expected 400, got 500"),
        Check("test_contract.py::test_y", "image", "not-run", "needs the image itself"),
    ],
    rules={"healthz": "§2 GET /healthz answers 200."},
    image={"name": "pytest-theory/llm-litellm:v1-0123456789abcdef", "digest": DIGEST},
    inputs={
        "source_hash": "b3:" + "cd" * 32,
        "harness": {"name": "pytest-theory", "version": "0.1.0", "digest": SHA},
        "spec_md": {"path": "/work/shared/SPEC.md", "digest": SHA},
        "registry_yaml": {"path": "registry.yaml", "digest": SHA},
        "options": {"build": "auto", "fuzz_examples": 50, "property_examples": 20},
    },
    pytest_version="9.1.1",
)
STATEMENT = attest.statement(CELL)


def changed(instance: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(instance)
    *path, last = dotted.split(".")
    node: Any = out
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return out


VALID: list[tuple[str, Any]] = [
    ("report_cell", CELL),
    ("report_cell", changed(CELL, "reused_from", {"report": "r/cells/x.json", "finished": "t"})),
    ("intoto_test_result", STATEMENT),
]
INVALID: list[tuple[str, Any, str]] = [
    ("report_cell", changed(CELL, "image.digest", "sha256:short"), "digest"),
    ("report_cell", changed(CELL, "result", "OK"), "result"),
    (
        "report_cell",
        changed(CELL, "checks.1", {"id": "t", "rule": "r", "outcome": "failed"}),
        "message",
    ),
    (
        "report_cell",
        changed(CELL, "checks.2", {"id": "t", "rule": "r", "outcome": "not-run"}),
        "reason",
    ),
    (
        "intoto_test_result",
        changed(STATEMENT, "_type", "https://in-toto.io/Statement/v0.1"),
        "_type",
    ),
    ("intoto_test_result", changed(STATEMENT, "predicate.result", "OK"), "result"),
    ("intoto_test_result", changed(STATEMENT, "subject.0.digest", {"sha512": "ab"}), "sha256"),
    (
        "intoto_test_result",
        changed(STATEMENT, "predicate.configuration.0", {"name": "x"}),
        "configuration",
    ),
]
