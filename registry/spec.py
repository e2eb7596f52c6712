"""One processor's ``registry.yaml``: loading, validation and the values callers need."""

from __future__ import annotations

import copy
import platform as _platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema.exceptions import ValidationError

from pytest_theory.contracts import schemas
from pytest_theory.contracts.hashing import cid_of_bytes
from pytest_theory.contracts.outputs import declared_output
from pytest_theory.registry.refs import Ref, RegistryError, parse_ref

REGISTRY_FILENAME = "registry.yaml"
_MACHINES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_platform() -> str:
    """``amd64`` or ``arm64`` for the machine this runs on."""
    machine = _platform.machine().lower()
    return _MACHINES.get(machine, machine)


def _describe(error: ValidationError) -> str:
    """The failing field, jsonschema's message, and the rule's own description when it has one."""
    line = schemas.describe(error)
    rule = error.schema.get("description") if isinstance(error.schema, dict) else None
    return f"{line} (rule: {rule})" if rule else line


@dataclass(frozen=True)
class ProcessorSpec:
    """A validated ``registry.yaml`` and where it came from."""

    ref: Ref
    path: Path
    data: dict[str, Any] = field(repr=False)

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def inputs_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = self.data["inputs"]
        return schema

    @property
    def outputs(self) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = self.data["outputs"]
        return outputs

    @property
    def runtime(self) -> dict[str, Any]:
        runtime: dict[str, Any] = self.data["runtime"]
        return runtime

    @property
    def timeout_s(self) -> float:
        return float(self.runtime["timeout_s"])

    @property
    def secrets_required(self) -> list[str]:
        return list(self.data["secrets"].get("required", []))

    @property
    def secrets_optional(self) -> list[str]:
        return list(self.data["secrets"].get("optional", []))

    @property
    def secrets_declared(self) -> list[str]:
        return self.secrets_required + self.secrets_optional

    @property
    def capabilities(self) -> list[str]:
        """The optional test hooks the processor declares (SPEC §9), e.g. ``fault-injection``."""
        return list(self.data.get("capabilities") or [])

    def declares(self, capability: str) -> bool:
        return capability in self.capabilities

    @property
    def build(self) -> dict[str, Any]:
        build: dict[str, Any] = self.data["build"]
        return build

    @property
    def build_context(self) -> Path:
        return (self.directory / str(self.build["context"])).resolve()

    @property
    def dockerfile(self) -> Path:
        return self.build_context / str(self.build["dockerfile"])

    @property
    def pins(self) -> dict[str, str]:
        pins: dict[str, str] = self.data["image"].get("platforms", {})
        return pins

    @property
    def source_hash(self) -> str | None:
        value: str | None = self.data["image"].get("source_hash")
        return value

    def pinned_image(self, platform: str | None = None) -> str | None:
        """The pin for ``platform`` (default: this machine), else the default platform's."""
        pins = self.pins
        return pins.get(platform or host_platform()) or pins.get(
            self.data["image"]["default_platform"]
        )

    def declared_output(self, relpath: str) -> dict[str, Any] | None:
        """The ``outputs`` entry that declares ``relpath`` (exact path or glob), if any."""
        found = declared_output(self.outputs, relpath)
        return dict(found) if found is not None else None

    def snapshot(self) -> dict[str, Any]:
        """What an execution records of the registry: the file's content, path and b3 id."""
        return {
            "ref": str(self.ref),
            "registry_path": str(self.path),
            "registry_cid": cid_of_bytes(self.path.read_bytes()),
            # A copy: a record of what was, which its holder may change freely.
            "spec": copy.deepcopy(self.data),
        }

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> ProcessorSpec:
        data = copy.deepcopy(snapshot["spec"])
        return cls(parse_ref(snapshot["ref"]), Path(snapshot["registry_path"]), data)


def validate_registry_data(data: Any, *, where: str, directory: Path | None = None) -> Ref:
    """Check a parsed ``registry.yaml``; ``RegistryError`` lists every problem, naming ``where``."""
    problems = [
        _describe(e)
        for e in sorted(
            schemas.validator("registry").iter_errors(data), key=lambda e: list(e.absolute_path)
        )
    ]
    if not problems:
        problems += schemas.check_draft7_schema(data["inputs"], root="inputs")
        image = data["image"]
        if image["platforms"] and image["default_platform"] not in image["platforms"]:
            problems.append(
                f"image.default_platform: {image['default_platform']!r} "
                "has no pin in image.platforms"
            )
        if directory is not None:
            ref = parse_ref(data["ref"])
            if directory.name != ref.dirname:
                problems.append(f"ref: {ref} must live in a folder named {ref.dirname!r}")
            context = directory / data["build"]["context"]
            if not (context / data["build"]["dockerfile"]).is_file():
                problems.append(
                    f"build.dockerfile: {data['build']['dockerfile']!r} not found in {context}"
                )
    if problems:
        raise RegistryError(f"{where}: " + "; ".join(problems))
    return parse_ref(data["ref"])


def load_spec(path: str | Path) -> ProcessorSpec:
    """Load and validate one ``registry.yaml``."""
    path = Path(path).resolve()
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        raise RegistryError(f"{path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RegistryError(f"{path}: not valid YAML{where}") from None
    ref = validate_registry_data(data, where=str(path), directory=path.parent)
    return ProcessorSpec(ref=ref, path=path, data=data)
