"""The inprocess adapter serves the processor's own ASGI app, hosted, without Docker."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.adapters import InprocessAdapter
from pytest_theory.adapters.inprocess import InprocessHandle
from pytest_theory.registry import ProcessorSpec, Registry, load_spec
from tests.conftest import FIXTURES, payload
from tests.plugin.conftest import make_broken


@pytest.fixture
def inprocess(tmp_path: Path) -> Iterator[InprocessAdapter]:
    adapter = InprocessAdapter(world_root=tmp_path / "world")
    yield adapter
    adapter.close()


def test_it_serves_app_http_not_the_handler_alone(
    inprocess: InprocessAdapter, tmp_path: Path
) -> None:
    """broken/bare_422's app/http.py answers bad bodies with FastAPI's 422: so does the lane."""
    ref = make_broken(tmp_path / "procs", "bare_422")
    spec = Registry.discover([tmp_path / "procs"]).get_spec(ref)
    handle = inprocess.acquire(spec)
    answer = handle.client.post("/run", json={"execution_id": 5})
    assert answer.status_code == 422, answer.text


def test_the_app_gets_the_adapters_environment_world_and_stderr(
    inprocess: InprocessAdapter, tmp_path: Path
) -> None:
    spec = Registry.discover().get_spec("llm/litellm@1")
    digest = "sha256:" + "ab" * 32
    handle = inprocess.acquire(spec, environment={"IMAGE_DIGEST": digest, "CI": "true"})
    refused = handle.client.post("/run", json=payload(mode="real")).json()
    assert refused["error"]["code"] == "ERR_CI_SAFETY" and refused["meta"]["image_digest"] == digest
    ran = handle.client.post("/run", json=payload(execution_id="e-9")).json()
    assert (tmp_path / "world" / ran["index_path"].lstrip("/")).is_file()
    assert '"execution_id": "e-9"' in (handle.stderr() or "")
    assert handle.stdout() is None and handle.exec(["true"]) is None


def test_an_app_not_built_on_the_runtime_is_refused_naming_the_local_lane(
    inprocess: InprocessAdapter,
) -> None:
    chaos = load_spec(FIXTURES / "faults/fault_chaos/registry.yaml")
    reason = inprocess.refusal(chaos)
    assert reason is not None and "--theory-adapter local" in reason and "/artifacts" in reason
    assert inprocess.refusal(Registry.discover().get_spec("llm/litellm@1")) is None


def test_the_session_refuses_it_once_at_start(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--theory-ref", "fault/chaos@1", "--theory-registry", str(FIXTURES / "faults"),
        "--theory-adapter", "inprocess", "-p", "no:cacheprovider",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.str().count("--theory-adapter local") == 1, result.stderr.str()


class Recording(InprocessAdapter):
    """The in-process adapter, keeping every processor it handed to a call."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.handles: list[InprocessHandle] = []

    def acquire(self, spec: ProcessorSpec, **kwargs: Any) -> InprocessHandle:
        handle = super().acquire(spec, **kwargs)
        self.handles.append(handle)
        return handle


def hosted_environments(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """The environments apps are hosted with from now on (what a container would be given)."""
    from pytest_theory.processors import runtime

    given: list[dict[str, str]] = []
    real_hosted = runtime.hosted

    def hosted(environ: Mapping[str, str], *args: Any) -> Any:
        given.append(dict(environ))
        return real_hosted(environ, *args)

    monkeypatch.setattr(runtime, "hosted", hosted)
    return given


@pytest.mark.parametrize("ci", ["true", "false", None], ids=["ci-true", "ci-false", "no-ci"])
def test_the_app_is_given_ci_when_it_is_set_and_nothing_else_of_this_environment(
    call: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    """SPEC section 8: adapters pass IMAGE_DIGEST, the declared secrets present, and CI."""
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("UNRELATED_HOST_SETTING", "x")
    given = hosted_environments(monkeypatch)
    adapter = InprocessAdapter(world_root=tmp_path / "world")
    try:
        assert call(adapter)["status"] == "success"
    finally:
        adapter.close()
    expected = {"IMAGE_DIGEST": adapter.digest_for(Registry.discover().get_spec("llm/litellm@1"))}
    if ci is not None:
        expected["CI"] = ci
    assert given == [expected]


def test_the_processor_given_ci_true_keeps_its_own_ci_rule(
    call: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real-mode payload that reaches the processor directly is refused by it (SPEC 1)."""
    monkeypatch.setenv("CI", "true")
    adapter = Recording(world_root=tmp_path / "world")
    try:
        assert call(adapter)["status"] == "success"
        (handle,) = adapter.handles
        refused = handle.client.post("/run", json=payload(execution_id="e-2", mode="real"))
    finally:
        adapter.close()
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "ERR_CI_SAFETY")


def test_the_adapter_itself_refuses_real_under_ci_before_any_processor(
    call: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC 1: under CI=true, real is refused by the adapters before any container starts;
    here the processor is never reached, so its own refusal cannot stand in."""
    monkeypatch.setenv("CI", "true")
    adapter = Recording(world_root=tmp_path / "world")
    try:
        envelope = call(adapter, mode="real")
    finally:
        adapter.close()
    assert envelope["error"]["code"] == "ERR_CI_SAFETY", envelope
    assert adapter.handles == [] and adapter.boots == 0
    assert not (tmp_path / "world").exists()
