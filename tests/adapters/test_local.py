"""The local adapter against real containers: success, reuse, and every run-time failure."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.adapters import InprocessAdapter, LocalAdapter
from pytest_theory.adapters.containers import ProcessorContainer, owner_label, reap_orphans
from pytest_theory.contracts import is_valid
from pytest_theory.images import build_image, write_pin
from pytest_theory.registry import Registry, load_spec
from pytest_theory.registry.yamltext import without_pins
from tests.adapters.conftest import chaos
from tests.conftest import REPO, our_containers, payload

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leaks")]


@pytest.fixture
def local(docker_client: Any) -> Any:
    adapter = LocalAdapter(docker_client=docker_client)
    yield adapter
    adapter.close()


def test_local_and_inprocess_agree_but_for_timing(
    local: LocalAdapter, call: Any, tmp_path: Path
) -> None:
    inprocess = InprocessAdapter()
    try:
        by_local = call(local, adapter_opts={"world_root": str(tmp_path / "a")})
        by_inprocess = call(inprocess, adapter_opts={"world_root": str(tmp_path / "b")})
    finally:
        inprocess.close()
    assert by_local["status"] == "success", by_local
    for envelope in (by_local, by_inprocess):
        envelope["meta"].pop("duration_ms")
    assert by_local == by_inprocess
    for root in ("a", "b"):
        index = tmp_path / root / "artifacts/outputs/e-1/outputs.json"
        assert json.loads(index.read_bytes())["outputs"] == by_local["outputs"]


def test_streaming_delivers_events_then_the_run_envelope(local: LocalAdapter, call: Any) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    streamed = call(local, stream=True, on_event=lambda event, data: events.append((event, data)))
    ran = call(local)
    assert [e for e, _ in events].count("token") >= 2
    assert {e for e, _ in events} <= {"progress", "log", "token"}
    for envelope in (streamed, ran):
        envelope["meta"].pop("duration_ms")
    assert streamed == ran


def test_twenty_concurrent_invokes_share_one_container(
    local: LocalAdapter, call: Any, docker_client: Any
) -> None:
    before = our_containers(docker_client)
    with ThreadPoolExecutor(20) as pool:
        envelopes = list(pool.map(lambda i: call(local, execution_id=f"c-{i}"), range(20)))
    assert all(e["status"] == "success" for e in envelopes), envelopes
    assert len({e["index_path"] for e in envelopes}) == 20
    assert len({tuple(o["cid"] for o in e["outputs"]) for e in envelopes}) == 1
    assert len(our_containers(docker_client) - before) == 1


def test_a_container_is_reused_until_closed(
    local: LocalAdapter, call: Any, docker_client: Any
) -> None:
    call(local, execution_id="r-1")
    first = our_containers(docker_client)
    call(local, execution_id="r-2")
    assert our_containers(docker_client) == first
    local.close()
    assert not (our_containers(docker_client) & first)


@pytest.mark.fault
def test_close_sweeps_a_container_whose_removal_was_missed_and_only_its_own(
    docker_client: Any, call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removal the engine refused mid-start, or a create still in flight when an interrupt
    removed the container by name: close() finds it by the adapter's own label. Another
    adapter's container stays up."""
    mine, other = (
        LocalAdapter(docker_client=docker_client),
        LocalAdapter(docker_client=docker_client),
    )
    try:
        before = our_containers(docker_client)
        call(mine, execution_id="s-1")
        call(other, execution_id="s-2")
        started = our_containers(docker_client) - before
        assert len(started) == 2
        with monkeypatch.context() as patched:
            patched.setattr(ProcessorContainer, "stop", lambda self, **_: None)  # fault: missed
            mine.close()
        left = our_containers(docker_client) - before
        (theirs,) = other._pool.values()
        assert left == {theirs.container.name}
    finally:
        mine.close()
        other.close()


@pytest.mark.fault
@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
def test_a_pooled_container_that_died_is_replaced(
    local: LocalAdapter, call: Any, tmp_path: Path, stream: bool
) -> None:
    # A short bound, so a call hanging on the dead container's connection fails as ERR_TIMEOUT.
    opts = {"world_root": str(tmp_path / "world"), "timeout_s": 20}
    assert call(local, execution_id="d-1", stream=stream, adapter_opts=opts)["status"] == "success"
    (dead,) = local._pool.values()
    assert dead.container.container is not None
    dead.container.container.kill()
    envelope = call(local, execution_id="d-2", stream=stream, adapter_opts=opts)
    assert envelope["status"] == "success", envelope
    (fresh,) = local._pool.values()
    assert fresh is not dead and fresh.alive() and not dead.alive()


def test_without_reuse_each_call_cleans_up(
    local: LocalAdapter, call: Any, docker_client: Any, tmp_path: Path
) -> None:
    before = our_containers(docker_client)
    envelope = call(local, adapter_opts={"world_root": str(tmp_path), "reuse": False})
    assert envelope["status"] == "success"
    assert our_containers(docker_client) == before


