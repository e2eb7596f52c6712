"""``manage.py run_processor``: runs through the adapters, recording executions, budgets and the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.contracts import cid_of_bytes, is_valid
from pytest_theory.django_project.apps.runs import ledger
from pytest_theory.django_project.apps.runs.models import Execution, LedgerEvent, Plan
from tests.conftest import REPO, our_containers
from tests.control_plane.conftest import LLM_INPUTS, Result

pytestmark = pytest.mark.django_db
Manage = Callable[..., Result]


def kinds() -> list[str]:
    return list(LedgerEvent.objects.order_by("seq").values_list("kind", flat=True))


# -- the real container ------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_local_mock_prints_the_envelope_and_records_the_execution(
    manage: Manage, world: Path, team: str
) -> None:
    result = manage(
        "run_processor",
        "--plan",
        team,
        "--ref",
        "llm/litellm@1",
        "--adapter",
        "local",
        "--mode",
        "mock",
        "--inputs-json",
        LLM_INPUTS,
        "--json",
    )
    assert result.code == 0, result.stderr
    envelope = json.loads(result.stdout)
    assert is_valid("envelope_success", envelope)
    execution = Execution.objects.get(pk=envelope["execution_id"])
    assert (execution.status, execution.adapter, execution.mode, execution.attempts) == (
        "succeeded",
        "local",
        "mock",
        1,
    )
    assert execution.envelope == envelope and execution.index_path == envelope["index_path"]
    assert (world / execution.receipt_path.lstrip("/")).is_file()
    assert (world / execution.determinism_path.lstrip("/")).is_file()
    assert execution.registry_snapshot["ref"] == "llm/litellm@1"
    assert kinds() == ["plan", "admission", "start", "settlement"] and ledger.verify().ok
    assert execution.cost_usd_micro == 1000, "mock mode reports no cost: the reservation"
    assert all(
        json.loads(line)["service"] == "control-plane" for line in result.stderr.splitlines()
    )


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_the_command_line_keeps_stdout_for_the_envelope(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "THEORY_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "pytest_theory.django_project.theory_site.settings.default",
    }
    manage_py = [sys.executable, str(REPO / "django_project/manage.py")]
    subprocess.run([*manage_py, "migrate", "-v0"], env=env, check=True)
    subprocess.run(
        [*manage_py, "plans", "create", "team", "--budget-usd-micro", "5000"], env=env, check=True
    )
    done = subprocess.run(
        [
            *manage_py,
            "run_processor",
            "--plan",
            "team",
            "--ref",
            "llm/litellm@1",
            "--inputs-json",
            LLM_INPUTS,
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "success"
    events = [json.loads(line)["event"] for line in done.stderr.splitlines()]
    assert events == ["execution.admitted", "execution.start", "execution.settled"]


@pytest.mark.docker
def test_ci_refuses_real_before_any_container_starts(
    manage: Manage, world: Path, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    before = our_containers(docker_client)
    result = manage(
        "run_processor",
        "--ref",
        "llm/litellm@1",
        "--adapter",
        "local",
        "--mode",
        "real",
        "--inputs-json",
        LLM_INPUTS,
        "--json",
    )
    assert result.code == 1
    assert json.loads(result.stdout)["error"]["code"] == "ERR_CI_SAFETY"
    assert our_containers(docker_client) == before
    (execution,) = Execution.objects.all()
    assert (execution.status, execution.error_code, execution.attempts) == (
        "refused",
        "ERR_CI_SAFETY",
        0,
    )
    assert kinds() == ["refusal"]


# -- bad flags: a clear message, exit 2, nothing recorded ------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--attach", "doc=/nonexistent/file.txt"],
            "attachment file not found: /nonexistent/file.txt",
        ),
        (["--attach", "no-equals-sign"], "expected name=path"),
        (["--inputs-json", "{nope"], "--inputs-json is not valid JSON"),
        (["--inputs-json", "[1, 2]"], "--inputs-json must be a JSON object"),
        (["--adapter-opts-json", "nope"], "--adapter-opts-json is not valid JSON"),
        (["--write-prefix", "/artifacts/x/{execution_id}"], "--write-prefix must end with /"),
        (["--write-prefix", "/artifacts/x/"], "must contain {execution_id}"),
        (["--write-prefix", "/artifacts/../{execution_id}/"], "'..'"),
        (["--plan", "missing"], "--plan missing: no such plan"),
        (["--inputs-json", '{"a": {"$attach": "doc"}}'], "refers to attachment 'doc'"),
        (["--execution-id", "../../x"], "--execution-id must be"),
        (["--execution-id", "e-1\n"], "--execution-id must be"),
        (["--execution-id", "x" * 200], "--execution-id must be"),
        (["--execution-id", ".."], "--execution-id must be"),
        (["--attach", "bad name=/etc/hostname"], "a name is 1-64 of"),
        (["--inputs-json", '{"schema": "v1", "params": {"model": ""}}'], "ERR_INPUTS"),
    ],
)
def test_bad_flags_are_clear_errors(
    manage: Manage, world: Path, flags: list[str], message: str
) -> None:
    result = manage(
        "run_processor",
        "--ref",
        "llm/litellm@1",
        "--adapter",
        "inprocess",
        "--inputs-json",
        LLM_INPUTS,
        *flags,
    )
    assert result.code == 2 and message in result.stderr, result.stderr
    assert Execution.objects.count() == 0 and LedgerEvent.objects.count() == 0


def test_bad_input_with_json_is_an_error_envelope_on_stdout(
    manage: Manage, world: Path, tmp_path: Path
) -> None:
    """The issue's cases: an attachment named with %, bad ids, bad inputs; none leaves a row."""
    odd = tmp_path / "100%25 sure.txt"
    odd.write_text("x")
    cases = [
        (["--attach", f"doc={odd}"], "ERR_INPUTS"),
        (["--execution-id", "a\nb"], "ERR_PAYLOAD"),
        (["--inputs-json", '{"schema": "v2"}'], "ERR_INPUTS"),
        (["--write-prefix", "/etc/{execution_id}/"], "ERR_WRITE_PREFIX"),
    ]
    for flags, code in cases:
        result = manage(
            "run_processor",
            "--ref",
            "llm/litellm@1",
            "--adapter",
            "inprocess",
            "--inputs-json",
            LLM_INPUTS,
            "--json",
            *flags,
        )
        assert result.code == 2, result.stderr
        envelope = json.loads(result.stdout)
        assert is_valid("envelope_error", envelope) and envelope["error"]["code"] == code, flags
        assert envelope["execution_id"] == ""
    assert Execution.objects.count() == 0 and LedgerEvent.objects.count() == 0


