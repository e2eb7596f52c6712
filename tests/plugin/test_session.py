"""The session boots the variants the selected checks need in the background, and its
close removes everything, also what was still booting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_theory.options import TheoryOptions
from pytest_theory.session import Target, TheorySession
from tests.conftest import our_containers

LLM = Target("llm/litellm@1", "local")


@pytest.fixture
def session(tmp_path: Path, docker_client: Any) -> Any:
    options = TheoryOptions(
        refs=(LLM.ref,),
        refs_from_command_line=True,
        adapters=("local",),
        mode="mock",
        registry_roots=(),
        build="auto",
        keep=False,
        fuzz_examples=5,
        property_examples=5,
        world=tmp_path,
    )
    session = TheorySession(options)
    session.variants_wanted = {LLM: {"canary", "fault", "bare"}}
    yield session
    session.close()


def test_wanted_variants_boot_beside_the_default(
    session: TheorySession, docker_client: Any
) -> None:
    before = our_containers(docker_client)
    default = session.processor(LLM)
    session.settle()
    started = our_containers(docker_client) - before
    # Every wanted variant was booted by the settle above: asking for them starts nothing.
    handles = {variant: session.processor(LLM, variant) for variant in ("canary", "fault", "bare")}
    assert our_containers(docker_client) - before == started, "asking again started another"
    # bare shares the default's container where their environments are equal (no CI, no secret
    # set on this machine): the adapter pools by environment.
    names = {handle.container.name for handle in (default, *handles.values())}
    assert started == names
    assert len({default.base_url, handles["canary"].base_url, handles["fault"].base_url}) == 3
    assert handles["canary"].client.get("/healthz").status_code == 200


def test_closing_while_variants_boot_leaves_nothing(
    session: TheorySession, docker_client: Any
) -> None:
    before = our_containers(docker_client)
    session.processor(LLM)  # the variants are now booting in the background
    session.close()
    assert not our_containers(docker_client) - before
    with pytest.raises(RuntimeError, match="closed"):
        session.processor(LLM, "fault")


def test_without_wanted_variants_only_the_default_boots(
    session: TheorySession, docker_client: Any
) -> None:
    session.variants_wanted = {}
    before = our_containers(docker_client)
    session.processor(LLM)
    session.settle()
    assert len(our_containers(docker_client) - before) == 1