@pytest.mark.fault
def test_never_healthy_is_err_health_with_the_log_tail(
    local: LocalAdapter, call: Any, tmp_path: Path
) -> None:
    # Long enough for a loaded machine to start the server, so it has answered 503 at least
    # once: the point is the last answer and the log tail, not how short the bound can be.
    envelope = call(
        local,
        "fault/unhealthy@1",
        adapter_opts={"world_root": str(tmp_path), "health_timeout_s": 10},
    )
    assert envelope["error"]["code"] == "ERR_HEALTH", envelope
    assert "not healthy within 10s (HTTP 503)" in envelope["error"]["message"]
    assert any("warming.up.forever" in line for line in envelope["meta"]["logs_tail"])
    assert is_valid("envelope_error", envelope)


@pytest.mark.fault
@pytest.mark.parametrize(
    ("behave", "stream", "code"),
    [
        ("crash", False, "ERR_ADAPTER_INVOCATION"),
        ("crash-mid-stream", True, "ERR_ADAPTER_INVOCATION"),
        ("garbage", False, "ERR_ADAPTER_INVOCATION"),
        ("offschema", False, "ERR_ENVELOPE_INVALID"),
        ("wrong-status", False, "ERR_ENVELOPE_INVALID"),
        ("no-done", True, "ERR_ENVELOPE_INVALID"),
    ],
)
def test_broken_answers_become_adapter_errors(
    local: LocalAdapter, call: Any, behave: str, stream: bool, code: str
) -> None:
    envelope = call(local, "fault/chaos@1", inputs_json=chaos(behave), stream=stream)
    assert envelope["error"]["code"] == code, envelope
    assert is_valid("envelope_error", envelope)
    assert envelope["execution_id"] == "e-1"
    if behave.startswith("crash"):
        assert "the processor exited" in envelope["error"]["message"]
        assert any("chaos.behave" in line for line in envelope["meta"]["logs_tail"])
        assert call(local, "fault/chaos@1", inputs_json=chaos("ok"))["status"] == "success"


@pytest.mark.fault
def test_a_hung_run_times_out_and_its_container_is_discarded(
    local: LocalAdapter, call: Any, docker_client: Any, tmp_path: Path
) -> None:
    before = our_containers(docker_client)
    # The processor hangs for 600 s: an answer at all, and ERR_TIMEOUT, is the deadline held.
    envelope = call(
        local,
        "fault/chaos@1",
        inputs_json=chaos("hang"),
        adapter_opts={"world_root": str(tmp_path), "timeout_s": 1.5},
    )
    assert envelope["error"]["code"] == "ERR_TIMEOUT", envelope
    assert our_containers(docker_client) == before


@pytest.mark.fault
def test_digest_drift_is_reported(local: LocalAdapter, call: Any, tmp_path: Path) -> None:
    wrong = "registry.example/x@sha256:" + "f" * 64
    envelope = call(local, adapter_opts={"world_root": str(tmp_path), "expected_digest": wrong})
    assert envelope["error"]["code"] == "ERR_IMAGE_DIGEST_MISMATCH", envelope
    assert "sha256:" + "f" * 64 in envelope["error"]["message"]
    assert envelope["meta"]["image_digest"] in envelope["error"]["message"]