def test_a_reused_execution_id_is_refused(manage: Manage, world: Path) -> None:
    Plan.objects.create(key="team", budget_usd_micro=10_000)
    flags = ["--inputs-json", LLM_INPUTS, "--plan", "team", "--execution-id", "run-1", "--json"]
    assert (
        manage("run_processor", "--ref", "llm/litellm@1", "--adapter", "inprocess", *flags).code
        == 0
    )
    again = manage("run_processor", "--ref", "llm/litellm@1", "--adapter", "inprocess", *flags)
    assert again.code == 2 and "used already" in json.loads(again.stdout)["error"]["message"]
    assert Execution.objects.count() == 1 and ledger.verify().ok


def test_an_unknown_ref_lists_the_known_ones(manage: Manage, world: Path) -> None:
    result = manage("run_processor", "--ref", "nope/nope@1")
    assert result.code == 2 and "unknown processor ref nope/nope@1 (known: " in result.stderr


# -- attachments, streaming, saving -----------------------------------------------------------


def attach_inputs() -> str:
    part = {"role": "user", "content": [{"type": "text", "text": "Summarise:"}, {"$attach": "doc"}]}
    return json.dumps({"schema": "v1", "params": {"model": "m", "messages": [part]}})


def test_an_attachment_reaches_the_processor_in_process(
    manage: Manage, world: Path, tmp_path: Path, team: str
) -> None:
    check_attachment_round_trip(manage, world, tmp_path, "inprocess", team)


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_an_attachment_reaches_the_processor_in_its_container(
    manage: Manage, world: Path, tmp_path: Path, team: str
) -> None:
    check_attachment_round_trip(manage, world, tmp_path, "local", team)


