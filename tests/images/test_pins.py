"""Pins through a real OCI registry: Debian's docker-registry on loopback (scripts/registry).

``theory-images pin`` builds, pushes and records the pushed manifest digest; a fresh
engine (this processor's images removed) runs it with ``build: never`` by pulling that
digest; a pin edited by one hex digit fails ``check`` and drifts. The processor is a
renamed copy of replicate/generic@1, so every image these tests make or pull is their own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.adapters import LocalAdapter
from pytest_theory.cli import images_main as theory_images
from pytest_theory.contracts.digests import normalize_digest
from pytest_theory.images import pins
from pytest_theory.registry import load_spec
from pytest_theory.registry.yamltext import without_pins
from tests.conftest import REPO
from tests.processors.test_build import copy_processor

REF = "pintest/generic@1"
INPUTS = {
    "schema": "v1",
    "params": {"model": "acme/model", "input": {"prompt": "a lighthouse at dawn"}},
}


def _ours(image: Any) -> bool:
    return any(
        "pytest-theory/pintest-generic" in name
        for name in image.tags + image.attrs.get("RepoDigests", [])
    )


def remove_our_images(client: Any) -> None:
    """Remove every local image of pintest/generic@1: built, tagged for the push, or pulled."""
    for image in client.images.list():
        if _ours(image):
            client.images.remove(image.id, force=True)


@pytest.fixture(scope="module")
def loopback_registry(docker_client: Any) -> str:
    """The loopback registry, started like scripts/setup starts it (idempotent)."""
    started = subprocess.run(
        [str(REPO / "scripts/registry"), "start"], capture_output=True, text=True, timeout=300
    )
    assert started.returncode == 0, started.stdout + started.stderr
    return pins.loopback_repository()


@pytest.fixture(scope="module")
def pinned(
    tmp_path_factory: pytest.TempPathFactory, docker_client: Any, loopback_registry: str
) -> Iterator[tuple[Path, str]]:
    """pintest/generic@1 (replicate/generic@1 renamed) built, pushed and pinned once by the CLI."""
    root = tmp_path_factory.mktemp("pinned")
    registry_yaml = copy_processor(root, "replicate_generic", as_ref=REF) / "registry.yaml"
    registry_yaml.write_text(without_pins(registry_yaml.read_text()))
    try:
        assert theory_images(["pin", "--registry", str(root), REF]) == 0
        yield registry_yaml, load_spec(registry_yaml).pins["amd64"]
    finally:
        remove_our_images(docker_client)


def copy_of(pinned: tuple[Path, str], tmp_path: Path) -> Path:
    """A copy of the pinned processor in a registry root of its own."""
    target = tmp_path / "root" / pinned[0].parent.name
    shutil.copytree(pinned[0].parent, target)
    return target / "registry.yaml"


def run(adapter: LocalAdapter, registry_yaml: Path, build: str) -> dict[str, Any]:
    envelope: dict[str, Any] = adapter.invoke(
        processor_ref=REF,
        mode="mock",
        inputs_json=INPUTS,
        write_prefix="/artifacts/outputs/{execution_id}/",
        execution_id=f"pin-{build}",
        registry_snapshot=load_spec(registry_yaml).snapshot(),
        adapter_opts={"world_root": str(registry_yaml.parent.parent / "world"), "build": build},
        secrets_present=[],
    )
    return envelope


def check(registry_yaml: Path, *flags: str) -> int:
    return theory_images(["check", *flags, "--registry", str(registry_yaml.parent.parent), REF])


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_a_pin_edited_by_one_hex_digit_fails_check_and_drifts(
    pinned: tuple[Path, str], docker_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry_yaml, pin = copy_of(pinned, tmp_path), pinned[1]
    assert check(registry_yaml) == 0
    edited = pin[:-1] + ("0" if pin[-1] != "0" else "1")
    registry_yaml.write_text(registry_yaml.read_text().replace(pin, edited))
    capsys.readouterr()
    assert check(registry_yaml) == 1
    out = capsys.readouterr().out
    assert "ERR_IMAGE_DIGEST_MISMATCH" in out and "does not resolve" in out, out
    assert check(registry_yaml, "--offline") == 0, "the source is unchanged: the registry tells"
    adapter = LocalAdapter(docker_client=docker_client)
    try:
        drifted = run(adapter, registry_yaml, "auto")
        assert drifted["error"]["code"] == "ERR_IMAGE_DIGEST_MISMATCH", drifted
        assert normalize_digest(edited) in drifted["error"]["message"]
        unavailable = run(adapter, registry_yaml, "never")
        assert unavailable["error"]["code"] == "ERR_IMAGE_UNAVAILABLE", unavailable
    finally:
        adapter.close()


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_pin_pushes_and_a_fresh_engine_pulls_the_digest(
    pinned: tuple[Path, str], docker_client: Any, loopback_registry: str, tmp_path: Path
) -> None:
    registry_yaml, pin = copy_of(pinned, tmp_path), pinned[1]
    assert pin.startswith(f"{loopback_registry}/pintest-generic@sha256:"), pin
    assert check(registry_yaml) == 0
    registry_digest = docker_client.images.get_registry_data(pin).id
    assert normalize_digest(pin) == registry_digest, "the pin is the manifest the registry holds"
    adapter = LocalAdapter(docker_client=docker_client)
    try:
        built = run(adapter, registry_yaml, "auto")
        assert built["status"] == "success", built
        assert built["meta"]["image_digest"] == normalize_digest(pin), (
            "a run of the pinned source reports the pin"
        )
    finally:
        adapter.close()
    remove_our_images(docker_client)  # a fresh engine: nothing of this processor is here
    assert not [image for image in docker_client.images.list() if _ours(image)]
    adapter = LocalAdapter(docker_client=docker_client)
    try:
        pulled = run(adapter, registry_yaml, "never")
    finally:
        adapter.close()
    assert pulled["status"] == "success", pulled
    assert pulled["meta"]["image_digest"] == normalize_digest(pin)
    assert pin in docker_client.images.get(pin).attrs["RepoDigests"], "pulled by that digest"


@pytest.mark.docker
def test_check_fails_when_the_pin_resolves_nowhere(
    pinned: tuple[Path, str], docker_client: Any, loopback_registry: str, tmp_path: Path
) -> None:
    registry_yaml = copy_of(pinned, tmp_path)
    spec = load_spec(registry_yaml)
    never_pushed = f"{loopback_registry}/pintest-never@sha256:" + "5" * 64
    pins.write_pin(spec, never_pushed)
    status = pins.verify_pin(load_spec(registry_yaml), docker_client)
    assert not status.current and status.code == "ERR_IMAGE_UNAVAILABLE", status
    assert "does not resolve" in status.reason


# -- where pins go (no Docker) -------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv(pins.REPOSITORY_ENV, raising=False)
    monkeypatch.delenv(pins.REGISTRY_PORT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_repository_is_flag_then_env_then_ini_then_loopback(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pins.repository_prefix() == "localhost:5055/pytest-theory"
    (clean_env / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\ntheory_image_repository = "ghcr.io/acme/widgets"\n'
    )
    assert pins.repository_prefix() == "ghcr.io/acme/widgets"
    monkeypatch.setenv(pins.REPOSITORY_ENV, "registry.example:443/team")
    assert pins.repository_prefix() == "registry.example:443/team"
    assert pins.repository_prefix("ghcr.io/o/r/") == "ghcr.io/o/r"


def test_an_ini_file_pytest_would_read_names_the_repository(clean_env: Path) -> None:
    (clean_env / "tox.ini").write_text("[pytest]\ntheory_image_repository = ghcr.io/o/r\n")
    nested = clean_env / "sub"
    nested.mkdir()
    assert pins.ini_repository(nested) == "ghcr.io/o/r"
    (nested / "pytest.ini").write_text("[pytest]\n")
    assert pins.ini_repository(nested) is None, "the first config file wins, as in pytest"


@pytest.mark.parametrize("prefix", ["pytest-theory", "acme/widgets", "docker/library"])
def test_a_repository_without_a_registry_host_is_refused(clean_env: Path, prefix: str) -> None:
    with pytest.raises(ValueError, match="names no registry host"):
        pins.repository_prefix(prefix)


def test_ghcr_style_pins_are_valid_registry_pins(tmp_path: Path) -> None:
    folder = copy_processor(tmp_path)
    spec = load_spec(folder / "registry.yaml")
    assert pins.image_repository(spec, "ghcr.io/owner/repo") == "ghcr.io/owner/repo/llm-litellm"
    pin = "ghcr.io/owner/repo/llm-litellm@sha256:" + "ab" * 32
    pinned = pins.write_pin(spec, pin, source_hash=spec.source_hash)
    assert pinned.pins["amd64"] == pin and pins.pin_status(pinned).current
    loopback = "localhost:5055/pytest-theory/llm-litellm@sha256:" + "cd" * 32
    assert load_spec(pins.write_pin(pinned, loopback).path).pins["amd64"] == loopback


def test_the_push_tag_names_version_source_and_platform(tmp_path: Path) -> None:
    spec = load_spec(copy_processor(tmp_path) / "registry.yaml")
    assert (
        pins.push_tag(spec, "b3:" + "0123456789abcdef" * 4, "arm64") == "v1-0123456789abcdef-arm64"
    )
    assert os.path.basename(pins.image_repository(spec, "localhost:1/x")) == "llm-litellm"


@pytest.mark.docker
def test_a_push_to_a_registry_that_is_not_there_fails_clearly_and_leaves_no_tag(
    pinned: tuple[Path, str], docker_client: Any
) -> None:
    from pytest_theory.images import build_image
    from tests.fakes import free_port

    spec = load_spec(pinned[0])
    dead = f"localhost:{free_port()}/nobody"
    with pytest.raises(pins.PushError, match=r"failed: .*connection refused"):
        pins.push_image(spec, build_image(spec, docker_client), docker_client, prefix=dead)
    assert not [tag for image in docker_client.images.list() for tag in image.tags if dead in tag]
