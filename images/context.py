"""The build context of a processor image, and the content hash that names the image.

The context is the processor's folder plus what its Dockerfile copies from
``.theory/``: ``srv/`` (what the image serves: the folder's ``app/`` and
``registry.yaml`` with the ``contracts`` package and the processor runtime, so
one COPY puts them in place) and ``wheels/`` (the wheels its lock names). The
content hash covers every file but the wheels (the lock names them exactly)
plus the base-image recipe, so an unchanged processor maps to an existing image
tag and is never rebuilt.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from pytest_theory.contracts.hashing import canonical_json, cid_of_bytes, cid_of_file
from pytest_theory.images import base, wheels
from pytest_theory.registry import ProcessorSpec, contracts_root, runtime_root
from pytest_theory.registry.spec import REGISTRY_FILENAME
from pytest_theory.registry.yamltext import without_pins

LOCK_NAME = "requirements.lock"
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".theory", ".mypy_cache", ".ruff_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}
_IMAGE_PACKAGE_INIT = (
    b'"""pytest-theory\'s contracts and processor runtime, as a processor image carries them."""\n'
)


@dataclass(frozen=True)
class ContextFile:
    arcname: str
    source: Path
    #: Content to use instead of the file's (registry.yaml without its pins).
    data: bytes | None = None

    def read(self) -> bytes:
        return self.data if self.data is not None else self.source.read_bytes()

    @property
    def cid(self) -> str:
        return cid_of_bytes(self.data) if self.data is not None else cid_of_file(self.source)[0]


def _registry_file(arcname: str, path: Path) -> ContextFile:
    """registry.yaml as images are built from it: pins describe the image, they are not in it."""
    return ContextFile(arcname, path, without_pins(path.read_text("utf-8")).encode())


def _tree(root: Path, prefix: str) -> list[ContextFile]:
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in _SKIP_DIRS for part in relative.parts) or path.suffix in _SKIP_SUFFIXES:
            continue
        if path.is_file():
            arcname = f"{prefix}{relative.as_posix()}"
            is_registry = path.name == REGISTRY_FILENAME and path.parent == root
            files.append(
                _registry_file(arcname, path) if is_registry else ContextFile(arcname, path)
            )
    return files


def served_files(spec: ProcessorSpec) -> list[ContextFile]:
    """``.theory/srv``: the processor's app and registry.yaml, and the shared library."""
    runtime = runtime_root()
    return [
        _registry_file(".theory/srv/registry.yaml", spec.path),
        *_tree(spec.directory / "app", ".theory/srv/app/"),
        # The image carries the same import names as the wheel, under a stub package
        # that (unlike the plugin's own __init__) needs neither pytest nor anything else.
        ContextFile(".theory/srv/pytest_theory/__init__.py", runtime, _IMAGE_PACKAGE_INIT),
        # Not SPEC.md: the contract's prose is for people; editing it must not stale every pin.
        *(
            f
            for f in _tree(contracts_root(), ".theory/srv/pytest_theory/contracts/")
            if f.arcname != ".theory/srv/pytest_theory/contracts/SPEC.md"
        ),
        ContextFile(
            ".theory/srv/pytest_theory/processors/__init__.py",
            runtime.parent / "__init__.py",
        ),
        *_tree(runtime, ".theory/srv/pytest_theory/processors/runtime/"),
    ]


def source_files(spec: ProcessorSpec) -> list[ContextFile]:
    """Every file of the context except the wheels."""
    return [*_tree(spec.build_context, ""), *served_files(spec)]


def source_hash(spec: ProcessorSpec) -> str:
    """``b3:`` id of the context's content (paths and file ids) and the base-image recipe."""
    manifest = {f.arcname: f.cid for f in source_files(spec)}
    return cid_of_bytes(canonical_json({"files": manifest, "base": base.recipe_hash()}))


def lock_path(spec: ProcessorSpec) -> Path:
    return spec.build_context / LOCK_NAME


def runtime_lock() -> Path:
    """The runtime's own lock: the whole of a processor that adds no dependency."""
    return runtime_root() / LOCK_NAME


def write_context_tar(spec: ProcessorSpec, out: io.BufferedIOBase, platform: str = "amd64") -> None:
    """A deterministic tar of the whole context (sorted, zero mtimes and owners)."""
    lock = lock_path(spec)
    wheel_files = []
    if lock.exists():
        wheel_files = [
            ContextFile(f".theory/wheels/{w.name}", w)
            for w in wheels.wheels_for(wheels.read_lock(lock), platform)
        ]
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in sorted([*source_files(spec), *wheel_files], key=lambda f: f.arcname):
            info = tarfile.TarInfo(item.arcname)
            info.mode = 0o644
            info.mtime = 0
            if item.data is not None:
                info.size = len(item.data)
                tar.addfile(info, io.BytesIO(item.data))
            else:
                info.size = item.source.stat().st_size
                with open(item.source, "rb") as f:
                    tar.addfile(info, f)
