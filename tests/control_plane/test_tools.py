"""docs_export, scaffold_processor and modalctl."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import modal
import modal.exception
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


# -- modalctl, at the SDK's edge ----------------------------------------------------------------


class Recorder:
    """Stand-ins for the Modal SDK calls modalctl makes, each checked against the real signature."""

    def __init__(self, existing: set[str]):
        self.existing = existing
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def record(self, real: Any, label: str, /, *args: Any, **kwargs: Any) -> None:
        bound = inspect.signature(real).bind(*args, **kwargs)
        self.calls.append((label, dict(bound.arguments)))

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        recorder = self
        real_secret_from_name, real_create = (
            modal.Secret.from_name,
            type(modal.Secret.objects).create,
        )
        real_deploy, real_function_from_name = modal.App.deploy, modal.Function.from_name

        class Secret:
            def __init__(self, name: str):
                self.name = name

            def hydrate(self) -> Secret:
                if self.name not in recorder.existing:
                    raise modal.exception.NotFoundError(f"Secret {self.name} not found")
                return self

        def from_name(*args: Any, **kwargs: Any) -> Secret:
            self.record(real_secret_from_name, "Secret.from_name", *args, **kwargs)
            return Secret(args[0])

        def create(*args: Any, **kwargs: Any) -> None:
            self.record(real_create, "Secret.objects.create", modal.Secret.objects, *args, **kwargs)
            self.existing.add(args[0])

        def deploy(app: Any, **kwargs: Any) -> Any:
            self.record(real_deploy, "App.deploy", app, **kwargs)
            return app

        class Function:
            def get_web_url(self) -> str:
                return "https://acme--serve.modal.run"

        def function_from_name(*args: Any, **kwargs: Any) -> Function:
            self.record(real_function_from_name, "Function.from_name", *args, **kwargs)
            return Function()

        monkeypatch.setattr(modal.Secret, "from_name", from_name)
        monkeypatch.setattr(
            type(modal.Secret.objects), "create", lambda _self, *a, **k: create(*a, **k)
        )
        monkeypatch.setattr(modal.App, "deploy", deploy)
        monkeypatch.setattr(modal.Function, "from_name", function_from_name)
        monkeypatch.setattr(
            modal.client._Client, "from_env", lambda *a, **k: pytest.fail("reached Modal")
        )


def test_sync_secrets_creates_what_is_missing_and_never_prints_values(
    manage: Manage, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(existing={"OPENAI_BASE_URL"})
    recorder.install(monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    result = manage("modalctl", "sync-secrets", "--ref", "llm/litellm@1", "--env", "dev")
    assert result.code == 0
    assert result.stdout.splitlines() == ["OPENAI_API_KEY: created", "OPENAI_BASE_URL: present"]
    assert "sk-very-secret-value" not in result.stdout + result.stderr
    (created,) = [args for name, args in recorder.calls if name == "Secret.objects.create"]
    assert created["name"] == "OPENAI_API_KEY" and created["environment_name"] == "dev"
    assert created["env_dict"] == {"OPENAI_API_KEY": "sk-very-secret-value"}


def test_sync_secrets_fails_when_a_required_secret_exists_nowhere(
    manage: Manage, monkeypatch: pytest.MonkeyPatch
) -> None:
    Recorder(existing=set()).install(monkeypatch)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = manage("modalctl", "sync-secrets", "--ref", "llm/litellm@1", "--env", "dev")
    assert result.code == 1 and "OPENAI_API_KEY: missing" in result.stdout


def test_deploy_syncs_secrets_then_deploys_the_pinned_image(
    manage: Manage, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(existing={"OPENAI_API_KEY", "OPENAI_BASE_URL"})
    recorder.install(monkeypatch)
    result = manage("modalctl", "deploy", "--ref", "llm/litellm@1", "--env", "dev")
    assert result.code == 0, result.stderr
    (deploy,) = [args for name, args in recorder.calls if name == "App.deploy"]
    assert deploy["name"] == "theory-llm-litellm-v1-dev" and deploy["environment_name"] == "dev"
    assert deploy["self"].name == "theory-llm-litellm-v1-dev"
    assert "deployed theory-llm-litellm-v1-dev (pytest-theory/llm-litellm@sha256:" in result.stdout


def test_status_reports_the_endpoint(manage: Manage, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(existing=set())
    recorder.install(monkeypatch)
    result = manage("modalctl", "status", "--ref", "llm/litellm@1", "--env", "staging")
    assert result.code == 0 and "deployed at https://acme--serve.modal.run" in result.stdout
    (lookup,) = [args for name, args in recorder.calls if name == "Function.from_name"]
    assert lookup == {
        "app_name": "theory-llm-litellm-v1-staging",
        "name": "serve",
        "environment_name": "staging",
    }
