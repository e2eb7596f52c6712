"""The Modal adapter, with Modal's cloud replaced only at its edges.

The SDK lookup is a stand-in that insists on the real SDK's signatures; HTTP is
respx, answering with the real processor app run in-process. Nothing here may
reach Modal: creating a real client fails the test at once.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import modal
import modal.exception
import pytest
import respx
from modal._utils.async_utils import synchronizer

from pytest_theory.adapters import InprocessAdapter, ModalAdapter, invoke_kwargs
from pytest_theory.adapters.modal import FUNCTION_NAME, app_name
from pytest_theory.adapters.modal_app import build_app
from pytest_theory.registry import load_spec
from tests.conftest import DIGEST
from tests.fakes import MODAL_URL, Lookup, refuse_real_modal_client

URL = MODAL_URL


@pytest.fixture(autouse=True)
def no_real_modal_client(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_real_modal_client(monkeypatch)


def _copy_with_image(tmp_path: Path, image: dict[str, Any]) -> Any:
    """llm/litellm@1 copied with ``image`` as its registry image block."""
    import shutil

    from pytest_theory.registry.yamltext import replace_top_level_block
    from tests.conftest import REPO

    folder = tmp_path / "llm_litellm"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "processors/llm_litellm", folder, ignore=ignore)
    registry_yaml = folder / "registry.yaml"
    registry_yaml.write_text(replace_top_level_block(registry_yaml.read_text(), "image", image))
    return load_spec(registry_yaml)


@pytest.fixture
def pinned_spec(tmp_path: Path) -> Any:
    """llm/litellm@1 with an amd64 pin (what Modal would run)."""
    pin = f"ghcr.io/o/r/llm-litellm@{DIGEST}"
    return _copy_with_image(tmp_path, {"platforms": {"amd64": pin}, "default_platform": "amd64"})


@contextmanager
def deployed(tmp_path: Path, spec: Any, served_digest: str) -> Iterator[respx.MockRouter]:
    """A deployed endpoint whose image runs as ``served_digest``, played by the real
    processor app running in-process behind respx."""
    inprocess = InprocessAdapter(world_root=tmp_path / "modal-world", image_digest=served_digest)
    handle = inprocess.acquire(spec)

    def forward(request: httpx.Request) -> httpx.Response:
        answer = handle.client.request(
            request.method,
            request.url.path,
            content=request.content,
            headers={"content-type": request.headers.get("content-type", "")},
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    try:
        with respx.mock(base_url=URL, assert_all_called=False) as router:
            router.route(host=httpx.URL(URL).host).mock(side_effect=forward)
            yield router
    finally:
        inprocess.close()


@pytest.fixture
def remote(tmp_path: Path, pinned_spec: Any) -> Iterator[respx.MockRouter]:
    """The deployed endpoint, running the pinned image."""
    with deployed(tmp_path, pinned_spec, DIGEST) as router:
        yield router


def invoke(adapter: ModalAdapter, spec: Any, **overrides: Any) -> dict[str, Any]:
    kwargs = invoke_kwargs(
        spec,
        execution_id="m-1",
        inputs={
            "schema": "v1",
            "params": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        },
        adapter_opts={"environment": "dev"},
        secrets_present=[],
    )
    kwargs.update(overrides)
    envelope: dict[str, Any] = adapter.invoke(**kwargs)
    return envelope


def test_success_goes_through_the_sdk_lookup_and_http(
    monkeypatch: pytest.MonkeyPatch, remote: Any, pinned_spec: Any
) -> None:
    lookup = Lookup()
    monkeypatch.setattr(modal.Function, "from_name", lookup)
    adapter = ModalAdapter()
    envelope = invoke(adapter, pinned_spec)
    assert envelope["status"] == "success", envelope
    assert envelope["meta"]["image_digest"] == DIGEST
    (call,) = lookup.calls
    assert call.args == (app_name(pinned_spec.ref, "dev"), FUNCTION_NAME)
    assert call.kwargs == {"environment_name": "dev"}
    assert invoke(adapter, pinned_spec, execution_id="m-2")["status"] == "success"
    assert len(lookup.calls) == 1, "the endpoint is looked up once per environment"
    paths = [c.request.url.path for c in remote.calls]
    assert paths.count("/run") == 2 and "/healthz" in paths
    adapter.close()


def test_streaming_and_processor_errors_come_back_unchanged(
    monkeypatch: pytest.MonkeyPatch, remote: Any, pinned_spec: Any
) -> None:
    monkeypatch.setattr(modal.Function, "from_name", Lookup())
    events: list[str] = []
    adapter = ModalAdapter()
    streamed = invoke(adapter, pinned_spec, stream=True, on_event=lambda e, d: events.append(e))
    assert streamed["status"] == "success" and "token" in events
    bad = invoke(adapter, pinned_spec, inputs_json={"schema": "v1", "params": {}})
    assert bad["error"]["code"] == "ERR_INPUTS"


def test_a_stale_deployment_is_digest_drift(
    monkeypatch: pytest.MonkeyPatch, remote: Any, pinned_spec: Any
) -> None:
    monkeypatch.setattr(modal.Function, "from_name", Lookup())
    envelope = invoke(
        ModalAdapter(),
        pinned_spec,
        adapter_opts={"environment": "dev", "expected_digest": "sha256:" + "9" * 64},
    )
    assert envelope["error"]["code"] == "ERR_IMAGE_DIGEST_MISMATCH", envelope


def test_a_deployment_serving_another_image_than_the_pin_is_drift_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pinned_spec: Any
) -> None:
    """No ``expected_digest`` given: the registry's amd64 pin is what must be served."""
    monkeypatch.setattr(modal.Function, "from_name", Lookup())
    stale = "sha256:" + "9" * 64
    with deployed(tmp_path, pinned_spec, stale) as router:
        envelope = invoke(ModalAdapter(), pinned_spec)
        assert "/run" in [c.request.url.path for c in router.calls], "the endpoint was asked"
    assert envelope["error"]["code"] == "ERR_IMAGE_DIGEST_MISMATCH", envelope
    assert envelope["error"]["message"] == f"the processor runs {stale}, expected {DIGEST}"
    assert envelope["meta"]["image_digest"] == DIGEST


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (Lookup(fail=modal.exception.NotFoundError("App not found")), "failed (NotFoundError)"),
        (Lookup(fail=modal.exception.AuthError("bad token")), "failed (AuthError)"),
        (Lookup(url=None), "has no web endpoint"),
        (Lookup(delay=3.0), "timed out after 0.5s"),
    ],
    ids=["not-found", "auth", "no-endpoint", "hangs"],
)
def test_lookup_failures_are_err_modal(
    monkeypatch: pytest.MonkeyPatch, pinned_spec: Any, lookup: Lookup, message: str
) -> None:
    monkeypatch.setattr(modal.Function, "from_name", lookup)
    envelope = invoke(ModalAdapter(lookup_timeout_s=0.5), pinned_spec)
    assert envelope["error"]["code"] == "ERR_MODAL", envelope
    # The hung lookup's message says the bound was applied (no timed assertion here: the
    # time it takes is the bench's to measure, not the test's).
    assert message in envelope["error"]["message"]


