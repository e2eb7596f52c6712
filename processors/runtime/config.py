"""A processor's configuration: its registry.yaml plus the environment it was started with."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from pytest_theory.contracts import schemas
from pytest_theory.contracts.digests import normalize_digest
from pytest_theory.contracts.errors import ErrorCode
from pytest_theory.contracts.fingerprint import env_fingerprint
from pytest_theory.contracts.modes import Mode
from pytest_theory.contracts.outputs import declared_output
from pytest_theory.processors.runtime.logs import Redactor

DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
#: ``$artifact`` inputs larger than this are ERR_INPUTS unless registry.yaml says otherwise.
DEFAULT_MAX_ARTIFACT_BYTES = 32 * 1024 * 1024
#: Operator knobs read from the environment (all optional).
ENV_ARTIFACTS_ROOT = "THEORY_ARTIFACTS_ROOT"  # where the world's /artifacts is mounted
ENV_MAX_BODY_BYTES = "THEORY_MAX_BODY_BYTES"
ENV_TIMEOUT_S = "THEORY_TIMEOUT_S"  # lowers runtime.timeout_s, never raises it
ENV_FAULT_INJECTION = "THEORY_FAULT_INJECTION"  # "1": honour payload meta.fault (harness only)
ENV_LOG_STDIO = "THEORY_LOG_STDIO"  # "1": this is the server process; own stdout/stderr
FAULTS = ("provider", "internal", "timeout")


@dataclass(frozen=True)
class ProcessorConfig:
    ref: str
    spec: dict[str, Any] = field(repr=False)
    environ: Mapping[str, str] = field(repr=False)
    artifacts_root: Path

    @classmethod
    def load(
        cls,
        registry_path: str | Path,
        *,
        environ: Mapping[str, str] | None = None,
        artifacts_root: str | Path | None = None,
    ) -> ProcessorConfig:
        spec = yaml.safe_load(Path(registry_path).read_text("utf-8"))
        schemas.validate("registry", spec, code=ErrorCode.ERR_INTERNAL)
        env = dict(os.environ if environ is None else environ)
        root = artifacts_root or env.get(ENV_ARTIFACTS_ROOT) or "/artifacts"
        return cls(ref=spec["ref"], spec=spec, environ=env, artifacts_root=Path(root))

    @property
    def inputs_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = self.spec["inputs"]
        return schema

    @property
    def secrets_required(self) -> list[str]:
        return list(self.spec["secrets"].get("required", []))

    @property
    def secrets_declared(self) -> list[str]:
        return self.secrets_required + list(self.spec["secrets"].get("optional", []))

    @cached_property
    def secrets_present(self) -> dict[str, str]:
        """Declared secrets that are set (non-empty) in the environment."""
        return {n: self.environ[n] for n in self.secrets_declared if self.environ.get(n)}

    @cached_property
    def redactor(self) -> Redactor:
        return Redactor(self.secrets_present.values())

    @property
    def image_digest(self) -> str:
        """``IMAGE_DIGEST`` normalised to ``sha256:<hex>``; empty when unset or malformed."""
        try:
            return normalize_digest(self.environ.get("IMAGE_DIGEST", ""))
        except ValueError:
            return ""

    @property
    def env_fingerprint(self) -> str:
        return env_fingerprint(self.spec["runtime"], self.secrets_present)

    @property
    def timeout_s(self) -> float:
        declared = float(self.spec["runtime"]["timeout_s"])
        try:
            override = float(self.environ.get(ENV_TIMEOUT_S, "inf"))
        except ValueError:
            override = float("inf")
        return min(declared, override) if override > 0 else declared

    @property
    def max_artifact_bytes(self) -> int:
        """``runtime.max_artifact_bytes`` from registry.yaml, else the runtime's default."""
        return int(self.spec["runtime"].get("max_artifact_bytes", DEFAULT_MAX_ARTIFACT_BYTES))

    @property
    def max_body_bytes(self) -> int:
        try:
            return int(self.environ.get(ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES))
        except ValueError:
            return DEFAULT_MAX_BODY_BYTES

    @property
    def fault_injection(self) -> bool:
        return self.environ.get(ENV_FAULT_INJECTION) == "1"

    @property
    def owns_stdio(self) -> bool:
        return self.environ.get(ENV_LOG_STDIO) == "1"

    def secrets_for(self, mode: Mode) -> dict[str, str]:
        """Secrets a run may see: none in mock mode, which needs none."""
        return self.secrets_present if mode is Mode.REAL else {}

    def declared_output(self, relpath: str) -> Mapping[str, Any] | None:
        return declared_output(self.spec["outputs"], relpath)
