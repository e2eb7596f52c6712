"""Issue 16, attacked again: links in the world, hostile ``$artifact`` inputs, the timeout
race, secrets split across tokens, and a processor that trickles or never ends.

Each test runs through the real adapters, in-process and in a container, and judges
by what the world holds afterwards, not by how long anything took.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CID, RELIABILITY, llm_inputs
from tests.reliability.conftest import REGISTRY, Target, boot
from tests.reliability.corpus import good_payload
from tests.waiting import wait_for

LLM = "llm/litellm@1"
#: Runs of the timeout race, and the timeout that makes it a race.
RACE_RUNS = 300
RACE_TIMEOUT_S = "0.004"
SETTLE_S = 30.0


@pytest.fixture(scope="module", params=["inprocess", "local"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "local":
        request.getfixturevalue("docker_client")
    return str(request.param)


@pytest.fixture(scope="module")
def llm(request: pytest.FixtureRequest, kind: str, tmp_path_factory: Any) -> Target:
    adapter = request.getfixturevalue(f"{kind}_adapter")
    return boot(adapter, LLM, tmp_path_factory.mktemp(f"{kind}-hardening"))


def post(target: Target, payload: dict[str, Any]) -> tuple[int, Any]:
    response = target.handle.client.post("/run", json=payload, timeout=120)
    return response.status_code, response.json()


def code_of(answer: tuple[int, Any]) -> tuple[int, str]:
    status, envelope = answer
    return status, envelope.get("error", {}).get("code", envelope.get("status"))


def payload_for(target: Target, template: str, execution_id: str, **over: Any) -> dict[str, Any]:
    return {
        **good_payload(str(target.spec.ref), target.inputs),
        "write_prefix": template,
        "execution_id": execution_id,
        **over,
    }


def stages_and_empty_folders(artifacts: Path) -> list[str]:
    """Leftovers no run may leave: stage folders and empty folders."""
    found = []
    for folder, dirs, _files in os.walk(artifacts):
        for name in dirs:
            path = Path(folder, name)
            if name.startswith(".theory-stage-") or (
                not path.is_symlink() and not any(path.iterdir())
            ):
                found.append(str(path.relative_to(artifacts)))
    return found


def wait_settled(artifacts: Path) -> list[str]:
    """Leftovers once handler threads still finishing timed-out runs are done (bounded)."""
    wait_for(
        lambda: not any(".theory-stage-" in p for p in stages_and_empty_folders(artifacts)),
        timeout_s=SETTLE_S,
        what="the timed-out runs' handler threads finished",
    )
    return stages_and_empty_folders(artifacts)


# -- 1. no write ever leaves the prefix --------------------------------------------------


class Outside:
    """A folder outside the world that a link points at, seen from where the processor runs."""

    def __init__(self, target: Target, tmp: Path):
        self.target = target
        self.name = f"theory-escape-{uuid.uuid4().hex[:8]}"
        if target.adapter.name == "local":
            self.path = f"/tmp/{self.name}"  # the container's /tmp
            self._exec(f"mkdir -p {self.path}")
        else:
            host = tmp / self.name
            host.mkdir()
            self.path = str(host)

    def _exec(self, command: str) -> str:
        container = self.target.handle.container.container  # type: ignore[attr-defined]
        result = container.exec_run(["sh", "-c", command])
        return str(result.output.decode())

    def contents(self) -> list[str]:
        if self.target.adapter.name == "local":
            listing = self._exec(f"find {self.path} -mindepth 1").split()
            return listing + [str(p) for p in Path(self.path).glob("*")]  # and the host's /tmp
        return [str(p) for p in Path(self.path).rglob("*")]


LINK_CASES = ["prefix", "prefix-parent", "outputs", "nested-output", "execution", "dangling"]


@pytest.mark.parametrize("case", LINK_CASES)
def test_links_in_the_world_are_refused_and_nothing_leaves_the_prefix(
    llm: Target, case: str, tmp_path: Path
) -> None:
    """SPEC §3: P/outputs/** — the artifacts, and nothing else anywhere."""
    artifacts = llm.world / "artifacts"
    outside = Outside(llm, tmp_path)
    run_id = f"link-{case}-{uuid.uuid4().hex[:6]}"
    base = artifacts / "links" / case
    base.mkdir(parents=True)
    template = f"/artifacts/links/{case}/{{execution_id}}/"
    prefix = base / run_id
    planted: list[Path] = []

    def plant(where: Path, to: str) -> None:
        where.parent.mkdir(parents=True, exist_ok=True)
        where.symlink_to(to)
        planted.append(where)

    if case == "prefix":
        plant(prefix, outside.path)
    elif case == "prefix-parent":
        plant(base / "via", outside.path)
        template = f"/artifacts/links/{case}/via/{{execution_id}}/"
    elif case == "outputs":
        plant(prefix / "outputs", outside.path)
    elif case == "nested-output":
        plant(prefix / "outputs" / "text", outside.path)
    elif case == "execution":
        plant(artifacts / "execution" / run_id, outside.path)
    else:
        plant(prefix, f"{outside.path}/not-there")
    try:
        answer = post(llm, payload_for(llm, template, run_id))
    finally:
        for link in planted:
            link.unlink()
    assert code_of(answer) == (400, "ERR_WRITE_PREFIX"), answer
    assert outside.contents() == []
    assert not (artifacts / "execution" / run_id).exists()
    RELIABILITY["links refused"] += 1


def test_a_link_at_the_execution_folder_is_refused(llm: Target, tmp_path: Path) -> None:
    """Receipts go to /artifacts/execution/<id>/ and nowhere else (§3)."""
    artifacts = llm.world / "artifacts"
    outside = Outside(llm, tmp_path)
    (artifacts / "execution").mkdir(exist_ok=True)
    moved = artifacts / f"execution-{uuid.uuid4().hex[:6]}"
    (artifacts / "execution").rename(moved)
    (artifacts / "execution").symlink_to(outside.path)
    try:
        answer = post(llm, payload_for(llm, "/artifacts/x/{execution_id}/", "link-exec"))
    finally:
        (artifacts / "execution").unlink()
        moved.rename(artifacts / "execution")
    assert code_of(answer) == (400, "ERR_WRITE_PREFIX"), answer
    assert outside.contents() == [] and not (artifacts / "x" / "link-exec").exists()
    RELIABILITY["links refused"] += 1


def test_a_rerun_replaces_its_files_and_keeps_to_its_prefix(llm: Target) -> None:
    template = "/artifacts/rerun/{execution_id}/"
    first = post(llm, payload_for(llm, template, "rerun-1"))
    second = post(llm, payload_for(llm, template, "rerun-1"))
    assert first[0] == second[0] == 200, (first, second)
    assert first[1]["outputs"] == second[1]["outputs"]
    assert stages_and_empty_folders(llm.world / "artifacts" / "rerun") == []


# -- 2. $artifact inputs: regular files only, bounded ---------------------------------------


def attachment_inputs(path: str) -> dict[str, Any]:
    part = {"$artifact": path, "cid": CID, "mime": "text/plain"}
    return {
        "schema": "v1",
        "params": {"model": "m", "messages": [{"role": "user", "content": [part]}]},
    }


@pytest.mark.parametrize("case", ["fifo", "dev-zero", "sparse-3gb", "folder", "over-limit"])
def test_hostile_artifacts_are_err_inputs(llm: Target, case: str) -> None:
    """ERR_INPUTS 400: inputs fail the registry schema — here, an $artifact no run can read."""
    inputs_dir = llm.world / "artifacts" / "inputs" / case
    inputs_dir.mkdir(parents=True, exist_ok=True)
    path = inputs_dir / "file"
    if not path.exists() and not path.is_symlink():
        if case == "fifo":
            os.mkfifo(path)
        elif case == "dev-zero":
            path.symlink_to("/dev/zero")
        elif case == "sparse-3gb":
            with open(path, "wb") as f:
                f.truncate(3 * 1024**3)
        elif case == "folder":
            path.mkdir()
        else:
            with open(path, "wb") as f:
                f.truncate(32 * 1024 * 1024 + 1)
    inputs = attachment_inputs(f"/artifacts/inputs/{case}/file")
    runs = 40 if case == "fifo" else 1  # more FIFOs than handler threads: none may be held
    answers = [
        post(
            llm,
            payload_for(llm, "/artifacts/att/{execution_id}/", f"att-{case}-{i}", inputs=inputs),
        )
        for i in range(runs)
    ]
    assert {code_of(a) for a in answers} == {(400, "ERR_INPUTS")}, answers[0]
    ok = post(llm, payload_for(llm, "/artifacts/att/{execution_id}/", f"att-ok-{case}"))
    assert ok[0] == 200, ok
    RELIABILITY["hostile artifacts refused"] += runs


# -- 3. ERR_TIMEOUT commits nothing ---------------------------------------------------------


@pytest.fixture(scope="module")
def racing(request: pytest.FixtureRequest, kind: str, tmp_path_factory: Any) -> Target:
    """The llm processor with a timeout so short that runs race their own commit."""
    adapter = request.getfixturevalue(f"{kind}_adapter")
    spec = REGISTRY.get_spec(LLM)
    world = tmp_path_factory.mktemp(f"{kind}-race")
    digest = adapter.digest_for(spec)
    env = {"IMAGE_DIGEST": digest, "THEORY_TIMEOUT_S": RACE_TIMEOUT_S}
    return Target(spec, adapter, adapter.acquire(spec, world_root=world, environment=env), world)


def test_a_timed_out_run_commits_nothing(racing: Target) -> None:
    """ERR_TIMEOUT 504: the run exceeded runtime.timeout_s — and a failed run leaves nothing."""
    template = "/artifacts/race/{execution_id}/"

    def one(i: int) -> tuple[str, tuple[int, str]]:
        run_id = f"race-{i}"
        return run_id, code_of(post(racing, payload_for(racing, template, run_id)))

    with ThreadPoolExecutor(8) as pool:
        answers = dict(pool.map(one, range(RACE_RUNS)))
    artifacts = racing.world / "artifacts"
    assert wait_settled(artifacts) == []
    committed = {
        run_id
        for run_id in answers
        if (artifacts / "race" / run_id).exists() or (artifacts / "execution" / run_id).exists()
    }
    timed_out = {r for r, a in answers.items() if a == (504, "ERR_TIMEOUT")}
    succeeded = {r for r, a in answers.items() if a == (200, "success")}
    assert timed_out | succeeded == set(answers), set(answers.values())
    assert timed_out, "no run timed out: the race was not run"
    assert committed & timed_out == set(), f"{len(committed & timed_out)} timed-out runs committed"
    for run_id in succeeded:
        assert (artifacts / "race" / run_id / "receipt.json").is_file()
        assert (artifacts / "execution" / run_id / "determinism.json").is_file()
    RELIABILITY["timeout races"] += len(answers)
    RELIABILITY["timeout races answered ERR_TIMEOUT"] += len(timed_out)
    RELIABILITY["timed-out runs that committed"] += len(committed & timed_out)


# -- 4. a secret split across streamed tokens ---------------------------------------------------


@pytest.mark.docker
def test_a_key_streamed_back_in_three_character_tokens_is_redacted(
    docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secret values are redacted everywhere (§5): also when tokens split them."""
    from pytest_theory.adapters import LocalAdapter
    from pytest_theory.provider import key_echoing_app
    from tests.fakes import bridge_gateway, serving

    key = "sk-" + uuid.uuid4().hex
    monkeypatch.delenv("CI", raising=False)
    spec = REGISTRY.get_spec(LLM)
    adapter = LocalAdapter(docker_client=docker_client)
    tokens: list[str] = []
    with serving(key_echoing_app()) as port:
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://{bridge_gateway(docker_client)}:{port}/v1")
        try:
            envelope = adapter.invoke(
                processor_ref=LLM,
                mode="real",
                inputs_json=llm_inputs("hello"),
                write_prefix="/artifacts/secret/{execution_id}/",
                execution_id="split-key",
                registry_snapshot=spec.snapshot(),
                adapter_opts={"world_root": str(tmp_path)},
                secrets_present=["OPENAI_API_KEY", "OPENAI_BASE_URL"],
                stream=True,
                on_event=lambda e, d: tokens.append(d["text"]) if e == "token" else None,
            )
        finally:
            adapter.close()
    assert envelope["status"] == "success", envelope
    joined = "".join(tokens)
    assert key not in joined and "[REDACTED]" in joined, joined
    written = (tmp_path / "artifacts/secret/split-key/outputs/text/response.txt").read_text()
    assert key not in written
    RELIABILITY["split secrets redacted"] += 1