def test_an_http_timeout_is_err_timeout(monkeypatch: pytest.MonkeyPatch, pinned_spec: Any) -> None:
    monkeypatch.setattr(modal.Function, "from_name", Lookup())
    with respx.mock(base_url=URL) as router:
        router.get("/healthz").respond(json={"ok": True})
        router.post("/run").mock(side_effect=httpx.ReadTimeout("slow"))
        envelope = invoke(ModalAdapter(), pinned_spec)
    assert envelope["error"]["code"] == "ERR_TIMEOUT", envelope


def test_ci_safety_is_decided_before_any_lookup(
    monkeypatch: pytest.MonkeyPatch, pinned_spec: Any
) -> None:
    lookup = Lookup()
    monkeypatch.setattr(modal.Function, "from_name", lookup)
    monkeypatch.setenv("CI", "true")
    assert invoke(ModalAdapter(), pinned_spec, mode="real")["error"]["code"] == "ERR_CI_SAFETY"
    assert lookup.calls == []


def test_an_unpinned_processor_cannot_run_on_modal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lookup = Lookup()
    monkeypatch.setattr(modal.Function, "from_name", lookup)
    spec = _copy_with_image(tmp_path, {"platforms": {}, "default_platform": "amd64"})
    assert invoke(ModalAdapter(), spec)["error"]["code"] == "ERR_REGISTRY"
    assert lookup.calls == []


