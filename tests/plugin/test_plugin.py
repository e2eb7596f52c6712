"""The plugin as its users run it: pytester sessions against real and deliberately broken processors."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from docker.errors import NotFound

from pytest_theory.adapters.containers import LABEL_OWNER, LABEL_RUN, managed_containers
from tests.conftest import REPO, our_containers
from tests.plugin.conftest import (
    BREAKS,
    DOCKERFILE_BREAKS,
    FAULTS_NOT_DECLARED,
    NOT_RUN_BY_RULE,
    QUICK,
    RULE_COUNT,
    fails_exactly,
    make_broken,
    summaries,
    verdict,
)
from tests.waiting import wait_for

docker = pytest.mark.docker


def rules_of(result: Any) -> dict[str, dict[str, object]]:
    return summaries(result.stdout.str())


def assert_green(result: Any) -> None:
    outcomes = result.parseoutcomes()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    assert (
        outcomes.get("passed", 0) > 0 and not outcomes.get("failed") and not outcomes.get("errors")
    )


# -- the suite against real processors ------------------------------------------------------


@pytest.mark.parametrize("adapter", ["local", "inprocess"])
@pytest.mark.usefixtures("no_leaks")
def test_the_suite_passes_for_llm_litellm(pytester: pytest.Pytester, adapter: str) -> None:
    result = pytester.runpytest_subprocess(
        "--theory-ref", "llm/litellm@1", "--theory-adapter", adapter, *QUICK
    )
    assert_green(result)
    summary = rules_of(result)[f"llm/litellm@1-{adapter}"]
    assert summary["failed"] == set() and summary["passed"] == summary["rules"] == RULE_COUNT
    assert summary["checks"] >= 25


@pytest.mark.usefixtures("no_leaks")
def test_all_covers_every_processor_in_parallel(
    pytester: pytest.Pytester, docker_client: Any
) -> None:
    result = pytester.runpytest_subprocess("-n", "2", "--theory-ref", "all", *QUICK)
    assert_green(result)
    assert set(rules_of(result)) == {"llm/litellm@1-local", "replicate/generic@1-local"}


def test_only_the_suite_runs_when_refs_are_the_only_argument(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine="def test_mine():\n    assert True\n")
    alone = pytester.runpytest_subprocess(
        "--theory-ref", "llm/litellm@1", "--theory-adapter", "inprocess", "--collect-only", "-q"
    )
    assert "test_mine" not in alone.stdout.str()
    both = pytester.runpytest_subprocess(
        ".",
        "--theory-ref",
        "llm/litellm@1",
        "--theory-adapter",
        "inprocess",
        "--collect-only",
        "-q",
    )
    assert "test_mine" in both.stdout.str() and "test_contract.py" in both.stdout.str()


def test_checks_that_need_a_variant_run_last(pytester: pytest.Pytester) -> None:
    """Their variants boot beside the default processor; the other checks run meanwhile."""
    result = pytester.runpytest_subprocess("--theory-ref", "llm/litellm@1", "--collect-only", "-q")
    ids = [line for line in result.outlines if "::" in line]
    needs_variant = [
        "test_err_missing_secret_in_real_mode",
        "test_err_for_provider_timeout_and_internal_failures",
        "test_secret_values_appear_nowhere",
        "test_the_processor_refuses_real_under_ci[",
    ]
    last = [i for i, line in enumerate(ids) if any(name in line for name in needs_variant)]
    assert len(last) == 6, ids
    assert last == list(range(len(ids) - 6, len(ids))), ids


def test_every_option_can_be_set_in_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\ntheory_refs = llm/litellm@1\ntheory_adapter = inprocess\ntheory_fuzz_examples = 5\n"
        "theory_property_examples = 3\ntheory_mode = mock\ntheory_build = never\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert_green(result)
    assert "llm/litellm@1-inprocess: 18/18 rules passed" in result.stdout.str()


def test_real_mode_under_ci_exits_with_err_ci_safety(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("--theory-ref", "llm/litellm@1", "--theory-mode", "real")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERR_CI_SAFETY" in result.stderr.str()


def test_an_unknown_ref_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--theory-ref", "nope/nope@1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown processor ref nope/nope@1" in result.stderr.str()
    assert "--theory-registry PATH or theory_registry" in result.stderr.str()


# -- broken processors: the suite fails on the rule that was broken, and no other ----------------


@docker
@pytest.mark.usefixtures("no_leaks")
def test_the_compliant_template_passes_every_rule(
    pytester: pytest.Pytester, broken_root: Path
) -> None:
    ref = make_broken(broken_root, "echo")
    result = pytester.runpytest_subprocess(
        "--theory-ref", ref, "--theory-registry", str(broken_root), *QUICK
    )
    assert_green(result)
    assert verdict(rules_of(result)[f"{ref}-local"]) == fails_exactly(None), result.stdout.str()


#: What the in-process lane cannot observe (reported as not run): the image as Docker runs it,
#: the processor's stdout, and the digest of an image that is not pinned (so digest-drift has
#: nothing to judge).
NOT_OBSERVED_IN_PROCESS = {
    "Docker's health verdict is not observable through this adapter": 1,
    "a command inside the image is not observable through this adapter": 1,
    "the image's digest is not known here": 1,
    "the processor's stdout is not observable through this adapter": 1,
}
NOT_RUN_IN_PROCESS = {
    **NOT_RUN_BY_RULE,
    "image": {
        "test_django_cannot_be_imported_in_the_image",
        "test_docker_reports_the_container_healthy",
    },
    "logs": {"test_stdout_stays_empty"},
}
#: Breaks the in-process lane reports as a check not run: it has no stdout of the processor's.
UNSEEN_IN_PROCESS = {"stdout_logs"}
#: Breaks that go around the runtime the fast lane hosts the app on (a literal /artifacts path,
#: the interpreter's own sys.__stderr__): only the real container sees them, so they are
#: judged through local alone (docs/decisions.md, "the in-process lane").
AROUND_THE_RUNTIME = {"outside_write", "leaked_secret"}


@pytest.mark.parametrize("name", sorted(set(BREAKS) - AROUND_THE_RUNTIME))
def test_a_broken_processor_gets_the_same_verdict_in_process(
    pytester: pytest.Pytester, broken_root: Path, name: str
) -> None:
    """The fast lane serves the processor's own app: the same rule fails as through local, or,
    for a break it cannot observe, nothing fails; what it cannot observe is reported not run."""
    ref = make_broken(broken_root, name)
    result = pytester.runpytest_subprocess(
        "--theory-ref", ref, "--theory-registry", str(broken_root),
        "--theory-adapter", "inprocess", *QUICK,
    )  # fmt: skip
    rule, checks = BREAKS[name]
    unseen = NOT_RUN_IN_PROCESS.get(rule, set())
    expected = fails_exactly(
        None if name in UNSEEN_IN_PROCESS else rule,
        " ".join(sorted(set(checks.split()) - unseen)),
        {**FAULTS_NOT_DECLARED, **NOT_OBSERVED_IN_PROCESS},
        unseen,
        {"digest-drift"},
    )
    received = verdict(rules_of(result)[f"{ref}-inprocess"])
    assert received == expected, f"{received}\n{result.stdout.str()[-3000:]}"
    failing = name not in UNSEEN_IN_PROCESS
    expected_exit = pytest.ExitCode.TESTS_FAILED if failing else pytest.ExitCode.OK
    assert result.ret == expected_exit, result.stdout.str()[-3000:]


@docker
@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("name", sorted(BREAKS))
def test_a_broken_processor_fails_only_its_rule(
    pytester: pytest.Pytester, broken_root: Path, name: str
) -> None:
    """The whole summary: every other rule passes (none absent), and in the broken rule its
    failing checks are exactly those of the broken sentence, beside the siblings not run."""
    ref = make_broken(broken_root, name)
    result = pytester.runpytest_subprocess(
        "--theory-ref", ref, "--theory-registry", str(broken_root), *QUICK
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    received = verdict(rules_of(result)[f"{ref}-local"])
    assert received == fails_exactly(*BREAKS[name]), result.stdout.str()[-3000:]


@docker
@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize("check", sorted(DOCKERFILE_BREAKS))
def test_a_broken_dockerfile_fails_its_image_check(
    pytester: pytest.Pytester, broken_root: Path, check: str
) -> None:
    """Through the built image (local) and the Dockerfile's text (inprocess)."""
    ref = make_broken(broken_root, "dockerfile")
    dockerfile = broken_root / "broken_dockerfile" / "Dockerfile"
    old, new = DOCKERFILE_BREAKS[check]
    assert dockerfile.read_text().count(old) == 1
    dockerfile.write_text(dockerfile.read_text().replace(old, new))
    result = pytester.runpytest_subprocess(
        "--theory-ref", ref, "--theory-registry", str(broken_root),
        "--theory-adapter", "local", "--theory-adapter", "inprocess", "-k", "image", "-rf", *QUICK,
    )  # fmt: skip
    failed = {
        line.split()[1].split("::")[1] for line in result.outlines if line.startswith("FAILED ")
    }
    assert failed == {f"{check}[{ref}-local]", f"{check}[{ref}-inprocess]"}, result.stdout.str()
    assert {t: s["failed_checks"] for t, s in rules_of(result).items()} == {
        f"{ref}-{adapter}": {"image": {check}} for adapter in ("local", "inprocess")
    }


