"""Pins: push a processor's image to a registry, record the pushed digest, check it.

A pin is ``<repository>@sha256:<manifest digest>`` per platform plus
``image.source_hash``, the content hash of the build context it was built from.
``pin`` builds (a lookup when nothing changed), pushes the image to
``<repository>:v<N>-<source hash>-<platform>`` and records the digest the
registry answered. The repository is ``<prefix>/<ns>-<name>``; the prefix is a
``--repository`` flag, ``$THEORY_IMAGE_REPOSITORY``, the ini setting
``theory_image_repository``, or the loopback registry ``localhost:5055/pytest-theory``
(``scripts/registry``). A GHCR-style prefix (``ghcr.io/owner/repo``) gives the
seeds' repo-scoped names.

Checking a pin, offline: the source still hashes to ``source_hash``. Online
(through the Docker engine, so its credentials and insecure-registry rules hold):
the pin resolves in its registry, and the tag pushed for the current source names
the same digest, so the pinned image is the one built from this source.
"""

from __future__ import annotations

import configparser
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException

from pytest_theory.contracts.digests import normalize_digest, repository_of
from pytest_theory.contracts.errors import ErrorCode
from pytest_theory.images import context
from pytest_theory.images.build import ResolvedImage, build_image, repository
from pytest_theory.registry import ProcessorSpec, host_platform, load_spec
from pytest_theory.registry.yamltext import replace_top_level_block

REPOSITORY_ENV = "THEORY_IMAGE_REPOSITORY"
REGISTRY_PORT_ENV = "THEORY_REGISTRY_PORT"
INI_KEY = "theory_image_repository"
DEFAULT_PORT = 5055


class PushError(RuntimeError):
    """The registry refused the push or could not be reached."""


@dataclass(frozen=True)
class PinStatus:
    ref: str
    current: bool
    reason: str
    code: str | None = None  # the canonical error code when not current


@dataclass(frozen=True)
class Pinned:
    """What ``pin_processor`` did: the image, the pin recorded, the spec as now on disk."""

    spec: ProcessorSpec
    image: ResolvedImage
    pin: str


# -- where pins go ----------------------------------------------------------------------------


def loopback_repository() -> str:
    """The default prefix: the loopback registry that ``scripts/registry`` runs."""
    return f"localhost:{os.environ.get(REGISTRY_PORT_ENV) or DEFAULT_PORT}/pytest-theory"


def _ini_files(start: Path) -> Iterator[tuple[Path, str]]:
    for folder in (start, *start.parents):
        yield from (
            (folder / "pytest.ini", "pytest"),
            (folder / "pyproject.toml", ""),
            (folder / "tox.ini", "pytest"),
            (folder / "setup.cfg", "tool:pytest"),
        )


def ini_repository(start: Path | None = None) -> str | None:
    """``theory_image_repository`` from the pytest ini file pytest would read from ``start``."""
    for path, section in _ini_files((start or Path.cwd()).resolve()):
        if not path.is_file():
            continue
        if path.suffix == ".toml":
            options = tomllib.loads(path.read_text("utf-8"))
            options = options.get("tool", {}).get("pytest", {}).get("ini_options")
            if options is None:
                continue
            value = options.get(INI_KEY)
        else:
            parser = configparser.ConfigParser(interpolation=None)
            parser.read(path, encoding="utf-8")
            if not parser.has_section(section) and path.name != "pytest.ini":
                continue
            value = parser.get(section, INI_KEY, fallback=None)
        return str(value).strip() if value else None  # the first config file wins, as in pytest
    return None


def names_registry_host(repository: str) -> bool:
    """Docker's rule: a first component with a dot or a port, or ``localhost``, is a host."""
    host = repository.split("/", 1)[0]
    return "/" in repository and ("." in host or ":" in host or host == "localhost")


def repository_prefix(explicit: str | None = None) -> str:
    """The repository prefix pins go to: flag, environment, ini, else the loopback registry."""
    prefix = explicit or os.environ.get(REPOSITORY_ENV) or ini_repository()
    prefix = (prefix or loopback_repository()).strip().rstrip("/")
    if "/" not in prefix or not names_registry_host(prefix):
        raise ValueError(
            f"image repository {prefix!r} names no registry host: "
            "give one like localhost:5055/pytest-theory or ghcr.io/owner/repo"
        )
    return prefix


def image_repository(spec: ProcessorSpec, prefix: str | None = None) -> str:
    """``<prefix>/<ns>-<name>``, e.g. ``ghcr.io/owner/repo/llm-litellm``."""
    name = f"{spec.ref.ns}-{spec.ref.name}".replace("_", "-")
    return f"{repository_prefix(prefix)}/{name}"


def push_tag(spec: ProcessorSpec, source_hash: str, platform: str) -> str:
    """The tag a push carries: the version, the source and the platform it was built for."""
    return f"v{spec.ref.version}-{source_hash[3:19]}-{platform}"


# -- push and pin ---------------------------------------------------------------------------


def push_image(
    spec: ProcessorSpec,
    image: ResolvedImage,
    client: docker.DockerClient,
    *,
    prefix: str | None = None,
    platform: str | None = None,
) -> str:
    """Push ``image`` and return the pinned reference ``<repository>@sha256:<manifest digest>``."""
    platform = platform or host_platform()
    repository = image_repository(spec, prefix)
    tag = push_tag(spec, image.source_hash or context.source_hash(spec), platform)
    client.images.get(image.reference).tag(repository, tag)
    digest = None
    try:
        for chunk in client.images.push(repository, tag, stream=True, decode=True):
            if "error" in chunk:
                raise PushError(f"pushing {repository}:{tag} failed: {chunk['error']}")
            digest = chunk.get("aux", {}).get("Digest") or digest
    except (PushError, APIError) as exc:
        client.images.remove(f"{repository}:{tag}")  # the tag only: the image stays
        if isinstance(exc, PushError):
            raise
        raise PushError(f"pushing {repository}:{tag} failed: {exc.explanation}") from None
    if not digest:
        raise PushError(f"pushing {repository}:{tag}: the registry answered no digest")
    return f"{repository}@{normalize_digest(digest)}"


