"""modalctl at the Modal SDK's edge: signature-checked stand-ins for the SDK calls, respx
for the deployed endpoint (the real processor app, in-process). Nothing reaches Modal:
creating a real client fails the test at once."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import modal
import modal.exception
import pytest
import respx

from pytest_theory.adapters import InprocessAdapter
from pytest_theory.registry import load_spec
from pytest_theory.registry.yamltext import replace_top_level_block
from tests.control_plane.conftest import Result
from tests.fakes import refuse_real_modal_client

Manage = Callable[..., Result]
REF = "acme/chat@1"
APP = "theory-acme-chat-v1-dev"
URL = "https://acme--serve.modal.run"
PIN = "ghcr.io/acme/models/acme-chat@sha256:" + "ab" * 32
OCI = "ghcr.io/acme/models/acme-chat@sha256:" + "cd" * 32


class Recorder:
    """Stand-ins for the Modal SDK calls modalctl makes, each checked against the real
    signature. ``hang`` makes every call wait (until the test ends); ``fail`` raises."""

    def __init__(
        self,
        existing: set[str] | None = None,
        deployed: bool = True,
        hang: bool = False,
        fail: Exception | None = None,
    ):
        self.existing = existing if existing is not None else set()
        self.deployed, self.hang, self.fail = deployed, hang, fail
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.release = threading.Event()

    def edge(self) -> None:
        """What every network call of the SDK does here: hang, fail, or nothing."""
        if self.hang:
            self.release.wait(60)
        if self.fail:
            raise self.fail

    def record(self, real: Any, label: str, /, *args: Any, **kwargs: Any) -> None:
        bound = inspect.signature(real).bind(*args, **kwargs)
        self.calls.append((label, dict(bound.arguments)))

    def named(self, label: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name == label]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        recorder = self
        real_secret_from_name = modal.Secret.from_name
        real_create = type(modal.Secret.objects).create
        real_deploy, real_function_from_name = modal.App.deploy, modal.Function.from_name
        real_from_registry, real_lookup = modal.Image.from_registry, modal.App.lookup

        class Secret:
            def __init__(self, name: str):
                self.name = name

            def hydrate(self) -> Secret:
                recorder.edge()
                if self.name not in recorder.existing:
                    raise modal.exception.NotFoundError(f"Secret {self.name} not found")
                return self

        def secret_from_name(*args: Any, **kwargs: Any) -> Secret:
            self.record(real_secret_from_name, "Secret.from_name", *args, **kwargs)
            return Secret(args[0])

        def create(*args: Any, **kwargs: Any) -> None:
            self.record(real_create, "Secret.objects.create", modal.Secret.objects, *args, **kwargs)
            self.edge()
            self.existing.add(args[0])

        def deploy(app: Any, **kwargs: Any) -> Any:
            self.record(real_deploy, "App.deploy", app, **kwargs)
            self.edge()
            self.deployed = True
            return app

        class Function:
            def get_web_url(self) -> str:
                inspect.signature(modal.Function.get_web_url).bind(self)
                recorder.edge()
                if not recorder.deployed:
                    raise modal.exception.NotFoundError(f"App {APP} not found")
                return URL

        def function_from_name(*args: Any, **kwargs: Any) -> Function:
            self.record(real_function_from_name, "Function.from_name", *args, **kwargs)
            return Function()

        def from_registry(*args: Any, **kwargs: Any) -> Any:
            self.record(real_from_registry, "Image.from_registry", *args, **kwargs)
            return real_from_registry(*args, **kwargs)  # lazy: builds the real Image object

        class App:
            def stop(self) -> None:
                recorder.edge()

        def lookup(*args: Any, **kwargs: Any) -> App:
            self.record(real_lookup, "App.lookup", *args, **kwargs)
            recorder.edge()
            if not recorder.deployed:
                raise modal.exception.NotFoundError(f"App {args[0]} not found")
            return App()

        monkeypatch.setattr(modal.Secret, "from_name", secret_from_name)
        monkeypatch.setattr(
            type(modal.Secret.objects), "create", lambda _self, *a, **k: create(*a, **k)
        )
        monkeypatch.setattr(modal.App, "deploy", deploy)
        monkeypatch.setattr(modal.App, "lookup", lookup)
        monkeypatch.setattr(modal.Function, "from_name", function_from_name)
        monkeypatch.setattr(modal.Image, "from_registry", from_registry)


@pytest.fixture(autouse=True)
def no_real_modal_client(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_real_modal_client(monkeypatch)


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Recorder]]:
    """``sdk(existing=…, deployed=…, hang=…, fail=…)``: the SDK's edge, installed."""
    made: list[Recorder] = []

    def install(**kwargs: Any) -> Recorder:
        recorder = Recorder(**kwargs)
        recorder.install(monkeypatch)
        made.append(recorder)
        return recorder

    yield install
    for recorder in made:
        recorder.release.set()  # let hung stand-ins end