@docker
@pytest.mark.usefixtures("no_leaks")
def test_failure_reports_show_rule_payload_and_stderr(
    pytester: pytest.Pytester, broken_root: Path
) -> None:
    ref = make_broken(broken_root, "unsorted_index")
    result = pytester.runpytest_subprocess(
        "--theory-ref", ref, "--theory-registry", str(broken_root), "-k", "index", *QUICK
    )
    output = result.stdout.str()
    assert "theory rule" in output and "index: §3 P/outputs.json" in output
    assert "theory replay (bodies in " in output and "curl -sS -X POST" in output
    assert "docker run --rm -d" in output and "-e IMAGE_DIGEST" in output
    assert "processor stderr of this check's runs" in output
    assert '"event": "http.run.settle"' in output
    assert "index entries are not sorted by path" in output


# -- interrupts ---------------------------------------------------------------------------------


def _containers_of(docker_client: Any, pid: int) -> list[str]:
    return [
        c.name
        for c in managed_containers(docker_client)
        if c.labels.get(LABEL_OWNER, "").split(":")[1:2] == [str(pid)]
    ]


@pytest.mark.fault
@docker
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_session_leaves_no_container(
    docker_client: Any, tmp_path: Path, signum: int
) -> None:
    before = our_containers(docker_client)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "--theory-ref",
            "llm/litellm@1",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(
        lambda: child.poll() is not None or _containers_of(docker_client, child.pid),
        timeout_s=120,
        what="the session booted a container",
    )
    assert child.poll() is None, "the session ended before it booted a container"
    child.send_signal(signum)
    assert child.wait(120) != 0
    assert _containers_of(docker_client, child.pid) == []
    assert our_containers(docker_client) <= before  # nothing new (the run may reap older orphans)
    assert REPO.exists()


