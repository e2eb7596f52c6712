"""Bad input, every kind we could think of, through /run, /run-stream and every adapter.

Each bad request must get its one canonical error envelope with the right code
and status (on a stream: HTTP 200 and a single ``done`` carrying it), and must
leave the world exactly as it was: nothing written, nothing half-written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import modal
import pytest

from pytest_theory.adapters import InprocessAdapter, LocalAdapter, ModalAdapter, invoke_kwargs
from pytest_theory.contracts import problems
from pytest_theory.driver import parse_sse
from tests.conftest import RELIABILITY
from tests.fakes import Lookup, refuse_real_modal_client
from tests.reliability.conftest import REFS, REGISTRY, Target, boot
from tests.reliability.corpus import GOOD_PREFIX, Bad, corpus, field_cases, good_payload

LLM = REGISTRY.get_spec("llm/litellm@1")


@pytest.fixture(scope="module", params=["inprocess", "local"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "local":
        request.getfixturevalue("docker_client")
    return str(request.param)


@pytest.fixture(scope="module", params=REFS)
def target(
    request: pytest.FixtureRequest, kind: str, tmp_path_factory: pytest.TempPathFactory
) -> Target:
    adapter = request.getfixturevalue(f"{kind}_adapter")
    return boot(adapter, request.param, tmp_path_factory.mktemp(f"{kind}-world"))


def judge(bad: Bad, status: int, envelope: Any, digest: str, expected_status: int) -> str:
    """What is wrong with the answer to ``bad``; empty when it is right."""
    if status != expected_status:
        return f"HTTP {status}, expected {expected_status}"
    wrong = problems("envelope_error", envelope)
    if wrong:
        return f"not a canonical error envelope: {wrong[:2]}"
    if envelope["error"]["code"] != bad.code:
        return f"{envelope['error']['code']}, expected {bad.code}: {envelope['error']['message']}"
    if envelope["meta"]["image_digest"] != digest:
        return f"meta.image_digest is {envelope['meta']['image_digest']!r}, expected {digest!r}"
    return ""


def answer(response: httpx.Response, endpoint: str) -> tuple[int, Any]:
    """(status, envelope) of a /run answer, or of a stream's single ``done`` event."""
    if endpoint == "/run":
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text[:200]
    events = parse_sse(response.text)
    done = [e for e in events if e.event == "done"]
    if len(done) != 1 or events[-1].event != "done":
        return response.status_code, f"events {[e.event for e in events]}"
    return response.status_code, json.loads(done[0].data)


@pytest.mark.parametrize("endpoint", ["/run", "/run-stream"])
def test_every_bad_request_gets_its_canonical_error_and_writes_nothing(
    target: Target, endpoint: str
) -> None:
    good = good_payload(str(target.spec.ref), target.inputs)
    cases = corpus(target.inputs)
    wrong = []
    for bad in cases:
        headers = {"content-type": bad.content_type} if bad.content_type else {}
        response = target.handle.client.post(
            endpoint, content=bad.body(good), headers=headers, timeout=60
        )
        status, envelope = answer(response, endpoint)
        expected_status = bad.http_status if endpoint == "/run" else 200
        problem = judge(bad, status, envelope, target.handle.image_digest, expected_status)
        if problem:
            wrong.append(f"{bad.name}: {problem}")
    RELIABILITY["bad requests sent"] += len(cases)
    assert not wrong, "\n".join(wrong)
    assert target.files() == [], "a refused request wrote to the world"
    assert target.handle.alive()


# -- the same spoiled fields through every adapter's invoke() ---------------------------


@pytest.fixture(params=["inprocess", "local", "modal"])
def adapter(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """An adapter and the ``adapter_opts`` that point it at a fresh world.

    ``modal`` reaches a real local container: only the SDK lookup is a stand-in,
    answering with that container's URL.
    """
    world = tmp_path / "world"
    if request.param == "inprocess":
        inprocess = InprocessAdapter()
        yield inprocess, {"world_root": str(world)}
        inprocess.close()
        return
    request.getfixturevalue("docker_client")
    local = LocalAdapter()
    if request.param == "local":
        yield local, {"world_root": str(world)}
        local.close()
        return
    refuse_real_modal_client(monkeypatch)
    handle = local.acquire(LLM, world_root=world)
    monkeypatch.setattr(modal.Function, "from_name", Lookup(url=handle.base_url))
    remote = ModalAdapter(lookup_timeout_s=5, health_timeout_s=30)
    yield remote, {"expected_digest": handle.image_digest, "world_root": str(world)}
    remote.close()
    local.close()


@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
def test_spoiled_fields_through_every_adapter(
    adapter: tuple[Any, dict[str, Any]], stream: bool
) -> None:
    through, opts = adapter
    spec = LLM
    inputs = {
        "schema": "v1",
        "params": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    }
    base = invoke_kwargs(
        spec,
        execution_id="rel-1",
        inputs=inputs,
        write_prefix=GOOD_PREFIX,
        adapter_opts=opts,
        secrets_present=[],
        stream=stream,
    )
    cases = field_cases(inputs)
    wrong = []
    for bad in cases:
        envelope = through.invoke(**{**base, **bad.fields})
        code = envelope.get("error", {}).get("code")
        if code != bad.code or problems("envelope_error", envelope):
            wrong.append(f"{bad.name}: {code}, expected {bad.code}: {envelope}")
    RELIABILITY["bad requests sent"] += len(cases)
    assert not wrong, "\n".join(wrong)
    world = Path(opts["world_root"])
    assert not [p for p in world.rglob("*") if p.is_file()], "a refused run wrote to the world"
    assert through.invoke(**base)["status"] == "success", "the good payload still runs"
