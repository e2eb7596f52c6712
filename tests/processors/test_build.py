"""Image builds: exact locks, deterministic contexts, content tags, pins and their staleness."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.cli import images_main as theory_images
from pytest_theory.images import build_image, content_tag, pin_status, source_hash, write_pin
from pytest_theory.images.context import runtime_lock, write_context_tar
from pytest_theory.images.wheels import read_lock
from pytest_theory.registry import Registry, load_spec
from pytest_theory.registry.yamltext import without_pins
from tests.conftest import FIXTURES, REPO

REGISTRY = Registry.discover([FIXTURES / "faults"])


def copy_processor(tmp_path: Path, name: str = "llm_litellm", as_ref: str | None = None) -> Path:
    """A copy of a built-in processor; renamed to ``as_ref`` so it can sit beside the original."""
    target = tmp_path / name
    if as_ref:
        ns, rest = as_ref.split("/")
        target = tmp_path / f"{ns}_{rest.split('@')[0]}"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "processors" / name, target, ignore=ignore)
    if as_ref:
        registry_yaml = target / "registry.yaml"
        original = registry_yaml.read_text().split("\n", 1)[0].removeprefix("ref: ")
        text = registry_yaml.read_text().replace(f"ref: {original}", f"ref: {as_ref}", 1)
        registry_yaml.write_text(text)
    return target


@pytest.mark.parametrize("ref", sorted(REGISTRY))
def test_every_lock_pins_exact_versions_of_the_runtime(ref: str) -> None:
    lock = REGISTRY[ref].build_context / "requirements.lock"
    pins = {p.normalized: p.version for p in read_lock(lock)}
    runtime = {p.normalized: p.version for p in read_lock(runtime_lock())}
    assert {name: pins.get(name) for name in runtime} == runtime, (
        "the runtime's pins must hold in every image"
    )
    assert "django" not in pins and "pytest" not in pins


def test_lock_lines_must_be_exact(tmp_path: Path) -> None:
    from pytest_theory.images.wheels import WheelhouseError

    lock = tmp_path / "requirements.lock"
    lock.write_text("fastapi>=0.1\n")
    with pytest.raises(WheelhouseError, match="not an exact pin"):
        read_lock(lock)


def test_the_build_context_is_deterministic_and_complete(tmp_path: Path) -> None:
    spec = REGISTRY["llm/litellm@1"]
    first, second = io.BytesIO(), io.BytesIO()
    write_context_tar(spec, first)
    write_context_tar(spec, second)
    assert first.getvalue() == second.getvalue()
    with tarfile.open(fileobj=io.BytesIO(first.getvalue())) as tar:
        names = tar.getnames()
        shipped = tar.extractfile(".theory/srv/registry.yaml").read().decode()  # type: ignore[union-attr]
    assert "sha256:" not in shipped and "source_hash" not in shipped, (
        "pins are not built into images"
    )
    assert {
        "Dockerfile",
        "requirements.lock",
        ".theory/srv/registry.yaml",
        ".theory/srv/app/http.py",
        ".theory/srv/pytest_theory/contracts/schemas/envelope.json",
        ".theory/srv/pytest_theory/processors/runtime/app.py",
    } <= set(names)
    assert any(n.startswith(".theory/wheels/litellm-1.106.2-") for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_the_source_hash_follows_content_not_time(tmp_path: Path) -> None:
    folder = copy_processor(tmp_path)
    spec = load_spec(folder / "registry.yaml")
    before = source_hash(spec)
    (folder / "app/handler.py").touch()
    assert source_hash(spec) == before
    (folder / "app/handler.py").write_text(
        (folder / "app/handler.py").read_text() + "\n# changed\n"
    )
    assert source_hash(spec) != before
    assert content_tag(spec).startswith("pytest-theory/llm-litellm:v1-")


@pytest.mark.docker
def test_an_unchanged_processor_is_never_rebuilt(docker_client: Any) -> None:
    spec = REGISTRY["fault/unhealthy@1"]
    first = build_image(spec, docker_client)
    again = build_image(spec, docker_client)
    assert again.built is False
    assert (again.reference, again.digest) == (first.reference, first.digest)


@pytest.mark.docker
def test_a_local_pin_records_the_image_and_the_offline_check_catches_staleness(
    docker_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_processor(tmp_path, as_ref="demo/llm@1")
    registry_yaml = folder / "registry.yaml"
    registry_yaml.write_text(without_pins(registry_yaml.read_text()))
    spec = load_spec(registry_yaml)
    text_before = registry_yaml.read_text()
    assert not pin_status(spec).current and "not pinned" in pin_status(spec).reason
    pinned = write_pin(spec, build_image(spec, docker_client))
    assert pinned.pinned_image("amd64").startswith("pytest-theory/demo-llm@sha256:")
    assert pin_status(pinned).current
    text_after = (folder / "registry.yaml").read_text()
    assert text_after.replace(
        text_after[text_after.index("image:") : text_after.index("build:")], ""
    ) == text_before.replace(
        text_before[text_before.index("image:") : text_before.index("build:")], ""
    ), "pinning rewrites the image block only (comments elsewhere survive)"
    assert theory_images(["check", "--offline", "--registry", str(tmp_path), "demo/llm@1"]) == 0
    assert theory_images(["check", "--registry", str(tmp_path), "demo/llm@1"]) == 0, (
        "a local pin (no registry host) resolves on this engine, never through Docker Hub"
    )
    (folder / "app/handler.py").write_text(
        (folder / "app/handler.py").read_text() + "\n# changed\n"
    )
    stale = load_spec(folder / "registry.yaml")
    assert not pin_status(stale).current and "stale" in pin_status(stale).reason
    capsys.readouterr()
    assert theory_images(["check", "--offline", "--registry", str(tmp_path), "demo/llm@1"]) == 1
    assert "stale" in capsys.readouterr().out


@pytest.mark.parametrize("ref", ["llm/litellm@1", "replicate/generic@1"])
def test_the_committed_pins_are_current(ref: str) -> None:
    """The registry's pins were built from the processor as it is now: run `theory-images pin`."""
    status = pin_status(Registry.discover().get_spec(ref))
    assert status.current, status.reason