@docker
def test_keep_leaves_the_containers_running_for_debugging(
    pytester: pytest.Pytester, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run label of its own: the engine is shared, and only that session's containers
    # are this test's to look at and to remove.
    run_id = f"keep-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("THEORY_RUN_ID", run_id)
    result = pytester.runpytest_subprocess(
        "--theory-ref", "llm/litellm@1", "--theory-keep", "-k", "healthz", *QUICK
    )
    kept = [c for c in managed_containers(docker_client) if c.labels.get(LABEL_RUN) == run_id]
    try:
        assert_green(result)
        assert kept, "--theory-keep removed the session's containers"
        assert all(c.status == "running" for c in kept)
    finally:
        for container in kept:
            with contextlib.suppress(NotFound):  # another run's reaper may be first
                container.remove(force=True, v=True)


# -- the examples, as their users run them ------------------------------------------------------


@docker
@pytest.mark.usefixtures("no_leaks")
def test_the_authors_example_tests_pass(pytester: pytest.Pytester) -> None:
    pytester.copy_example(str(REPO / "examples" / "test_processor_author.py"))
    result = pytester.runpytest_subprocess("test_processor_author.py", "-p", "no:cacheprovider")
    assert_green(result)
    assert result.parseoutcomes()["passed"] == 4


def test_the_ci_example_gates_on_the_suite() -> None:
    import yaml

    workflow = yaml.safe_load((REPO / "examples/ci/pull-request.yml").read_text())
    steps = " ".join(step.get("run", "") for step in workflow["jobs"]["contract"]["steps"])
    assert "theory check --all" in steps and "theory list --as-options" in steps
    assert "--junitxml" in steps
    assert workflow["jobs"]["contract"]["env"]["CI"] == "true"
