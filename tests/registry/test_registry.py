"""Loading and validating registry.yaml files; discovery; refs; platform choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_theory.registry import (
    ProcessorSpec,
    Ref,
    Registry,
    RegistryError,
    builtin_root,
    host_platform,
    load_spec,
    parse_ref,
)
from tests.conftest import DIGEST

GOOD: dict[str, Any] = {
    "ref": "demo/echo@1",
    "image": {"platforms": {"amd64": f"ghcr.io/o/r/echo@{DIGEST}"}, "default_platform": "amd64"},
    "build": {"context": ".", "dockerfile": "Dockerfile", "port": 8000},
    "runtime": {"cpu": "1", "memory_gb": 1, "timeout_s": 30, "gpu": None},
    "secrets": {"required": [], "optional": []},
    "inputs": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
    "outputs": [
        {"path": "out.txt", "mime": "text/plain"},
        {"path": "files/*", "mime": "image/png"},
    ],
}


def write_processor(root: Path, data: dict[str, Any] | str, dirname: str = "demo_echo") -> Path:
    folder = root / dirname
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text("FROM scratch\n")
    path = folder / "registry.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def with_change(path: str, value: Any) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    return data


def test_a_good_file_loads(tmp_path: Path) -> None:
    spec = load_spec(write_processor(tmp_path, GOOD))
    assert spec.ref == Ref("demo", "echo", 1)
    assert spec.pinned_image("amd64") == f"ghcr.io/o/r/echo@{DIGEST}"
    assert spec.pinned_image("arm64") == f"ghcr.io/o/r/echo@{DIGEST}"  # falls back to the default
    assert spec.declared_output("files/a.png") == {"path": "files/*", "mime": "image/png"}
    assert spec.declared_output("other.txt") is None
    assert spec.dockerfile == tmp_path / "demo_echo" / "Dockerfile"


@pytest.mark.parametrize(
    ("change", "value", "names"),
    [
        ("colour", "blue", ["(root)", "colour"]),
        ("image.tag", "v1", ["image", "tag"]),
        ("ref", "Demo/echo@1", ["ref"]),
        ("ref", "demo/echo@v1", ["ref"]),
        (
            "image.platforms",
            {"amd64": "ghcr.io/o/r/echo:latest"},
            ["image.platforms.amd64", "pinned by digest"],
        ),
        ("image.platforms", {"amd64": "ghcr.io/o/r/echo@sha256:abc"}, ["image.platforms.amd64"]),
        ("inputs", {"type": 12}, ["inputs.type"]),
        ("inputs", {"properties": {"a": {"minLength": "x"}}}, ["inputs.properties.a.minLength"]),
        ("runtime.timeout_s", 0, ["runtime.timeout_s"]),
        ("secrets.required", ["api key"], ["secrets.required[0]"]),
        ("outputs", [{"path": "../x", "mime": "text/plain"}], ["outputs[0].path"]),
        ("image.platforms", {"arm64": f"r@{DIGEST}"}, ["image.default_platform"]),
    ],
)
def test_mistakes_name_the_file_and_the_field(
    tmp_path: Path, change: str, value: Any, names: list[str]
) -> None:
    path = write_processor(tmp_path, with_change(change, value))
    with pytest.raises(RegistryError) as info:
        load_spec(path)
    message = info.value.message
    assert str(path) in message
    for name in names:
        assert name in message, message
    assert info.value.code.value == "ERR_REGISTRY"


def test_folder_must_be_named_after_the_ref(tmp_path: Path) -> None:
    path = write_processor(tmp_path, GOOD, dirname="echo")
    with pytest.raises(RegistryError, match="folder named 'demo_echo'"):
        load_spec(path)


def test_missing_dockerfile_is_named(tmp_path: Path) -> None:
    path = write_processor(tmp_path, GOOD)
    (path.parent / "Dockerfile").unlink()
    with pytest.raises(RegistryError, match=r"build\.dockerfile"):
        load_spec(path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write_processor(tmp_path, "ref: demo/echo@1\nimage: {platforms: [\n")
    with pytest.raises(RegistryError, match=r"not valid YAML at line \d"):
        load_spec(path)


def test_discovery_finds_the_builtin_processors() -> None:
    registry = Registry.discover()
    assert {"llm/litellm@1", "replicate/generic@1"} <= set(registry)
    assert registry.get_spec("llm/litellm@1").directory == builtin_root() / "llm_litellm"


def test_extra_roots_and_duplicates(tmp_path: Path) -> None:
    write_processor(tmp_path / "a", GOOD)
    registry = Registry.discover([tmp_path / "a"])
    assert "demo/echo@1" in registry and "llm/litellm@1" in registry
    write_processor(tmp_path / "b", GOOD)
    with pytest.raises(RegistryError, match="already declared"):
        Registry.discover([tmp_path / "a", tmp_path / "b"], builtin=False)
    with pytest.raises(RegistryError, match="not found"):
        Registry.discover([tmp_path / "missing"])


def test_unknown_refs_list_what_exists() -> None:
    registry = Registry.discover()
    with pytest.raises(
        RegistryError, match=r"unknown processor ref nope/nope@1 \(known: .*llm/litellm@1"
    ):
        registry.get_spec("nope/nope@1")
    with pytest.raises(RegistryError, match="not a processor ref"):
        registry.get_spec("nope")


@pytest.mark.parametrize(
    "value", ["llm/litellm", "llm/litellm@0", "llm/LiteLLM@1", "/x@1", "a/b@1.0", 5]
)
def test_bad_refs(value: object) -> None:
    with pytest.raises(RegistryError):
        parse_ref(value)


def test_ref_names() -> None:
    ref = parse_ref("replicate/generic_v@12")
    assert (str(ref), ref.dirname, ref.slug) == (
        "replicate/generic_v@12",
        "replicate_generic_v",
        "replicate-generic-v-v12",
    )


def test_platform_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert host_platform() == "arm64"
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert host_platform() == "amd64"


def test_snapshot_round_trips(tmp_path: Path) -> None:
    spec = load_spec(write_processor(tmp_path, GOOD))
    snapshot = spec.snapshot()
    assert snapshot["registry_cid"].startswith("b3:")
    assert ProcessorSpec.from_snapshot(snapshot) == spec


def test_a_snapshot_is_a_record_not_a_handle_on_the_spec(tmp_path: Path) -> None:
    """A snapshot is what an execution records; changing it (a test's shortened timeout, a
    driver's own copy) never changes the loaded spec other callers share."""
    spec = load_spec(write_processor(tmp_path, GOOD))
    timeout = spec.timeout_s
    snapshot = spec.snapshot()
    snapshot["spec"]["runtime"]["timeout_s"] = 0.5
    ProcessorSpec.from_snapshot(snapshot).data["runtime"]["timeout_s"] = 0.25
    assert spec.timeout_s == timeout != 0.5
    assert spec.snapshot()["spec"]["runtime"]["timeout_s"] == timeout
    assert snapshot["spec"]["runtime"]["timeout_s"] == 0.5
