"""The inprocess adapter serves the processor's own ASGI app, hosted, without Docker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_theory.adapters import InprocessAdapter
from pytest_theory.registry import Registry, load_spec
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