@pytest.fixture
def acme(registry_root: Callable[..., Path]) -> Path:
    """llm/litellm@1 as acme/chat@1, pinned to a GHCR-style repository (what Modal pulls)."""

    def patch(text: str) -> str:
        text = text.replace("ref: llm/litellm@1", f"ref: {REF}", 1)
        image = {"platforms": {"amd64": PIN}, "default_platform": "amd64"}
        return replace_top_level_block(text, "image", image)

    return registry_root("llm_litellm", "acme_chat", patch) / "registry.yaml"


@pytest.fixture
def endpoint(tmp_path: Path, acme: Path) -> Callable[[str], Any]:
    """``endpoint(digest)``: the deployed endpoint, the real app in-process reporting ``digest``."""
    adapters: list[InprocessAdapter] = []
    routers: list[Any] = []

    def serve(digest: str) -> Any:
        adapter = InprocessAdapter(world_root=tmp_path / "modal-world", image_digest=digest)
        adapters.append(adapter)
        handle = adapter.acquire(load_spec(acme))

        def forward(request: httpx.Request) -> httpx.Response:
            answer = handle.client.request(
                request.method,
                request.url.path,
                content=request.content,
                headers={"content-type": request.headers.get("content-type", "")},
            )
            return httpx.Response(
                answer.status_code, headers=answer.headers, content=answer.content
            )

        router = respx.mock(base_url=URL, assert_all_called=False)
        router.route(host=httpx.URL(URL).host).mock(side_effect=forward)
        routers.append(router)
        return router.__enter__()

    yield serve
    for router in routers:
        router.__exit__(None, None, None)
    for adapter in adapters:
        adapter.close()


def modalctl(manage: Manage, action: str, *args: str, ref: str = REF) -> Result:
    return manage("modalctl", action, "--ref", ref, "--env", "dev", *args)


# -- sync-secrets -----------------------------------------------------------------------------


