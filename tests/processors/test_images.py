"""Each processor image, started by hand and driven over HTTP, keeps the contract.

Started as a user would: ``docker run -v DIR:/artifacts -e IMAGE_DIGEST=...``.
Real mode runs through the providers' SDKs against local stand-ins of their APIs.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_theory.adapters import LocalAdapter, invoke_kwargs
from pytest_theory.adapters.containers import ProcessorContainer
from pytest_theory.adapters.http import wait_healthy
from pytest_theory.contracts import canonical_json, cid_of_bytes, is_valid
from pytest_theory.images import ResolvedImage, build_image
from pytest_theory.registry import ProcessorSpec, Registry
from tests.conftest import REPO, payload
from tests.fakes import FILE_BYTES, bridge_gateway, openai_compatible, replicate_compatible, serving
from tests.processors.conftest import sse_events
from tests.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leaks")]

REGISTRY = Registry.discover()
REFS = ["llm/litellm@1", "replicate/generic@1"]
INPUTS = {
    "llm/litellm@1": {
        "schema": "v1",
        "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
    },
    "replicate/generic@1": {
        "schema": "v1",
        "params": {"model": "acme/painter", "input": {"prompt": "a cat"}},
    },
}
SECRET = {"llm/litellm@1": "OPENAI_API_KEY", "replicate/generic@1": "REPLICATE_API_TOKEN"}
CANARY = "canary-secret-3b9e1f77"


class Running:
    """A processor container started by hand, with its world folder."""

    def __init__(
        self,
        client: Any,
        spec: ProcessorSpec,
        image: ResolvedImage,
        world: Path,
        env: dict[str, str],
    ):
        self.spec, self.image, self.world = spec, image, world
        self.container = ProcessorContainer(client, image.reference, ref=str(spec.ref))
        self.container.with_envs(IMAGE_DIGEST=image.digest, **env).with_world(world)
        self.container.with_user(f"{os.getuid()}:{os.getgid()}").start()
        wait_healthy(_Handle(self.container), 60)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return self.container.client.post(path, timeout=30, **kwargs)

    def body(self, **overrides: Any) -> dict[str, Any]:
        return payload(
            **{"ref": str(self.spec.ref), "inputs": INPUTS[str(self.spec.ref)], **overrides}
        )

    def stop(self) -> None:
        self.container.stop()


class _Handle:
    def __init__(self, container: ProcessorContainer):
        self.client, self.container = container.client, container

    def alive(self) -> bool:
        return self.container.alive()

    def stderr(self) -> str:
        return self.container.logs(stdout=False)


@pytest.fixture(scope="session")
def images(docker_client: Any) -> dict[str, ResolvedImage]:
    return {ref: build_image(REGISTRY[ref], docker_client) for ref in REFS}


@pytest.fixture(params=REFS)
def running(request: Any, docker_client: Any, images: Any, tmp_path: Path) -> Iterator[Running]:
    ref = request.param
    proc = Running(docker_client, REGISTRY[ref], images[ref], tmp_path, {})
    yield proc
    proc.stop()


def test_every_rule_over_http(running: Running) -> None:
    assert running.container.client.get("/healthz").json() == {"ok": True}
    envelope = running.post("/run", running.body()).json()
    assert is_valid("envelope_success", envelope), envelope
    assert envelope["meta"]["image_digest"] == running.image.digest
    for entry in envelope["outputs"]:
        data = (running.world / entry["path"].removeprefix("/artifacts/")).read_bytes()
        assert cid_of_bytes(data) == entry["cid"] and len(data) == entry["size_bytes"]
    index = running.world / envelope["index_path"].removeprefix("/artifacts/")
    assert index.read_bytes() == canonical_json({"outputs": envelope["outputs"]})
    receipt = json.loads((index.parent / "receipt.json").read_bytes())
    determinism = json.loads((running.world / "execution/e-1/determinism.json").read_bytes())
    assert is_valid("receipt", receipt) and is_valid("determinism", determinism)
    assert receipt["output_cids"] == sorted(o["cid"] for o in envelope["outputs"])
    again = running.post("/run", running.body(execution_id="e-2")).json()
    assert [o["cid"] for o in again["outputs"]] == [o["cid"] for o in envelope["outputs"]]
    (done,) = [
        e
        for e in sse_events(running.post("/run-stream", running.body(execution_id="e-3")).text)
        if e.event == "done"
    ]
    streamed = json.loads(done.data)
    assert [o["cid"] for o in streamed["outputs"]] == [o["cid"] for o in envelope["outputs"]]


@pytest.mark.parametrize(
    ("request_kwargs", "code", "status"),
    [
        (
            {"content": b"not json", "headers": {"content-type": "application/json"}},
            "ERR_PAYLOAD",
            400,
        ),
        ({"content": b"{}", "headers": {"content-type": "text/plain"}}, "ERR_PAYLOAD", 415),
        (
            {"content": b" " * (3 * 1024 * 1024), "headers": {"content-type": "application/json"}},
            "ERR_PAYLOAD",
            413,
        ),
        ({"change": {"mode": "smoke"}}, "ERR_MODE", 400),
        ({"change": {"write_prefix": "/artifacts/../{execution_id}/"}}, "ERR_WRITE_PREFIX", 400),
        ({"change": {"inputs": {"schema": "v1", "params": {}}}}, "ERR_INPUTS", 400),
        ({"change": {"mode": "real"}}, "ERR_MISSING_SECRET", 500),
    ],
    ids=["not-json", "content-type", "too-large", "mode", "prefix", "inputs", "missing-secret"],
)
def test_errors_over_http(
    running: Running, request_kwargs: dict[str, Any], code: str, status: int
) -> None:
    if "change" in request_kwargs:
        response = running.post("/run", running.body(**request_kwargs["change"]))
    else:
        response = running.post("/run", **request_kwargs)
    envelope = response.json()
    assert (response.status_code, envelope["error"]["code"]) == (status, code), envelope
    assert envelope["meta"]["image_digest"] == running.image.digest
    assert not list(running.world.rglob("*.json"))


def test_stdout_stays_empty_and_stderr_is_ndjson(running: Running) -> None:
    running.post("/run", running.body())
    running.post("/run", content=b"{", headers={"content-type": "application/json"})
    assert running.container.logs(stdout=True) == ""
    lines = running.container.logs(stdout=False).splitlines()
    records = [json.loads(line) for line in lines]
    assert all(is_valid("log_line", r) for r in records)
    events = {r["event"] for r in records}
    assert {"http.run.start", "http.run.settle", "http.run.error", "log.uvicorn.error"} <= events


def test_django_cannot_be_imported_in_the_image(running: Running) -> None:
    assert running.container.container is not None
    result = running.container.container.exec_run(["python", "-c", "import django"])
    assert result.exit_code != 0 and b"No module named 'django'" in result.output


def test_no_file_under_processors_imports_django() -> None:
    offenders = []
    for path in (REPO / "processors").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            offenders += [f"{path}:{node.lineno}" for n in names if n.split(".")[0] == "django"]
    assert offenders == []


def test_image_hygiene(images: dict[str, ResolvedImage], docker_client: Any) -> None:
    for ref, image in images.items():
        config = docker_client.images.get(image.reference).attrs["Config"]
        assert config["Cmd"] == ["uvicorn", "app.http:app", "--host", "0.0.0.0", "--port", "8000"]
        assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
        lines = REGISTRY[ref].dockerfile.read_text().splitlines()
        first = next(line for line in lines if line.strip() and not line.startswith("#"))
        assert first == "ARG BASE_IMAGE=python:3.11-slim"


def test_docker_healthcheck_turns_healthy(docker_client: Any, images: Any, tmp_path: Path) -> None:
    proc = Running(docker_client, REGISTRY["llm/litellm@1"], images["llm/litellm@1"], tmp_path, {})
    try:
        wait_for(
            lambda: proc.container.health_status() == "healthy",
            timeout_s=40,
            what=lambda: f"Docker's health status is {proc.container.health_status()}",
        )
    finally:
        proc.stop()


@pytest.mark.parametrize("ref", REFS)
def test_a_canary_secret_appears_nowhere(
    docker_client: Any, images: Any, tmp_path: Path, ref: str
) -> None:
    proc = Running(
        docker_client, REGISTRY[ref], images[ref], tmp_path, {SECRET[ref]: CANARY, "CI": "true"}
    )
    try:
        seen = [
            proc.post("/run", proc.body()).text,
            proc.post("/run", proc.body(mode="real", execution_id="e-2")).text,
            proc.post("/run", proc.body(mode="mock", inputs={"nope": 1}, execution_id="e-3")).text,
            proc.post("/run-stream", proc.body(execution_id="e-4")).text,
            proc.container.logs(stdout=False),
            proc.container.logs(stdout=True),
        ]
        seen += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    finally:
        proc.stop()
    assert json.loads(seen[1])["error"]["code"] == "ERR_CI_SAFETY"
    assert all(CANARY not in text for text in seen)
    assert "secrets=" + SECRET[ref] in seen[0]  # present by name only


# -- real mode, through the SDKs, against local stand-ins of the providers ----------------


@pytest.fixture
def real_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("CI", raising=False)

    def set_env(**values: str) -> list[str]:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return list(values)

    return set_env


def _invoke(
    adapter: LocalAdapter, ref: str, world: Path, secrets: list[str], **kwargs: Any
) -> dict[str, Any]:
    call = invoke_kwargs(
        REGISTRY[ref],
        execution_id="real-1",
        inputs=INPUTS[ref],
        mode="real",
        adapter_opts={"world_root": str(world)},
        secrets_present=secrets,
    )
    envelope: dict[str, Any] = adapter.invoke(**{**call, **kwargs})
    return envelope


def test_real_litellm_against_an_openai_compatible_server(
    docker_client: Any, images: Any, real_env: Any, tmp_path: Path
) -> None:
    fake = openai_compatible()
    adapter = LocalAdapter(docker_client=docker_client)
    with serving(fake) as port:
        secrets = real_env(
            OPENAI_API_KEY="sk-test-local",
            OPENAI_BASE_URL=f"http://{bridge_gateway(docker_client)}:{port}/v1",
        )
        try:
            envelope = _invoke(adapter, "llm/litellm@1", tmp_path, secrets)
            tokens: list[str] = []
            streamed = _invoke(
                adapter,
                "llm/litellm@1",
                tmp_path / "s",
                secrets,
                stream=True,
                on_event=lambda e, d: tokens.append(d["text"]) if e == "token" else None,
            )
        finally:
            adapter.close()
    assert envelope["status"] == "success", envelope
    text = (tmp_path / "artifacts/outputs/real-1/outputs/text/response.txt").read_text()
    assert text == "Hello from the fake server: hello"
    metadata = json.loads((tmp_path / "artifacts/outputs/real-1/outputs/metadata.json").read_text())
    assert metadata["mode"] == "real" and metadata["usage"]["total_tokens"] == 10
    assert streamed["status"] == "success" and "".join(tokens) == text
    assert [r["auth"] for r in fake.state.requests] == ["Bearer sk-test-local"] * 2
    assert fake.state.requests[1]["body"]["stream"] is True


def test_real_litellm_with_its_provider_down_is_err_provider(
    docker_client: Any, images: Any, real_env: Any, tmp_path: Path
) -> None:
    from tests.fakes import free_port

    secrets = real_env(
        OPENAI_API_KEY="sk-test-local",
        OPENAI_BASE_URL=f"http://{bridge_gateway(docker_client)}:{free_port()}/v1",
    )
    adapter = LocalAdapter(docker_client=docker_client)
    try:
        envelope = _invoke(adapter, "llm/litellm@1", tmp_path, secrets)
    finally:
        adapter.close()
    assert envelope["error"]["code"] == "ERR_PROVIDER", envelope
    assert "sk-test-local" not in json.dumps(envelope)


def test_real_replicate_through_the_sdk(
    docker_client: Any, images: Any, real_env: Any, tmp_path: Path
) -> None:
    fake = replicate_compatible()
    adapter = LocalAdapter(docker_client=docker_client)
    with serving(fake) as port:
        secrets = real_env(
            REPLICATE_API_TOKEN="r8-test-local",
            REPLICATE_BASE_URL=f"http://{bridge_gateway(docker_client)}:{port}",
        )
        try:
            envelope = _invoke(adapter, "replicate/generic@1", tmp_path, secrets)
        finally:
            adapter.close()
    assert envelope["status"] == "success", envelope
    out = tmp_path / "artifacts/outputs/real-1/outputs"
    assert (out / "files/output-0").read_bytes() == FILE_BYTES
    prediction = json.loads((out / "prediction.json").read_text())
    assert prediction["output"] == ["files/output-0"] and prediction["input"] == {"prompt": "a cat"}
    (request,) = fake.state.requests
    assert request["auth"] == "Bearer r8-test-local" and request["body"]["input"] == {
        "prompt": "a cat"
    }


def test_ci_true_in_the_container_refuses_real_without_a_provider_call(
    docker_client: Any, images: Any, tmp_path: Path
) -> None:
    fake = openai_compatible()
    with serving(fake) as port:
        env = {
            "CI": "true",
            "OPENAI_API_KEY": "sk-x-123",
            "OPENAI_BASE_URL": f"http://{bridge_gateway(docker_client)}:{port}/v1",
        }
        proc = Running(
            docker_client, REGISTRY["llm/litellm@1"], images["llm/litellm@1"], tmp_path, env
        )
        try:
            response = proc.post("/run", proc.body(mode="real"))
        finally:
            proc.stop()
    assert (response.status_code, response.json()["error"]["code"]) == (403, "ERR_CI_SAFETY")
    assert fake.state.requests == []
