"""Processors written by someone else: plain FastAPI apps that import nothing of pytest-theory,
each with its own Dockerfile in SPEC.md's form (tests/fixtures/foreign), judged through
``local`` by SPEC.md alone.

Every copy of the template shares one requirements.lock, so the image layer that installs
the wheels is built once; each image is built once per content hash (a lookup after that).
The corpus runs in one pytest session per test below, not one per processor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_theory.adapters.local import LocalAdapter
from pytest_theory.images import base
from pytest_theory.images.build import build_image
from pytest_theory.registry import load_spec
from pytest_theory.rules import RULES
from tests.plugin.conftest import (
    BREAKS,
    FAULTS_NOT_DECLARED,
    FOREIGN_BREAKS,
    FOREIGN_EARLY_BREAKS,
    NO_PROVIDER,
    QUICK,
    RULE_COUNT,
    fails_exactly,
    make_foreign,
    summaries,
    verdict,
)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leaks")]
#: Breaks of the adapter rather than the processor, each a plugin module loaded with ``-p``
#: that patches the adapters' shared core; a conforming processor is run through it.
ADAPTER_BREAKS = {
    # §4/§8 Adapters check digest drift: a mismatch is ERR_IMAGE_DIGEST_MISMATCH
    "drift_never_reported": (
        "import pytest_theory.adapters.base as base\n\n"
        "base.digests_equal = lambda reported, expected: True  # the break: no digest drifts\n",
        "digest-drift",
        "test_a_drifted_digest_is_reported",
    ),
}


def _run(pytester: pytest.Pytester, root: Path, refs: list[str], *args: str) -> Any:
    refs_args = [arg for ref in refs for arg in ("--theory-ref", ref)]
    return pytester.runpytest_subprocess(*refs_args, "--theory-registry", str(root), *QUICK, *args)


def test_conforming_foreign_processors_pass_every_rule(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The fault checks run only for the copy that declares (and implements) the hook; a
    registry without inputs.examples passes too."""
    refs = [
        make_foreign(tmp_path, name) for name in ("conforming", "with_faults", "without_examples")
    ]
    result = _run(pytester, tmp_path, refs)
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.OK, output[-3000:]
    found = summaries(output)
    for ref in refs:
        summary = found[f"{ref}-local"]
        declared = ref == "foreign/with_faults@1"
        not_run = {NO_PROVIDER: 1} if declared else FAULTS_NOT_DECLARED
        expected = (RULE_COUNT, RULE_COUNT, {}, {}, set(), not_run, None)
        assert verdict(summary) == expected, output[-2000:]
    line = next(line for line in result.outlines if line.startswith("foreign/conforming@1-local:"))
    assert line.endswith(
        f", 4 checks not run: fault-injection not declared (3), {NO_PROVIDER} (1)"
    ), line


#: The breaks, a few per pytest session: one session for all pays pytest's start once, but
#: keeps every processor's containers up (and probing their HEALTHCHECK) to its end.
CHUNKS = [sorted(FOREIGN_BREAKS)[i::3] for i in range(3)]


def test_the_breaks_are_of_different_sentences_and_cover_every_rule() -> None:
    """Each foreign break fails a different check; with the early, adapter and runtime-based
    breaks (tests/fixtures/broken), every rule of the suite has a processor that breaks it."""
    assert len({(rule, check) for _, rule, check in FOREIGN_BREAKS.values()}) == len(FOREIGN_BREAKS)
    covered = {rule for _, rule, _ in [*FOREIGN_BREAKS.values(), *ADAPTER_BREAKS.values()]}
    covered |= {rule for _, rule, _ in FOREIGN_EARLY_BREAKS.values()}
    covered |= {rule for rule, _ in BREAKS.values()}
    assert covered == set(RULES)


@pytest.mark.parametrize("names", CHUNKS, ids=[f"chunk{i}" for i in range(len(CHUNKS))])
def test_each_broken_foreign_processor_fails_exactly_its_own_rule(
    pytester: pytest.Pytester, tmp_path: Path, names: list[str]
) -> None:
    """Each processor breaks a different sentence of SPEC.md: it fails the one check of that
    sentence, in its rule, and passes every other rule (the fault checks not run)."""
    refs = {make_foreign(tmp_path, name): name for name in names}
    result = _run(pytester, tmp_path, list(refs))
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output[-3000:]
    found = summaries(output)
    for ref, name in refs.items():
        _, rule, check = FOREIGN_BREAKS[name]
        received = verdict(found[f"{ref}-local"])
        expected = fails_exactly(rule, check, NOT_RUN_WITH.get(name))
        assert received == expected, f"{name}: {received}\n{output[-4000:]}"
    assert "KeyError" not in output


#: Breaks that also leave a check of another rule not run, its precondition being their breach.
NOT_RUN_WITH = {
    "inputs_refused_with_422": {
        **FAULTS_NOT_DECLARED,
        "a run was not refused with ERR_INPUTS (HTTP 422); errors judges it": 1,
    },
}


@pytest.mark.parametrize("name", sorted(ADAPTER_BREAKS))
def test_a_broken_adapter_fails_exactly_its_rule(
    pytester: pytest.Pytester, tmp_path: Path, name: str
) -> None:
    """A conforming processor through an adapter with one sentence of SPEC.md broken."""
    patch, rule, check = ADAPTER_BREAKS[name]
    pytester.makepyfile(**{f"broken_{name}": patch})
    ref = make_foreign(tmp_path, "conforming")
    result = _run(pytester, tmp_path, [ref], "-p", f"broken_{name}")
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output[-3000:]
    assert verdict(summaries(output)[f"{ref}-local"]) == fails_exactly(rule, check), output[-3000:]