def check_attachment_round_trip(
    manage: Manage, world: Path, tmp_path: Path, adapter: str, plan: str
) -> None:
    """The file is stored in the world, ``$attach`` becomes ``$artifact``, and the processor reads it."""
    note = tmp_path / "note.txt"
    note.write_text("the quarterly numbers went up")
    result = manage(
        "run_processor",
        "--ref",
        "llm/litellm@1",
        "--adapter",
        adapter,
        "--plan",
        plan,
        "--attach",
        f"doc={note}",
        "--inputs-json",
        attach_inputs(),
        "--json",
    )
    assert result.code == 0, result.stdout + result.stderr
    envelope = json.loads(result.stdout)
    stored = world / "artifacts/inputs" / cid_of_bytes(note.read_bytes())[3:] / "note.txt"
    assert stored.read_bytes() == note.read_bytes()
    prefix = envelope["index_path"].removesuffix("outputs.json")
    reply = (world / prefix.lstrip("/") / "outputs/text/response.txt").read_text()
    assert "the quarterly numbers went up" in reply
    assert f"/artifacts/inputs/{cid_of_bytes(note.read_bytes())[3:]}/note.txt" in reply


def test_stream_shows_events_on_stderr(manage: Manage, world: Path, team: str) -> None:
    result = manage(
        "run_processor",
        "--ref",
        "llm/litellm@1",
        "--adapter",
        "inprocess",
        "--inputs-json",
        LLM_INPUTS,
        "--plan",
        team,
        "--stream",
        "--json",
    )
    assert result.code == 0
    events = [json.loads(line)["event"] for line in result.stderr.splitlines()]
    assert "stream.token" in events and "stream.progress" in events
    assert events.index("stream.token") < events.index("execution.settled")
    assert json.loads(result.stdout)["status"] == "success"


def test_save_dir_and_save_first(manage: Manage, world: Path, tmp_path: Path, team: str) -> None:
    result = manage(
        "run_processor",
        "--ref",
        "llm/litellm@1",
        "--adapter",
        "inprocess",
        "--inputs-json",
        LLM_INPUTS,
        "--plan",
        team,
        "--save-dir",
        str(tmp_path / "saved"),
        "--save-first",
        str(tmp_path / "first.txt"),
    )
    assert result.code == 0
    assert (tmp_path / "saved/text/response.txt").read_text().endswith(": hi")
    # The first output the registry declares (text/response.txt), though metadata.json sorts first.
    assert (tmp_path / "first.txt").read_bytes() == (
        tmp_path / "saved/text/response.txt"
    ).read_bytes()
    assert "success (2 outputs" in result.stdout


# -- plans, policies and predicates -------------------------------------------------------------


POLICY = """
policy:
  budget: {max_usd_micro: 5000, reserve_usd_micro: 1000}
predicates:
  admission: [{id: budget.available@1, args: {required_usd_micro: 1000}}]
  success: [{id: artifact.exists@1, args: {path: "${prefix}outputs/text/response.txt"}}]
"""


@pytest.fixture
def priced(registry_root: Callable[..., Path]) -> str:
    """demo/priced@1: llm/litellm@1 with a price per run and predicates."""
    registry_root(
        "llm_litellm",
        "demo_priced",
        lambda text: text.replace("ref: llm/litellm@1", "ref: demo/priced@1") + POLICY,
    )
    return "demo/priced@1"


def run_priced(manage: Manage, ref: str, *flags: str) -> Result:
    return manage(
        "run_processor",
        "--ref",
        ref,
        "--adapter",
        "inprocess",
        "--inputs-json",
        LLM_INPUTS,
        "--json",
        *flags,
    )