def test_sync_secrets_creates_what_is_missing_and_never_prints_values(
    manage: Manage, sdk: Callable[..., Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = sdk(existing={"OPENAI_BASE_URL"})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    result = modalctl(manage, "sync-secrets", ref="llm/litellm@1")
    assert result.code == 0
    assert result.stdout.splitlines() == ["OPENAI_API_KEY: created", "OPENAI_BASE_URL: present"]
    assert "sk-very-secret-value" not in result.stdout + result.stderr
    (created,) = recorder.named("Secret.objects.create")
    assert created["name"] == "OPENAI_API_KEY" and created["environment_name"] == "dev"
    assert created["env_dict"] == {"OPENAI_API_KEY": "sk-very-secret-value"}


def test_sync_secrets_fails_when_a_required_secret_exists_nowhere(
    manage: Manage, sdk: Callable[..., Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = modalctl(manage, "sync-secrets", ref="llm/litellm@1")
    assert result.code == 1 and "OPENAI_API_KEY: missing" in result.stdout


# -- deploy -------------------------------------------------------------------------------------


def test_deploy_oci_sends_the_digest_to_the_sdk(
    manage: Manage, sdk: Callable[..., Recorder], acme: Path
) -> None:
    recorder = sdk(existing={"OPENAI_API_KEY", "OPENAI_BASE_URL"}, deployed=False)
    result = modalctl(manage, "deploy", "--oci", OCI)
    assert result.code == 0, result.stderr
    (image,) = recorder.named("Image.from_registry")
    assert image["tag"] == OCI, "Modal pulls the image by the digest given"
    (deploy,) = recorder.named("App.deploy")
    assert deploy["name"] == APP and deploy["environment_name"] == "dev"
    assert deploy["self"].name == APP
    assert f"deployed {APP} ({OCI}) at {URL}" in result.stdout
    assert "the registry pins sha256:" + "ab" * 32 in result.stderr, "warns of the drift to come"


def test_deploy_without_oci_deploys_the_registry_pin(
    manage: Manage, sdk: Callable[..., Recorder], acme: Path
) -> None:
    recorder = sdk(existing={"OPENAI_API_KEY", "OPENAI_BASE_URL"})
    result = modalctl(manage, "deploy")
    assert result.code == 0, result.stderr
    assert [call["tag"] for call in recorder.named("Image.from_registry")] == [PIN]
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--oci", "ghcr.io/acme/models/acme-chat:latest"), "Modal deploys by digest only"),
        (("--oci", "ghcr.io/acme/x@sha256:" + "ab" * 31), "Modal deploys by digest only"),
        (("--oci", "localhost:5055/pytest-theory/x@sha256:" + "ab" * 32), "loopback registry"),
        (("--oci", "127.0.0.1:5055/x@sha256:" + "ab" * 32), "loopback registry"),
    ],
    ids=["tag", "short-digest", "localhost", "127.0.0.1"],
)
def test_deploy_refuses_what_modal_cannot_pull_by_digest(
    manage: Manage, sdk: Callable[..., Recorder], acme: Path, args: tuple[str, ...], message: str
) -> None:
    recorder = sdk(existing={"OPENAI_API_KEY"})
    result = modalctl(manage, "deploy", *args)
    assert result.code == 2 and message in result.stderr, result
    assert recorder.calls == [], "refused before any SDK call"


def test_the_committed_loopback_pin_is_refused_for_modal(
    manage: Manage, sdk: Callable[..., Recorder]
) -> None:
    recorder = sdk(existing={"OPENAI_API_KEY"})
    result = modalctl(manage, "deploy", ref="llm/litellm@1")
    assert result.code == 2 and "theory-images pin --repository" in result.stderr
    assert recorder.calls == []


# -- status ------------------------------------------------------------------------------------


def test_status_reports_the_digest_the_endpoint_serves(
    manage: Manage, sdk: Callable[..., Recorder], endpoint: Callable[[str], Any]
) -> None:
    recorder = sdk()
    router = endpoint("sha256:" + "ab" * 32)
    result = modalctl(manage, "status")
    assert result.code == 0, result
    assert f"deployed at {URL}; serving sha256:{'ab' * 32}" in result.stdout
    assert f"serves the pin {PIN}" in result.stdout
    (lookup,) = recorder.named("Function.from_name")
    assert lookup == {"app_name": APP, "name": "serve", "environment_name": "dev"}
    assert [call.request.url.path for call in router.calls] == ["/healthz", "/run"]


def test_status_reports_a_stale_deployment_as_drift(
    manage: Manage, sdk: Callable[..., Recorder], endpoint: Callable[[str], Any]
) -> None:
    sdk()
    endpoint("sha256:" + "cd" * 32)
    result = modalctl(manage, "status")
    assert result.code == 1
    assert "ERR_IMAGE_DIGEST_MISMATCH: the registry pins" in result.stdout


def test_status_of_nothing_deployed(
    manage: Manage, sdk: Callable[..., Recorder], acme: Path
) -> None:
    sdk(deployed=False)
    result = modalctl(manage, "status")
    assert result.code == 1 and f"{APP}: not deployed in dev" in result.stdout


def test_an_endpoint_that_does_not_answer_is_err_modal(
    manage: Manage, sdk: Callable[..., Recorder], acme: Path
) -> None:
    sdk()
    with respx.mock(base_url=URL) as router:
        router.get("/healthz").mock(side_effect=httpx.ConnectTimeout("no route"))
        result = modalctl(manage, "status")
    assert result.code == 3 and "ERR_MODAL: the endpoint" in result.stderr, result


# -- every SDK call bounded -------------------------------------------------------------------


@pytest.mark.parametrize("action", ["deploy", "status", "sync-secrets", "undeploy"])
def test_a_hung_sdk_edge_ends_in_err_modal_within_its_bound(
    manage: Manage, sdk: Callable[..., Recorder], acme: Path, action: str
) -> None:
    recorder = sdk(existing={"OPENAI_API_KEY", "OPENAI_BASE_URL"}, hang=True)
    result = modalctl(manage, action, "--timeout", "0.2")
    assert result.code == 3, result
    assert "ERR_MODAL: Modal" in result.stderr and "timed out after 0.2s" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert recorder.named("App.deploy") == [], "nothing is deployed past a dead edge"


@pytest.mark.parametrize("action", ["deploy", "status", "sync-secrets", "undeploy"])
def test_a_failing_sdk_edge_is_err_modal(
    manage: Manage, sdk: Callable[..., Recorder], acme: Path, action: str
) -> None:
    sdk(fail=modal.exception.AuthError("bad token"))
    result = modalctl(manage, action)
    assert result.code == 3 and "failed (AuthError)" in result.stderr, result
    assert "bad token" not in result.stderr, "the SDK's own text is not repeated"


def test_undeploy_stops_the_app(manage: Manage, sdk: Callable[..., Recorder], acme: Path) -> None:
    recorder = sdk()
    assert modalctl(manage, "undeploy").stdout == f"{APP}: stopped\n"
    (lookup,) = recorder.named("App.lookup")
    assert lookup == {"name": APP, "environment_name": "dev"}