def test_ci_safety_refuses_real_before_any_container_starts(
    call: Any, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    adapter = LocalAdapter(docker_client=docker_client)
    adapter.resolve = None  # type: ignore[assignment]  # would fail loudly if reached
    before = our_containers(docker_client)
    envelope = call(adapter, mode="real")
    assert envelope["error"]["code"] == "ERR_CI_SAFETY"
    assert our_containers(docker_client) == before


def test_the_container_is_given_ci_and_keeps_its_own_ci_rule(
    local: LocalAdapter, call: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPEC section 8: CI is passed in when set, so the processor refuses real itself too."""
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("UNRELATED_HOST_SETTING", "x")
    ran = call(local, adapter_opts={"world_root": str(tmp_path)})
    assert ran["status"] == "success", ran
    (handle,) = local._pool.values()
    assert handle.container.env == {"IMAGE_DIGEST": handle.image_digest, "CI": "true"}
    assert handle.exec(["sh", "-c", 'test "$CI" = true']) == 0, "Docker gave the process CI"
    refused = handle.client.post("/run", json=payload(execution_id="e-2", mode="real"))
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "ERR_CI_SAFETY")


@pytest.mark.fault
def test_docker_unavailable_is_err_docker(call: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    envelope = call(LocalAdapter())
    assert envelope["error"]["code"] == "ERR_DOCKER", envelope


def test_unpinned_and_unbuildable_images_are_unavailable(
    local: LocalAdapter, call: Any, tmp_path: Path
) -> None:
    unpinned = _copy_processor(tmp_path / "u", "llm_litellm")
    registry_yaml = unpinned / "registry.yaml"
    registry_yaml.write_text(without_pins(registry_yaml.read_text()))
    envelope = call(
        local,
        registry_snapshot=load_spec(registry_yaml).snapshot(),
        adapter_opts={"world_root": str(tmp_path), "build": "never"},
    )
    assert envelope["error"]["code"] == "ERR_IMAGE_UNAVAILABLE"
    assert "no pinned image" in envelope["error"]["message"]
    broken = _copy_processor(tmp_path, "llm_litellm")
    (broken / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo 'no luck' && exit 7\n"
    )
    envelope = call(local, registry_snapshot=load_spec(broken / "registry.yaml").snapshot())
    assert envelope["error"]["code"] == "ERR_IMAGE_UNAVAILABLE", envelope
    assert any("no luck" in line for line in envelope["meta"]["logs_tail"])


def test_a_pinned_image_runs_without_building(
    local: LocalAdapter, call: Any, docker_client: Any, tmp_path: Path
) -> None:
    folder = _copy_processor(tmp_path, "llm_litellm")
    spec = load_spec(folder / "registry.yaml")
    pinned = write_pin(spec, build_image(spec, docker_client))
    envelope = call(
        local,
        registry_snapshot=pinned.snapshot(),
        adapter_opts={"world_root": str(tmp_path / "w"), "build": "never"},
    )
    assert envelope["status"] == "success", envelope
    assert envelope["meta"]["image_digest"] == pinned.pinned_image().rsplit("@", 1)[1]
    missing = pinned.data["image"]["platforms"]["amd64"].rsplit("@", 1)[0] + "@sha256:" + "0" * 64
    (folder / "registry.yaml").write_text(
        (folder / "registry.yaml")
        .read_text()
        .replace(pinned.data["image"]["platforms"]["amd64"], missing)
    )
    envelope = call(
        LocalAdapter(docker_client=docker_client),
        registry_snapshot=load_spec(folder / "registry.yaml").snapshot(),
        adapter_opts={"world_root": str(tmp_path / "w"), "build": "never"},
    )
    assert envelope["error"]["code"] == "ERR_IMAGE_UNAVAILABLE", envelope


def test_a_snapshot_for_another_ref_is_a_registry_error(local: LocalAdapter, call: Any) -> None:
    other = Registry.discover().get_spec("replicate/generic@1").snapshot()
    assert call(local, registry_snapshot=other)["error"]["code"] == "ERR_REGISTRY"
    assert call(local, registry_snapshot={"nope": 1})["error"]["code"] == "ERR_REGISTRY"


# -- cleanup after crashes and interrupts ----------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    from pytest_theory.adapters import LocalAdapter
    from pytest_theory.registry import Registry
    adapter = LocalAdapter(world_root=sys.argv[1])
    adapter.acquire(Registry.discover().get_spec("llm/litellm@1"))
    print("ready", flush=True)
    time.sleep(600)  # fault: a session that waits to be killed
    """
)


def _child(tmp_path: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


@pytest.mark.fault
def test_an_interrupted_run_removes_its_containers(docker_client: Any, tmp_path: Path) -> None:
    before = our_containers(docker_client)
    child = _child(tmp_path)
    assert len(our_containers(docker_client) - before) == 1
    child.send_signal(signal.SIGINT)
    child.wait(60)
    assert our_containers(docker_client) == before


@pytest.mark.fault
def test_a_killed_run_is_reaped_by_the_next(docker_client: Any, tmp_path: Path) -> None:
    before = our_containers(docker_client)
    child = _child(tmp_path)
    child.kill()
    child.wait(60)
    orphans = our_containers(docker_client) - before
    assert len(orphans) == 1
    assert set(reap_orphans(docker_client)) == orphans
    assert our_containers(docker_client) == before


def test_the_reaper_spares_live_owners(docker_client: Any) -> None:
    image = docker_client.images.list(name="pytest-theory/base")[0].tags[0]
    mine = ProcessorContainer(docker_client, image, ref="x/y@1")
    mine.container = docker_client.containers.create(
        image, "sleep 30", labels=mine.labels, name=mine.name
    )
    try:
        assert mine.labels["org.pytest-theory.owner"] == owner_label()
        assert mine.container.name not in reap_orphans(docker_client)
        assert mine.container.name in our_containers(docker_client)
    finally:
        mine.stop()


def _copy_processor(tmp_path: Path, name: str) -> Path:
    import shutil

    target = tmp_path / "procs" / name
    shutil.copytree(
        REPO / "processors" / name, target, ignore=shutil.ignore_patterns("__pycache__")
    )
    return target


def test_os_environ_is_not_passed_wholesale(
    local: LocalAdapter, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-present-123")
    monkeypatch.setenv("UNRELATED_SECRET", "nope-nope")
    spec = Registry.discover().get_spec("llm/litellm@1")
    handle = local.acquire(
        spec,
        environment=local.default_environment(spec, ["OPENAI_API_KEY", "UNRELATED_SECRET"]),
        world_root=tmp_path,
    )
    env = dict(e.split("=", 1) for e in handle.container.container.attrs["Config"]["Env"])
    assert env["OPENAI_API_KEY"] == "sk-present-123" and "UNRELATED_SECRET" not in env
    assert env["IMAGE_DIGEST"] == handle.image_digest