def test_the_modal_app_serves_the_pinned_image_with_the_real_sdk(
    monkeypatch: pytest.MonkeyPatch, pinned_spec: Any
) -> None:
    """The real SDK builds the app; what it is given on the way is recorded: the image is
    the registry's amd64 pin, unchanged, told its own digest, and it is the function's."""
    real_from_registry, real_env = modal.Image.from_registry, modal.Image.env
    given: dict[str, Any] = {}

    def from_registry(*args: Any, **kwargs: Any) -> Any:
        given["from_registry"] = inspect.signature(real_from_registry).bind(*args, **kwargs)
        given["base"] = real_from_registry(*args, **kwargs)
        return given["base"]

    def env(image: Any, *args: Any, **kwargs: Any) -> Any:
        given["env"] = inspect.signature(real_env).bind(image, *args, **kwargs)
        given["image"] = real_env(image, *args, **kwargs)
        return given["image"]

    monkeypatch.setattr(modal.Image, "from_registry", from_registry)
    monkeypatch.setattr(modal.Image, "env", env)
    deployment = build_app(pinned_spec, "dev")
    assert deployment.app.name == app_name(pinned_spec.ref, "dev")
    assert given["from_registry"].arguments == {"tag": pinned_spec.pins["amd64"]}
    assert given["env"].arguments["self"] is given["base"]
    assert given["env"].arguments["vars"] == {
        "IMAGE_DIGEST": DIGEST,
        "THEORY_LOG_STDIO": "1",
        "PYTHONPATH": "/srv",
    }
    assert isinstance(deployment.function, modal.Function)
    # The function's spec (what `modal shell` reads) holds the SDK's inner image object.
    assert deployment.function._spec_.image is synchronizer._translate_in(given["image"])


def test_a_hung_lookup_cannot_hold_up_interpreter_exit(
    monkeypatch: pytest.MonkeyPatch, pinned_spec: Any
) -> None:
    monkeypatch.setattr(modal.Function, "from_name", Lookup(delay=1.0))
    before = set(threading.enumerate())
    invoke(ModalAdapter(lookup_timeout_s=0.2), pinned_spec)
    (lookup,) = set(threading.enumerate()) - before
    assert lookup.daemon and lookup.name.startswith("modal-lookup")


def test_bounded_sdk_calls_map_every_failure_to_err_modal() -> None:
    from pytest_theory.adapters.base import AdapterError
    from pytest_theory.adapters.modal import bounded

    release = threading.Event()
    with pytest.raises(AdapterError) as hung:
        bounded(lambda: release.wait(30), timeout_s=0.1, what="deploy of x")
    release.set()
    assert (hung.value.code, hung.value.message) == (
        "ERR_MODAL",
        "Modal deploy of x timed out after 0.1s",
    )

    def refused() -> None:
        raise modal.exception.AuthError("token sk-secret rejected")

    with pytest.raises(AdapterError) as failed:
        bounded(refused, timeout_s=5, what="stop of x")
    assert failed.value.message == "Modal stop of x failed (AuthError)", "no SDK text, no secret"

    def missing() -> None:
        raise modal.exception.NotFoundError("no app")

    with pytest.raises(modal.exception.NotFoundError):
        bounded(
            missing, timeout_s=5, what="lookup of x", passthrough=(modal.exception.NotFoundError,)
        )
    assert bounded(lambda: 7, timeout_s=5, what="lookup of x") == 7
