"""What a verdict depends on, each found and hashed in one place: SPEC.md, the harness,
a processor's registry.yaml and source, and the digest of the image it runs as.

Nothing here builds an image or starts a container: these are looked up before
deciding whether a cell must run at all.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from importlib import metadata
from pathlib import Path

from pytest_theory.contracts.digests import normalize_digest
from pytest_theory.registry import ProcessorSpec

HARNESS = "pytest-theory"
#: The harness packages whose code decides a verdict (not the processors, not Django).
HARNESS_PACKAGES = ("pytest_theory", "contracts", "registry", "adapters", "images")
#: Under pytest_theory/ in a wheel, not the plugin's own code: hashed under their own names,
#: not a verdict's business (processors, Django), or only how evidence is written (report).
_NOT_HARNESS = {*HARNESS_PACKAGES[1:], "processors", "django_project", "report"}
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # pytest_theory/


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def spec_md_path() -> Path | None:
    """SPEC.md, the law a verdict is judged by: the one place that says where it is.

    ``THEORY_SPEC_MD`` first; then a copy packaged beside the contracts (being added);
    then ``shared/SPEC.md`` beside the checkout (or beside a folder of worktrees), where
    the workspace and CI keep it.
    """
    checkout = _PACKAGE_ROOT.parent
    candidates = [
        Path(os.environ["THEORY_SPEC_MD"]) if os.environ.get("THEORY_SPEC_MD") else None,
        _package_dir("pytest_theory.contracts") / "SPEC.md",
        *(folder / "shared" / "SPEC.md" for folder in checkout.parents[:2]),
    ]
    return next((path for path in candidates if path is not None and path.is_file()), None)


def spec_md() -> dict[str, str | None]:
    path = spec_md_path()
    if path is None:
        return {"path": "SPEC.md", "digest": None}
    return {"path": str(path), "digest": sha256_of(path.read_bytes())}


def _package_dir(name: str) -> Path:
    import importlib

    return Path(next(iter(importlib.import_module(name).__path__)))


@cache
def harness() -> dict[str, str]:
    """Name, version and a digest of the harness's own code (its .py and .json files)."""
    digest = hashlib.sha256()
    for package in HARNESS_PACKAGES:
        name = package if package == "pytest_theory" else f"pytest_theory.{package}"
        root = _package_dir(name)
        for path in sorted(root.rglob("*")):
            if path.suffix not in (".py", ".json") or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(root)
            if package == "pytest_theory" and relative.parts[0] in _NOT_HARNESS:
                continue
            digest.update(f"{package}/{relative.as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    try:
        version = metadata.version(HARNESS)
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return {"name": HARNESS, "version": version, "digest": "sha256:" + digest.hexdigest()}


def registry_yaml(spec: ProcessorSpec) -> dict[str, str | None]:
    return {"path": str(spec.path), "digest": sha256_of(spec.path.read_bytes())}


def source_hash(spec: ProcessorSpec) -> str | None:
    """The ``b3:`` hash of everything the processor's image is built from."""
    from pytest_theory.images import context

    try:
        return context.source_hash(spec)
    except OSError:
        return None


def image_name(spec: ProcessorSpec, build: str, source: str | None) -> str:
    """The image a cell ran: the pinned reference (``--theory-build never``) or the content tag."""
    from pytest_theory.images import content_tag

    pin = spec.pinned_image()
    if build == "never" or source is None:
        return pin.rsplit("@", 1)[0] if pin else str(spec.ref)
    return content_tag(spec, source)


def known_digest(spec: ProcessorSpec, adapter: str, build: str = "auto") -> str | None:
    """The digest ``adapter`` would run ``spec`` as, found without building or starting anything.

    ``None`` when it cannot be known so (not built yet, or modal): such a cell runs.
    """
    pin = spec.pinned_image()
    pinned = normalize_digest(pin) if pin else None
    if adapter == "modal":
        return None
    if build == "never":
        return pinned
    if build == "always":
        return None  # a rebuild from nothing makes a new image: nothing known to reuse
    built = _built_digest(spec)
    if built is not None:
        return built
    return pinned if adapter == "inprocess" else None  # inprocess reports the pin then


def _built_digest(spec: ProcessorSpec) -> str | None:
    """The digest the local adapter hands an already built image: its manifest digest when
    the registry pins this very source (a pinned run), else the image's id."""
    try:
        import docker
        from docker.errors import DockerException

        from pytest_theory.images import build, context

        client = docker.from_env()
        source_hash = context.source_hash(spec)
        tag = build.content_tag(spec, source_hash)
        try:
            image = client.images.get(tag)
            built = build.ResolvedImage(tag, normalize_digest(image.id), source_hash)
            return build.as_pinned_run(spec, built, client).digest
        except DockerException:
            return None
    except Exception:  # no engine here, or the source cannot be read: not known
        return None
