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
from tests.plugin.conftest import FOREIGN_BREAKS, QUICK, make_foreign, summaries

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leaks")]
RULES = 18
#: The split-secret check needs a *_BASE_URL secret to aim the processor at a local provider.
NO_PROVIDER = "no way to point the processor at a local provider (a *_BASE_URL secret)"
FAULTS_NOT_DECLARED = {"fault-injection not declared": 3, NO_PROVIDER: 1}


def _run(pytester: pytest.Pytester, root: Path, refs: list[str]) -> Any:
    args = [arg for ref in refs for arg in ("--theory-ref", ref)]
    return pytester.runpytest_subprocess(*args, "--theory-registry", str(root), *QUICK)


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
        assert (summary["passed"], summary["ran"], summary["failed"]) == (RULES, RULES, set())
        expected = {NO_PROVIDER: 1} if declared else FAULTS_NOT_DECLARED
        assert summary["not_run"] == expected, output[-2000:]
    line = next(line for line in result.outlines if line.startswith("foreign/conforming@1-local:"))
    assert line.endswith(
        f", 4 checks not run: fault-injection not declared (3), {NO_PROVIDER} (1)"
    ), line


#: The breaks, a few per pytest session: one session for all pays pytest's start once, but
#: keeps every processor's containers up (and probing their HEALTHCHECK) to its end.
CHUNKS = [sorted(FOREIGN_BREAKS)[i::3] for i in range(3)]


def test_the_breaks_are_of_different_sentences_and_cover_twelve_rules() -> None:
    assert len(FOREIGN_BREAKS) >= 12
    assert len({(rule, check) for _, rule, check in FOREIGN_BREAKS.values()}) == len(FOREIGN_BREAKS)
    assert len({rule for _, rule, _ in FOREIGN_BREAKS.values()}) >= 12


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
        summary = found[f"{ref}-local"]
        verdict = (
            summary["passed"],
            summary["ran"],
            summary["failed_checks"],
            summary["not_run"],
            summary["boot"],
        )
        expected = (RULES - 1, RULES, {rule: set(check.split())}, FAULTS_NOT_DECLARED, None)
        assert verdict == expected, f"{name}: {verdict}\n{output[-4000:]}"
    assert "KeyError" not in output


def test_a_foreign_processor_that_never_boots_is_one_error(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """One error carrying the boot log; every other check that needs it is reported not run."""
    ref = make_foreign(tmp_path, "never_boots")
    result = _run(pytester, tmp_path, [ref])
    output = result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors") == 1 and not outcomes.get("failed"), output[-3000:]
    summary = summaries(output)[f"{ref}-local"]
    assert summary["failed"] == set()
    assert summary["boot"].startswith(f"{ref}-local (default) did not boot: ERR_HEALTH")
    did_not_boot = f"{ref}-local did not boot (ERR_HEALTH)"
    assert set(summary["not_run"]) == {did_not_boot, "fault-injection not declared", NO_PROVIDER}
    assert summary["not_run"][did_not_boot] >= 35
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