def test_runs_reserve_then_spend_and_are_refused_when_the_budget_is_gone(
    manage: Manage, world: Path, priced: str
) -> None:
    plan = Plan.objects.create(key="team", budget_usd_micro=2500)
    for spent in (1000, 2000):
        assert run_priced(manage, priced, "--plan", "team").code == 0
        plan.refresh_from_db()
        assert (plan.spent_usd_micro, plan.reserved_usd_micro) == (spent, 0)
    refused = run_priced(manage, priced, "--plan", "team")
    assert refused.code == 1
    assert json.loads(refused.stdout)["error"]["code"] == "ERR_PREDICATE"
    assert "budget.available@1" in json.loads(refused.stdout)["error"]["message"]
    plan.refresh_from_db()
    assert (plan.spent_usd_micro, plan.reserved_usd_micro) == (2000, 0)
    statuses = list(
        Execution.objects.order_by("created_at").values_list("status", "cost_usd_micro")
    )
    assert statuses == [("succeeded", 1000), ("succeeded", 1000), ("refused", 0)]
    assert kinds()[-1] == "refusal" and ledger.verify().ok


def test_the_reservation_itself_refuses_an_overspend(
    manage: Manage, world: Path, registry_root: Callable[..., Path]
) -> None:
    """The predicate asks 1000 available; the policy reserves 1500: the UPDATE is the judge."""
    registry_root(
        "llm_litellm",
        "demo_cheap",
        lambda text: (
            text.replace("ref: llm/litellm@1", "ref: demo/cheap@1")
            + "policy:\n  budget: {reserve_usd_micro: 1500}\n"
        ),
    )
    Plan.objects.create(key="small", budget_usd_micro=2600)
    assert run_priced(manage, "demo/cheap@1", "--plan", "small").code == 0
    refused = run_priced(manage, "demo/cheap@1", "--plan", "small")
    assert json.loads(refused.stdout)["error"]["code"] == "ERR_BUDGET"
    assert (
        "overspend plan small (1100 µUSD available)"
        in json.loads(refused.stdout)["error"]["message"]
    )


def test_max_usd_micro_caps_the_plans_total_not_each_run(
    manage: Manage, world: Path, registry_root: Callable[..., Path]
) -> None:
    """The seed's "$1 max per plan": a plan with a large budget still stops at the cap."""
    registry_root(
        "llm_litellm",
        "demo_capped",
        lambda text: (
            text.replace("ref: llm/litellm@1", "ref: demo/capped@1")
            + "policy:\n  budget: {max_usd_micro: 2500}\n"
        ),
    )
    plan = Plan.objects.create(key="rich", budget_usd_micro=10**9)
    codes = [run_priced(manage, "demo/capped@1", "--plan", "rich").code for _ in range(3)]
    assert codes == [0, 0, 1]
    plan.refresh_from_db()
    assert (plan.spent_usd_micro, plan.reserved_usd_micro) == (2000, 0)
    last = Execution.objects.order_by("-created_at").first()
    assert (
        last is not None
        and "over the policy's max_usd_micro of 2500" in last.envelope["error"]["message"]
    )


def test_a_priced_processor_needs_a_plan(manage: Manage, world: Path) -> None:
    refused = run_priced(manage, "llm/litellm@1")
    error = json.loads(refused.stdout)["error"]
    assert refused.code == 1 and error["code"] == "ERR_BUDGET"
    assert (
        "costs up to 1000 µUSD a run: name the plan it draws on with --plan KEY" in error["message"]
    )


@pytest.mark.docker
def test_a_budget_0_plan_refuses_before_any_container_starts(
    manage: Manage, world: Path, docker_client: Any
) -> None:
    assert manage("plans", "create", "empty", "--budget-usd-micro", "0").code == 0
    before = our_containers(docker_client)
    result = manage(
        "run_processor",
        "--ref",
        "llm/litellm@1",
        "--adapter",
        "local",
        "--plan",
        "empty",
        "--inputs-json",
        LLM_INPUTS,
        "--json",
    )
    error = json.loads(result.stdout)["error"]
    assert result.code == 1 and error["code"] == "ERR_PREDICATE"
    assert "budget.available@1 failed: 0 µUSD available, 1000 required" in error["message"]
    assert our_containers(docker_client) == before
    (execution,) = Execution.objects.all()
    assert (execution.status, execution.attempts) == ("refused", 0)
    assert kinds() == ["plan", "refusal"] and ledger.verify().ok


