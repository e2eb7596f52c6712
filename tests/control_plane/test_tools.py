"""docs_export and scaffold_processor (modalctl: test_modalctl.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_theory.registry import load_spec
from tests.control_plane.conftest import Result

Manage = Callable[..., Result]


# -- docs_export ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_docs_export_writes_the_erd_the_storage_api_and_the_schemas(
    manage: Manage, tmp_path: Path
) -> None:
    result = manage("docs_export", "--out", str(tmp_path / "docs"), "--erd", "--api", "--schemas")
    assert result.code == 0
    erd = (tmp_path / "docs/erd.mmd").read_text()
    assert erd.startswith("erDiagram")
    from django.apps import apps

    ours = [c for c in apps.get_app_configs() if c.name.startswith("pytest_theory.django_project.")]
    for model in (m for config in ours for m in config.get_models()):  # every app, none listed
        assert f"    {model._meta.app_label}_{model.__name__} {{" in erd
    assert "    leases_Lease {" in erd
    assert 'runs_Execution }o--o| runs_Plan : "plan"' in erd
    assert 'runs_Plan }o--o| accounts_User : "owner"' in erd
    api = (tmp_path / "docs/storage_api.md").read_text()
    assert "```mermaid" in api and "### `put(" in api and "### `list(" in api
    # The diagram is drawn from the code: each store that exists and each adapter, nothing else.
    from pytest_theory.adapters import ADAPTERS

    diagram = api.split("```mermaid")[1].split("```")[0]
    for name in ("FilesystemArtifactStore", "MemoryArtifactStore", *ADAPTERS):
        assert name in diagram
    assert "S3" not in diagram
    schemas = json.loads((tmp_path / "docs/schemas.json").read_text())
    plan = schemas["models"]["runs.Plan"]
    assert plan["properties"]["budget_usd_micro"]["type"] == "integer"
    assert schemas["models"]["runs.Execution"]["properties"]["status"]["enum"][0] == "pending"
    assert schemas["models"]["accounts.User"]["properties"]["email"]["format"] == "email"
    assert "envelope" in schemas["contract"]


@pytest.mark.django_db
def test_docs_export_writes_everything_when_nothing_is_named(
    manage: Manage, tmp_path: Path
) -> None:
    assert manage("docs_export", "--out", str(tmp_path)).code == 0
    assert {p.name for p in tmp_path.iterdir()} == {"erd.mmd", "storage_api.md", "schemas.json"}


# -- scaffold_processor --------------------------------------------------------------------------


def test_scaffold_writes_a_valid_processor(manage: Manage, tmp_path: Path) -> None:
    result = manage("scaffold_processor", "--ref", "acme/echo@1", "--into", str(tmp_path))
    assert result.code == 0
    folder = tmp_path / "acme_echo"
    spec = load_spec(folder / "registry.yaml")
    assert str(spec.ref) == "acme/echo@1" and spec.secrets_required == ["ACME_ECHO_API_KEY"]
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == {
        "Dockerfile",
        "registry.yaml",
        "requirements.in",
        "requirements.lock",
        "app/__init__.py",
        "app/http.py",
        "app/handler.py",
    }
    again = manage("scaffold_processor", "--ref", "acme/echo@1", "--into", str(tmp_path))
    assert again.code == 2 and "already exists" in again.stderr
    assert manage("scaffold_processor", "--ref", "Acme/Echo").code == 2


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_a_scaffolded_processor_passes_the_whole_suite_untouched(
    manage: Manage, tmp_path: Path, pytester: pytest.Pytester
) -> None:
    root = tmp_path / "registry"
    assert manage("scaffold_processor", "--ref", "acme/echo@1", "--into", str(root)).code == 0
    run = pytester.runpytest_subprocess(
        "--theory-ref",
        "acme/echo@1",
        "--theory-registry",
        str(root),
        "--theory-fuzz-examples",
        "20",
        "-p",
        "no:cacheprovider",
    )
    assert run.ret == pytest.ExitCode.OK, run.stdout.str()[-3000:]
    assert "acme/echo@1-local: 18/18 rules passed" in run.stdout.str()