def write_pin(
    spec: ProcessorSpec,
    pin: str | ResolvedImage,
    platform: str | None = None,
    *,
    source_hash: str | None = None,
) -> ProcessorSpec:
    """Record ``pin`` for ``platform`` (default: this machine) in registry.yaml.

    Given a ``ResolvedImage`` rather than a pushed reference, the pin is local to this
    engine: ``pytest-theory/<ns>-<name>@<image id>`` (for machines without a registry).
    """
    platform = platform or host_platform()
    if isinstance(pin, ResolvedImage):
        source_hash = source_hash or pin.source_hash
        pin = f"{repository(spec)}@{pin.digest}"
    source_hash = source_hash or context.source_hash(spec)
    image_block: dict[str, Any] = dict(spec.data["image"])
    image_block["platforms"] = {**spec.pins, platform: pin}
    image_block["source_hash"] = source_hash
    path = Path(spec.path)
    path.write_text(replace_top_level_block(path.read_text("utf-8"), "image", image_block), "utf-8")
    return load_spec(path)


def pin_processor(
    spec: ProcessorSpec,
    client: docker.DockerClient,
    *,
    prefix: str | None = None,
    force: bool = False,
) -> Pinned:
    """Build (a lookup when nothing changed), push, and record the pushed digest."""
    image = build_image(spec, client, force=force)
    pin = push_image(spec, image, client, prefix=prefix)
    return Pinned(write_pin(spec, pin, source_hash=image.source_hash), image, pin)


# -- checking -------------------------------------------------------------------------------


def pin_status(spec: ProcessorSpec) -> PinStatus:
    """Offline: whether the registry's pins were built from the processor's current source."""
    ref = str(spec.ref)
    if not spec.pins:
        return PinStatus(ref, False, "not pinned: run `theory-images pin`", ErrorCode.ERR_REGISTRY)
    if not spec.source_hash:
        return PinStatus(
            ref,
            False,
            "image.source_hash is missing: run `theory-images pin`",
            ErrorCode.ERR_REGISTRY,
        )
    current = context.source_hash(spec)
    if current != spec.source_hash:
        return PinStatus(
            ref,
            False,
            f"stale: pinned from {spec.source_hash[:19]}…, source is now {current[:19]}…; "
            "run `theory-images pin`",
            ErrorCode.ERR_IMAGE_DIGEST_MISMATCH,
        )
    return PinStatus(ref, True, f"current ({spec.source_hash[:19]}…)")


def _registry_digest(client: docker.DockerClient, reference: str) -> str | None:
    """The digest ``reference`` resolves to in its registry; None when it does not resolve."""
    try:
        return normalize_digest(client.images.get_registry_data(reference).id)
    except APIError as exc:
        if exc.status_code in (401, 403, 404) or "manifest unknown" in str(exc):
            return None
        raise


def verify_pin(
    spec: ProcessorSpec, client: docker.DockerClient, platform: str | None = None
) -> PinStatus:
    """Offline check, then: the pin resolves, and the tag pushed for this source is the pin."""
    status = pin_status(spec)
    platform = platform or host_platform()
    pin = spec.pins.get(platform)
    if not status.current:
        return status
    if pin is None:
        return PinStatus(status.ref, False, f"no pin for {platform}", ErrorCode.ERR_REGISTRY)
    assert spec.source_hash  # pin_status said current
    ref, repository = status.ref, repository_of(pin)
    if not names_registry_host(repository):  # a local pin: an image id on this engine only
        try:
            client.images.get(normalize_digest(pin))
        except DockerException:
            return PinStatus(
                ref,
                False,
                f"local pin {pin} is not on this engine",
                ErrorCode.ERR_IMAGE_UNAVAILABLE,
            )
        return PinStatus(ref, True, f"current, a local pin on this engine ({pin})")
    tagged = f"{repository}:{push_tag(spec, spec.source_hash, platform)}"
    try:
        resolved = _registry_digest(client, pin)
        built = _registry_digest(client, tagged)
    except DockerException as exc:
        hint = "; is it running? scripts/registry start" if "localhost:" in repository else ""
        return PinStatus(
            ref, False, f"cannot ask the registry ({exc}){hint}", ErrorCode.ERR_REGISTRY
        )
    if built is not None and built != normalize_digest(pin):
        gone = "" if resolved else " (which does not resolve)"
        return PinStatus(
            ref,
            False,
            f"pin {pin}{gone} is not what this source pushed: {tagged} is {built}",
            ErrorCode.ERR_IMAGE_DIGEST_MISMATCH,
        )
    if resolved is None:
        return PinStatus(
            ref,
            False,
            f"pin {pin} does not resolve in its registry",
            ErrorCode.ERR_IMAGE_UNAVAILABLE,
        )
    if built is None:
        return PinStatus(
            ref,
            False,
            f"pin {pin} resolves, but {tagged} (this source's push) does not: "
            "run `theory-images pin`",
            ErrorCode.ERR_IMAGE_UNAVAILABLE,
        )
    return PinStatus(ref, True, f"current and resolves ({pin})")
