"""The control plane across processes: each test starts real ``manage.py`` processes against
the test database (SQLite's file, or PostgreSQL with ``DATABASE_URL``), as users would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from pytest_theory.django_project.apps.leases.leases import LeaseConflict, LeaseManager
from pytest_theory.django_project.apps.runs import ledger
from pytest_theory.django_project.apps.runs.models import Execution, LedgerEvent, Plan
from pytest_theory.django_project.apps.runs.reaper import reap, sweep_partial_uploads
from tests.conftest import REPO
from tests.control_plane.conftest import LLM_INPUTS

pytestmark = pytest.mark.django_db(transaction=True)  # the other processes see committed rows
#: Generous bound on any one child process (the machine is shared and slow); never a measure.
CHILD_DEADLINE_S = 300


def database_url() -> str:
    """The test database, as ``DATABASE_URL`` for a child process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def child_env(settings: Any, world: Path, tmp_path: Path) -> Callable[[], dict[str, str]]:
    """``child_env()``: this test's database, world, anchor and registry roots, as they are
    when called (after the test's ``registry_root`` copies)."""
    return lambda: {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "pytest_theory.django_project.theory_site.settings.default",
        "DATABASE_URL": database_url(),
        "THEORY_VAR_DIR": str(tmp_path / "var"),
        "THEORY_WORLD_ROOT": str(world),
        "THEORY_LEDGER_ANCHOR": str(settings.THEORY_LEDGER_ANCHOR),
        "THEORY_REGISTRY_PATH": os.pathsep.join(settings.THEORY_REGISTRY_ROOTS),
        "CI": "",
    }


Env = Callable[[], dict[str, str]]


def manage_py(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "django_project/manage.py"), *args]


def test_a_lease_held_by_one_process_refuses_another(child_env: Env) -> None:
    """A child holds /artifacts/out/ until told to let go; this process is refused meanwhile,
    then gets it. Each step waits on what the child says, never on a clock."""
    holder = textwrap.dedent(
        """
        import sys, django
        django.setup()
        from pytest_theory.django_project.apps.leases.leases import LeaseManager
        with LeaseManager(enabled=True)("maintenance", [{"kind": "prefix", "path": "/artifacts/out/"}]):
            print("held", flush=True)
            sys.stdin.readline()
        print("released", flush=True)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", holder],
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "held"
        lm = LeaseManager(enabled=True)
        with pytest.raises(LeaseConflict, match="plan maintenance holds an overlapping lease"):
            lm.acquire("team", [{"kind": "exact", "path": "/artifacts/out/frame.png"}])
        lm.acquire("team", [{"kind": "prefix", "path": "/artifacts/other/"}]).release()
        out, _ = child.communicate("\n", timeout=CHILD_DEADLINE_S)
        assert out.strip() == "released" and child.returncode == 0
        lm.acquire("team", [{"kind": "exact", "path": "/artifacts/out/frame.png"}]).release()
    finally:
        child.kill()
        child.wait(CHILD_DEADLINE_S)


@pytest.fixture
def capped(registry_root: Callable[..., Path]) -> str:
    """llm/litellm@1 at its shipped price (1000 µUSD a run) with a plan total capped at 5000."""
    registry_root(
        "llm_litellm",
        "demo_capped",
        lambda text: text.replace("ref: llm/litellm@1", "ref: demo/capped@1").replace(
            "max_usd_micro: 1000000", "max_usd_micro: 5000"
        ),
    )
    return "demo/capped@1"


def test_twenty_concurrent_runs_never_spend_past_the_cap(child_env: Env, capped: str) -> None:
    """20 run_processor processes at once on one plan: exactly five fit under the cap."""
    Plan.objects.create(key="shared", budget_usd_micro=6500)
    flags = ["--adapter", "inprocess", "--plan", "shared", "--inputs-json", LLM_INPUTS, "--json"]
    children = [
        subprocess.Popen(
            manage_py("run_processor", "--ref", capped, *flags),
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(20)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=CHILD_DEADLINE_S)
        results.append((child.returncode, out, err))
    codes = sorted(code for code, _, _ in results)
    assert codes == [0] * 5 + [1] * 15, [err[-500:] for code, _, err in results if code > 1]
    refusals = {json.loads(out)["error"]["code"] for code, out, _ in results if code == 1}
    assert refusals == {"ERR_BUDGET"}
    plan = Plan.objects.get(key="shared")
    assert (plan.spent_usd_micro, plan.reserved_usd_micro) == (5000, 0)
    assert Execution.objects.filter(status="succeeded").count() == 5
    verdict = ledger.verify()
    assert verdict.ok, verdict.problem


def test_kill_9_after_admission_leaves_nothing_held_once_reaped(
    child_env: Env, registry_root: Callable[..., Path]
) -> None:
    folder = registry_root(
        "llm_litellm",
        "demo_stuck",
        lambda text: text.replace("ref: llm/litellm@1", "ref: demo/stuck@1"),
    )
    (folder / "app/handler.py").write_text(
        "import threading\n\n\ndef handle(ctx):\n    threading.Event().wait(600)\n"
    )
    Plan.objects.create(key="team", budget_usd_micro=10_000)
    child = subprocess.Popen(
        manage_py(
            "run_processor",
            "--ref",
            "demo/stuck@1",
            "--adapter",
            "inprocess",
            "--plan",
            "team",
            "--inputs-json",
            LLM_INPUTS,
            "--execution-id",
            "doomed",
        ),
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stderr is not None
        for line in child.stderr:  # ends when the child does: bounded by its own life
            if '"execution.start"' in line:
                break
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(CHILD_DEADLINE_S) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait(CHILD_DEADLINE_S)
    execution = Execution.objects.get(pk="doomed")
    assert execution.status == "running" and Plan.objects.get(key="team").reserved_usd_micro == 1000
    assert execution.deadline_at is not None
    assert reap(now=execution.deadline_at - timedelta(seconds=1)) == [], "it might still be alive"
    assert reap(now=execution.deadline_at + timedelta(seconds=1)) == ["doomed"]
    execution.refresh_from_db()
    assert (execution.status, execution.error_code, execution.reserved_usd_micro) == (
        "failed",
        "ERR_TIMEOUT",
        0,
    )
    assert execution.envelope is not None and "was reaped" in execution.envelope["error"]["message"]
    plan = Plan.objects.get(key="team")
    assert (plan.reserved_usd_micro, plan.spent_usd_micro) == (0, 0)
    assert LedgerEvent.objects.order_by("seq").last().kind == "reaped"  # type: ignore[union-attr]
    verdict = ledger.verify()
    assert verdict.ok, verdict.problem
    assert reap(now=execution.deadline_at + timedelta(days=1)) == [], "reaped once"


def test_a_half_written_upload_is_swept_once_it_is_old(world: Path) -> None:
    """What ``kill -9`` during ``--attach`` leaves: the store's temporary file beside the target."""
    folder = world / "artifacts/inputs" / ("0" * 64)
    folder.mkdir(parents=True)
    stale, fresh, real = (
        folder / f".report.pdf.tmp-{'a' * 32}",
        folder / f".report.pdf.tmp-{'b' * 32}",
        folder / "report.pdf",
    )
    for file in (stale, fresh, real):
        file.write_bytes(b"partial")
    now = timezone.now()
    hours_ago = (now - timedelta(hours=2)).timestamp()
    for file in (stale, real):
        os.utime(file, (hours_ago, hours_ago))
    assert sweep_partial_uploads(world, now) == [stale]
    assert not stale.exists() and fresh.exists() and real.exists()