def test_a_placeholder_that_cannot_be_expanded_is_refused_at_load(
    manage: Manage, world: Path, registry_root: Callable[..., Path]
) -> None:
    folder = registry_root(
        "llm_litellm",
        "demo_typo",
        lambda text: text.replace("ref: llm/litellm@1", "ref: demo/typo@1").replace(
            "${outputs.text_path}", "${outputs.txet_path}"
        ),
    )
    result = run_priced(manage, "demo/typo@1")
    assert result.code == 2
    assert (
        f"{folder / 'registry.yaml'}: predicates.success[0].args: ${{outputs.txet_path}} cannot "
        "be expanded (known: ${outputs.metadata_path}, ${outputs.text_path}, ${prefix})"
    ) in result.stderr


def test_the_shipped_success_predicate_expands_to_the_main_output(
    manage: Manage, world: Path, team: str
) -> None:
    result = run_priced(manage, "llm/litellm@1", "--plan", team)
    assert result.code == 0, result.stdout
    (execution,) = Execution.objects.all()
    (outcome,) = execution.predicates["success"]
    assert outcome == {
        "id": "artifact.exists@1",
        "ok": True,
        "detail": execution.prefix + "outputs/text/response.txt",
    }


def test_a_run_over_the_policy_ceiling_is_refused(
    manage: Manage, world: Path, registry_root: Callable[..., Path]
) -> None:
    registry_root(
        "llm_litellm",
        "demo_pricey",
        lambda text: (
            text.replace("ref: llm/litellm@1", "ref: demo/pricey@1")
            + "policy:\n  budget: {max_usd_micro: 10, reserve_usd_micro: 11}\n"
        ),
    )
    refused = run_priced(manage, "demo/pricey@1")
    assert (
        json.loads(refused.stdout)["error"]["code"] == "ERR_BUDGET" and "ceiling" in refused.stdout
    )


def test_a_failed_success_predicate_fails_the_run_and_releases_the_reservation(
    manage: Manage, world: Path, registry_root: Callable[..., Path]
) -> None:
    registry_root(
        "llm_litellm",
        "demo_strict",
        lambda text: (
            text.replace("ref: llm/litellm@1", "ref: demo/strict@1")
            + POLICY.replace("text/response.txt", "never/written.txt")
        ),
    )
    plan = Plan.objects.create(key="team", budget_usd_micro=5000)
    result = run_priced(manage, "demo/strict@1", "--plan", "team")
    assert result.code == 1
    envelope = json.loads(result.stdout)
    assert (
        envelope["error"]["code"] == "ERR_PREDICATE"
        and "artifact.exists@1" in envelope["error"]["message"]
    )
    (execution,) = Execution.objects.all()
    assert execution.status == "failed" and execution.predicates["success"][0]["ok"] is False
    assert execution.envelope["status"] == "success", "the processor's own envelope is kept"
    plan.refresh_from_db()
    assert (plan.reserved_usd_micro, plan.spent_usd_micro) == (0, 0)


def test_an_unknown_predicate_is_a_registry_error(
    manage: Manage, world: Path, registry_root: Callable[..., Path]
) -> None:
    folder = registry_root(
        "llm_litellm",
        "demo_typo",
        lambda text: (
            text.replace("ref: llm/litellm@1", "ref: demo/typo@1")
            + "predicates:\n  admission: [{id: budget.availble@1}]\n"
        ),
    )
    result = run_priced(manage, "demo/typo@1")
    assert result.code == 2
    assert (
        f"{folder / 'registry.yaml'}: predicates.admission[0].id: unknown predicate 'budget.availble@1'"
        in result.stderr
    )


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize(
    ("behave", "attempts", "code"),
    [("crash", 3, "ERR_ADAPTER_INVOCATION"), ("offschema", 1, "ERR_ENVELOPE_INVALID")],
)
def test_only_transient_failures_are_retried(
    manage: Manage,
    world: Path,
    registry_root: Callable[..., Path],
    behave: str,
    attempts: int,
    code: str,
) -> None:
    registry_root(
        "fault_chaos",
        "demo_flaky",
        lambda text: (
            text.replace("ref: fault/chaos@1", "ref: demo/flaky@1")
            + "policy:\n  retry: {max_attempts: 3, backoff_ms: [10, 20]}\n"
        ),
    )
    inputs = json.dumps({"schema": "v1", "params": {"behave": behave}})
    result = manage(
        "run_processor",
        "--ref",
        "demo/flaky@1",
        "--adapter",
        "local",
        "--inputs-json",
        inputs,
        "--json",
    )
    assert result.code == 1 and json.loads(result.stdout)["error"]["code"] == code
    (execution,) = Execution.objects.all()
    assert (execution.attempts, execution.status) == (attempts, "failed")
    assert kinds().count("retry") == attempts - 1 and kinds()[-1] == "failure"


