"""A processor's configuration: registry.yaml plus its environment (issue 20's mutation score)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_theory.contracts.errors import ContractError
from pytest_theory.contracts.modes import Mode
from pytest_theory.processors.runtime.config import (
    DEFAULT_MAX_ARTIFACT_BYTES,
    DEFAULT_MAX_BODY_BYTES,
    ProcessorConfig,
)
from tests.processors.conftest import LLM, REGISTRY

DIGEST = "sha256:" + "ab" * 32


def config(tmp_path: Path | None = None, **environ: str) -> ProcessorConfig:
    return ProcessorConfig.load(LLM.path, environ=environ, artifacts_root=tmp_path)


def test_it_reads_the_registry_and_the_given_environment(tmp_path: Path) -> None:
    loaded = config(tmp_path, IMAGE_DIGEST=f"repo.example/x@{DIGEST}")
    assert (loaded.ref, loaded.artifacts_root, loaded.image_digest) == (
        "llm/litellm@1",
        tmp_path,
        DIGEST,
    )
    assert (
        loaded.inputs_schema == loaded.spec["inputs"] and loaded.inputs_schema["type"] == "object"
    )
    assert loaded.secrets_required == ["OPENAI_API_KEY"]
    assert loaded.secrets_declared == ["OPENAI_API_KEY", *LLM.secrets_optional]
    assert loaded.declared_output("metadata.json")["mime"] == "application/json"
    assert loaded.declared_output("other.txt") is None


def test_the_artifacts_root_comes_from_the_argument_the_environment_or_the_spec() -> None:
    assert config().artifacts_root == Path("/artifacts")
    assert config(THEORY_ARTIFACTS_ROOT="/w").artifacts_root == Path("/w")
    assert config(Path("/a"), THEORY_ARTIFACTS_ROOT="/w").artifacts_root == Path("/a")


def test_without_an_environment_it_reads_the_processs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGE_DIGEST", DIGEST)
    assert ProcessorConfig.load(LLM.path).image_digest == DIGEST


def test_a_registry_that_is_not_valid_is_an_internal_error(tmp_path: Path) -> None:
    broken = tmp_path / "registry.yaml"
    broken.write_text("ref: llm/litellm@1\n")
    with pytest.raises(ContractError) as raised:
        ProcessorConfig.load(broken, environ={})
    assert raised.value.code.value == "ERR_INTERNAL"


@pytest.mark.parametrize(("value", "expected"), [("", ""), ("sha256:nothex", ""), (DIGEST, DIGEST)])
def test_the_image_digest_is_normalised_or_empty(value: str, expected: str) -> None:
    assert config(IMAGE_DIGEST=value).image_digest == expected
    assert config().image_digest == ""


def test_secrets_present_are_the_declared_ones_set_and_non_empty() -> None:
    loaded = config(OPENAI_API_KEY="sk-1234", UNDECLARED="x")
    assert loaded.secrets_present == {"OPENAI_API_KEY": "sk-1234"}
    assert loaded.secrets_for(Mode.REAL) == {"OPENAI_API_KEY": "sk-1234"}
    assert loaded.secrets_for(Mode.MOCK) == {}
    assert config(OPENAI_API_KEY="").secrets_present == {}
    assert loaded.redactor.text("key sk-1234") == "key [REDACTED]"
    assert loaded.env_fingerprint == "cpu=1;memory_gb=2;gpu=none;secrets=OPENAI_API_KEY"
    assert config().env_fingerprint == "cpu=1;memory_gb=2;gpu=none;secrets=none"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 600.0), ("2.5", 2.5), ("900", 600.0), ("0", 600.0), ("-1", 600.0), ("soon", 600.0)],
)
def test_theory_timeout_s_lowers_the_declared_timeout_never_raises_it(
    value: str | None, expected: float
) -> None:
    environ = {} if value is None else {"THEORY_TIMEOUT_S": value}
    assert config(**environ).timeout_s == expected


def test_the_size_limits() -> None:
    assert config().max_body_bytes == DEFAULT_MAX_BODY_BYTES == 2 * 1024 * 1024
    assert config(THEORY_MAX_BODY_BYTES="1000").max_body_bytes == 1000
    assert config(THEORY_MAX_BODY_BYTES="lots").max_body_bytes == DEFAULT_MAX_BODY_BYTES
    assert config().max_artifact_bytes == DEFAULT_MAX_ARTIFACT_BYTES == 32 * 1024 * 1024
    replicate = ProcessorConfig.load(REGISTRY.get_spec("replicate/generic@1").path, environ={})
    declared = replicate.spec["runtime"].get("max_artifact_bytes", DEFAULT_MAX_ARTIFACT_BYTES)
    assert replicate.max_artifact_bytes == declared


@pytest.mark.parametrize(
    ("value", "on"), [("1", True), ("true", False), ("0", False), (None, False)]
)
def test_fault_injection_and_stdio_are_on_only_for_exactly_1(value: str | None, on: bool) -> None:
    environ = {} if value is None else {"THEORY_FAULT_INJECTION": value, "THEORY_LOG_STDIO": value}
    loaded = config(**environ)
    assert (loaded.fault_injection, loaded.owns_stdio) == (on, on)