def test_determinism_is_judged_against_a_run_long_before(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """§3 same outputs "whatever the execution id, time or machine": a processor whose mock
    output names the second it was made passes two runs made a moment apart, and fails
    against the run an earlier session left in the same world (--theory-world), seconds
    before; nothing sleeps."""
    edit = (
        "app/http.py",
        "f\"echo: {payload['inputs']['params']['text']}\\n\"",
        "f\"echo: {payload['inputs']['params']['text']} at {int(time.time())}\\n\"",
    )
    ref = make_foreign(tmp_path, "output_names_the_second", [edit])
    world = ["--theory-world", str(tmp_path / "world")]
    earlier = _run(pytester, tmp_path, [ref], *world, "-k", "test_run_answers_one_success_envelope")
    assert earlier.ret == pytest.ExitCode.OK, earlier.stdout.str()[-3000:]
    check = "test_mock_outputs_do_not_depend_on_the_execution"
    result = _run(pytester, tmp_path, [ref], *world, "-k", check)
    output = result.stdout.str()
    expected = (0, 1, {"determinism": {check}}, {"determinism": set()}, set(), {}, None)
    assert verdict(summaries(output)[f"{ref}-local"]) == expected, output[-3000:]
    assert "s before (the run under /artifacts/theory/" in output, output[-3000:]


def test_a_registry_file_off_its_schema_refuses_the_session(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """§7: judged when the session starts, before any check: a usage error naming the file and
    the problem, no check run and no summary (every processor is judged by a valid registry)."""
    _, rule, problem = FOREIGN_EARLY_BREAKS["output_without_mime"]
    assert rule == "registry"
    ref = make_foreign(tmp_path, "output_without_mime")
    result = _run(pytester, tmp_path, [ref])
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-3000:]
    registry = tmp_path / "foreign_output_without_mime" / "registry.yaml"
    assert f"{registry}: {problem}" in result.stderr.str(), result.stderr.str()[-3000:]
    assert summaries(result.stdout.str()) == {}


#: The checks that need no processor (registry.yaml and the Dockerfile's text), by rule.
WITHOUT_A_PROCESSOR = {
    "registry": {"test_registry_file_validates"},
    "image": {
        "test_dockerfile_takes_the_base_image_as_an_argument",
        "test_processor_code_imports_no_django",
    },
}


def test_foreign_processors_that_never_become_healthy_are_one_error_each(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """One whose app fails at import and one whose /healthz answers 200 {"ok": "yes"} (§2: the
    adapters wait for {"ok": true}, so the healthz rule is judged at boot): each is one error
    with its boot log; the checks that need no processor pass, every other check is reported
    not run, and each rule that had none of its checks run is named."""
    _, rule, message = FOREIGN_EARLY_BREAKS["healthz_not_ok"]
    assert rule == "healthz"
    refs = {
        make_foreign(tmp_path, "never_boots"): "",
        make_foreign(tmp_path, "healthz_not_ok"): message,
    }
    result = _run(pytester, tmp_path, list(refs))
    output = result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors") == 2 and not outcomes.get("failed"), output[-3000:]
    for ref, message in refs.items():
        summary = summaries(output)[f"{ref}-local"]
        assert summary["boot"].startswith(
            f"{ref}-local (default) did not boot: ERR_HEALTH: {message}"
        )
        did_not_boot = f"{ref}-local did not boot (ERR_HEALTH)"
        assert set(summary["not_run"]) == {
            did_not_boot,
            "fault-injection not declared",
            NO_PROVIDER,
        }
        assert summary["not_run"][did_not_boot] >= 35
        ran = sum(len(checks) for checks in WITHOUT_A_PROCESSOR.values())
        expected = (
            len(WITHOUT_A_PROCESSOR),
            RULE_COUNT,
            {},
            {},
            set(RULES) - set(WITHOUT_A_PROCESSOR),
        )
        received = tuple(
            summary[k]
            for k in ("passed", "rules", "failed_checks", "failed_not_run", "rules_not_run")
        )
        assert received == expected, output[-3000:]
        assert summary["checks"] == ran, output[-3000:]
    assert "KeyError: 'no-such-key'" in output  # the boot log: the container's last lines


def test_a_dockerfile_in_spec_form_builds_boots_and_is_healthy(
    tmp_path: Path, docker_client: Any
) -> None:
    """`RUN pip install --no-index --find-links …`, `CMD ["python", …]`-style HEALTHCHECK:
    built on python:3.11-slim where the engine has it, else on the stand-in, which says so."""
    make_foreign(tmp_path, "conforming")
    spec = load_spec(tmp_path / "foreign_conforming" / "registry.yaml")
    dockerfile = spec.dockerfile.read_text()
    assert "RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels" in dockerfile
    assert 'CMD ["python", "-c", "import urllib.request;' in dockerfile
    image = build_image(spec, docker_client)
    used = base.ensure_base_image(docker_client)
    assert image.base in ("", base.describe(used))  # "" when the tag existed: a lookup
    assert base.describe(used).startswith(
        f"base {base.OFFICIAL}" if used == base.OFFICIAL else f"base {used}: a local stand-in"
    )
    adapter = LocalAdapter(world_root=tmp_path / "world")
    try:
        handle = adapter.acquire(spec, environment=adapter.default_environment(spec))
        health = handle.docker_health(120)  # waits on Docker's verdict, bounded
        assert health[0] == "healthy", health
    finally:
        adapter.close()
