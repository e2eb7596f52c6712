"""Admission by attestation: ``conformance.attested@1`` and ``manage.py store_attestation``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.adapters.local import LocalAdapter
from pytest_theory.contracts import is_valid
from pytest_theory.django_project.apps.runs.models import Execution, Plan
from pytest_theory.registry import Registry
from pytest_theory.report import attest
from pytest_theory.report.cells import CellKey, Check, make_cell
from pytest_theory.report.sources import harness, known_digest, registry_yaml, spec_md
from pytest_theory.rules import RULES
from tests.control_plane.conftest import LLM_INPUTS, Result

pytestmark = pytest.mark.django_db
Manage = Callable[..., Result]
REF = "llm/litellm@1"


def digest() -> str:
    found = known_digest(Registry.discover().get_spec(REF), "inprocess")
    assert found
    return found


def statement_file(tmp_path: Path, outcome: str) -> Path:
    """An attestation of llm/litellm@1's image whose one check has ``outcome``."""
    spec = Registry.discover().get_spec(REF)
    cell = make_cell(
        CellKey(REF, "local", "mock"),
        checks=[Check("test_contract.py::test_healthz_answers_ok", "healthz", outcome, "why")],
        rules=RULES,
        image={"name": "pytest-theory/llm-litellm", "digest": digest()},
        inputs={
            "source_hash": None,
            "harness": harness(),
            "spec_md": spec_md(),
            "registry_yaml": registry_yaml(spec),
            "options": {"build": "auto", "fuzz_examples": 5, "property_examples": 5},
        },
        pytest_version=pytest.__version__,
    )
    path = tmp_path / f"{outcome}.intoto.json"
    path.write_text(json.dumps(attest.statement(cell)))
    return path


def run(manage: Manage, adapter: str = "local") -> Result:
    # llm/litellm@1 is priced (budget.available@1): a run needs a plan that can pay for it.
    Plan.objects.get_or_create(key="team", defaults={"budget_usd_micro": 1_000_000})
    return manage(
        "run_processor",
        "--ref",
        REF,
        "--adapter",
        adapter,
        "--inputs-json",
        LLM_INPUTS,
        "--plan",
        "team",
        "--json",
    )


@pytest.fixture
def policy_on(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.THEORY_REQUIRE_ATTESTATION = True

    def no_container(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a container was asked for")

    monkeypatch.setattr(LocalAdapter, "run", no_container)
    monkeypatch.setattr(LocalAdapter, "acquire", no_container)


def assert_refused(result: Result, why: str) -> None:
    assert result.code == 1, result.stderr
    envelope = json.loads(result.stdout)
    assert is_valid("envelope_error", envelope)
    assert envelope["error"]["code"] == "ERR_PREDICATE"
    assert (
        f"admission predicate conformance.attested@1 failed: {digest()} {why}"
        in (envelope["error"]["message"])
    )
    assert Execution.objects.get(pk=envelope["execution_id"]).status == "refused"


@pytest.mark.usefixtures("policy_on", "world")
def test_an_unattested_image_is_refused_before_any_container_starts(manage: Manage) -> None:
    assert_refused(run(manage), "has no PASSED conformance attestation")


@pytest.mark.usefixtures("policy_on")
def test_a_failed_attestation_is_refused(manage: Manage, world: Path, tmp_path: Path) -> None:
    stored = manage("store_attestation", str(statement_file(tmp_path, "failed")))
    assert stored.code == 0, stored.stderr
    assert_refused(run(manage), "has a FAILED conformance attestation")


@pytest.mark.usefixtures("policy_on")
def test_a_passed_attestation_admits_the_image(manage: Manage, world: Path, tmp_path: Path) -> None:
    stored = manage("store_attestation", str(statement_file(tmp_path, "passed")))
    assert stored.code == 0, stored.stderr
    hexdigest = digest().removeprefix("sha256:")
    assert f"/artifacts/attestations/sha256/{hexdigest}/" in stored.stdout
    result = run(manage, adapter="inprocess")  # the same image's code, served in this process
    assert result.code == 0, result.stdout + result.stderr
    execution = Execution.objects.get(pk=json.loads(result.stdout)["execution_id"])
    admitted = execution.predicates["admission"][0]  # first: before the budget is looked at
    assert admitted["id"] == "conformance.attested@1" and admitted["ok"]


@pytest.mark.usefixtures("world")
def test_without_the_policy_nothing_is_asked(manage: Manage) -> None:
    result = run(manage, adapter="inprocess")
    assert result.code == 0, result.stdout + result.stderr


@pytest.mark.usefixtures("world")
def test_store_attestation_refuses_what_is_not_a_statement(manage: Manage, tmp_path: Path) -> None:
    bad = tmp_path / "bad.intoto.json"
    bad.write_text(json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": []}))
    result = manage("store_attestation", str(bad))
    assert result.code == 2
    assert "not an in-toto test-result statement" in result.stderr