def test_a_world_root_option_is_the_world_for_saving_too(
    manage: Manage, world: Path, tmp_path: Path, team: str
) -> None:
    other = tmp_path / "other-world"
    result = run_priced(
        manage,
        "llm/litellm@1",
        "--plan",
        team,
        "--adapter-opts-json",
        json.dumps({"world_root": str(other)}),
        "--save-dir",
        str(tmp_path / "saved"),
    )
    assert result.code == 0, result.stderr
    (execution,) = Execution.objects.all()
    assert (other / execution.prefix.lstrip("/") / "outputs/text/response.txt").is_file()
    assert (tmp_path / "saved/text/response.txt").read_text().endswith(": hi")
    assert not (world / "artifacts").exists()
    assert execution.predicates["success"][0]["ok"] is True


def test_runs_lease_their_declared_outputs_when_enabled(
    manage: Manage, world: Path, team: str, settings: Any
) -> None:
    """llm/litellm@1 sets enable_path_leases: while a maintenance job holds the processor's
    output folder, a run is refused before anything runs; afterwards it runs and lets go."""
    from pytest_theory.django_project.apps.leases.leases import LeaseManager

    settings.LEASES_ENABLED = True
    lm = LeaseManager()
    job = lm.acquire("maintenance", [{"kind": "prefix", "path": "/artifacts/outputs/llm-litellm/"}])
    refused = run_priced(manage, "llm/litellm@1", "--plan", team)
    error = json.loads(refused.stdout)["error"]
    assert (
        error["code"] == "ERR_PREDICATE" and "lease conflict: plan maintenance" in error["message"]
    )
    assert Plan.objects.get(key=team).reserved_usd_micro == 0
    job.release()
    assert run_priced(manage, "llm/litellm@1", "--plan", team).code == 0
    assert lm.held() == [], "released on settle"


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_a_real_run_is_charged_the_cost_its_receipt_reports(
    manage: Manage,
    world: Path,
    team: str,
    docker_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real mode against a local OpenAI-compatible server: LiteLLM prices the reply
    (gpt-4o, 3 + 7 tokens), the receipt says so, and the plan is charged exactly that."""
    from tests.fakes import bridge_gateway, openai_compatible, serving

    monkeypatch.delenv("CI", raising=False)
    fake = openai_compatible()
    inputs = json.dumps(
        {
            "schema": "v1",
            "params": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]},
        }
    )
    with serving(fake) as port:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-local")
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://{bridge_gateway(docker_client)}:{port}/v1")
        result = manage(
            "run_processor",
            "--ref",
            "llm/litellm@1",
            "--adapter",
            "local",
            "--mode",
            "real",
            "--plan",
            team,
            "--inputs-json",
            inputs,
            "--json",
        )
    assert result.code == 0, result.stdout + result.stderr[-2000:]
    (execution,) = Execution.objects.all()
    receipt = json.loads((world / execution.receipt_path.lstrip("/")).read_text())
    cost = receipt["usage"]["cost_usd_micro"]
    assert 0 < cost < 1000, "priced by LiteLLM, below the 1000 µUSD reservation"
    plan = Plan.objects.get(key=team)
    assert execution.cost_usd_micro == cost == plan.spent_usd_micro
    assert plan.reserved_usd_micro == 0, "the rest of the reservation is released"
    settlement = LedgerEvent.objects.filter(kind="settlement").get()
    assert settlement.data["cost_usd_micro"] == settlement.data["reported_cost_usd_micro"] == cost
    assert ledger.verify().ok
