"""Building processor images once per content hash, and finding pinned ones.

Tags are ``pytest-theory/<ns>-<name>:v<version>-<source hash>``. A build whose
tag exists is a lookup; otherwise the base image and the wheels are made
ready and the context is streamed to the engine. No build-time labels: the
legacy builder pays a container commit (seconds) for each, and the tag already
names the source. An image's digest is its manifest digest in the pin's registry
once pushed there (``theory-images pin``), else its id.

A run is *pinned* when the build mode is ``never`` (the pin is pulled by digest) or
when the registry pins this platform from the very source being built: then the
envelope must report the pin's digest (``ResolvedImage.expected_digest``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import docker
from docker.errors import APIError, ImageNotFound

from pytest_theory.contracts.digests import normalize_digest, repository_of
from pytest_theory.images import base, context, locks
from pytest_theory.images.cache import exclusive
from pytest_theory.registry import ProcessorSpec, host_platform

REPOSITORY_PREFIX = "pytest-theory/"
BUILD_MODES = ("auto", "always", "never")
#: Called with a line per build step (and one when a build ends), so a first build, which
#: takes a minute, is not silent: ``theory build`` prints them, the plugin shows them live.
PROGRESS: list[Callable[[str], None]] = []


def _announce(line: str) -> None:
    for listener in list(PROGRESS):
        listener(line)


class ImageBuildError(RuntimeError):
    """The Docker build failed; the message ends with the build's last lines."""


class ImageUnavailable(LookupError):
    """No image for the pin, and none may be built."""


@dataclass(frozen=True)
class ResolvedImage:
    reference: str  # what to run: a tag or an image id
    digest: str  # sha256:<hex>, what the processor must report as IMAGE_DIGEST
    source_hash: str | None
    built: bool = False
    pin: str | None = None  # the registry pin this run must match, when the run is pinned
    #: Which base a build used (python:3.11-slim or the local stand-in), for the build output.
    base: str = ""

    @property
    def expected_digest(self) -> str:
        """What the processor's envelopes must report: the pin when pinned, else the image."""
        return normalize_digest(self.pin) if self.pin else self.digest


def repository(spec: ProcessorSpec) -> str:
    return f"{REPOSITORY_PREFIX}{spec.ref.ns}-{spec.ref.name}".replace("_", "-")


def content_tag(spec: ProcessorSpec, source_hash: str | None = None) -> str:
    source_hash = source_hash or context.source_hash(spec)
    return f"{repository(spec)}:v{spec.ref.version}-{source_hash[3:19]}"


def build_image(
    spec: ProcessorSpec, client: docker.DockerClient, *, force: bool = False
) -> ResolvedImage:
    """The image for the processor's current source, building it only when its tag is missing.

    ``force`` builds from nothing: even when the tag exists, and without the layer cache.
    A stale ``requirements.lock`` is refused first, naming the command that fixes it.
    """
    try:
        locks.check_lock(spec.build_context, str(spec.ref))
    except locks.StaleLock as exc:
        raise ImageBuildError(str(exc)) from None
    source_hash = context.source_hash(spec)
    tag = content_tag(spec, source_hash)
    with exclusive(tag):
        if not force:
            try:
                image = client.images.get(tag)
                return ResolvedImage(tag, normalize_digest(image.id), source_hash)
            except ImageNotFound:
                pass
        started = time.monotonic()
        _announce(f"building {spec.ref} ({tag}): the first build of a processor takes a minute")
        base_tag = base.ensure_base_image(client)
        with tempfile.TemporaryFile() as tar:
            context.write_context_tar(spec, tar, host_platform())
            tar.seek(0)
            log: list[str] = [base.describe(base_tag)]
            try:
                for chunk in client.api.build(
                    fileobj=tar,
                    custom_context=True,
                    tag=tag,
                    rm=True,
                    forcerm=True,
                    nocache=force,
                    dockerfile=spec.build["dockerfile"],
                    buildargs={"BASE_IMAGE": base_tag},
                    decode=True,
                ):
                    if "stream" in chunk:
                        lines = chunk["stream"].splitlines()
                        log.extend(lines)
                        for line in lines:
                            if line.startswith("Step "):
                                _announce(f"building {spec.ref}: {line[:100]}")
                    if "error" in chunk:
                        log.append(chunk["error"])
                        raise ImageBuildError(
                            f"building {spec.ref} failed:\n" + "\n".join(log[-30:])
                        )
            except APIError as exc:
                raise ImageBuildError(
                    f"building {spec.ref} failed: {exc.explanation}\n{log[0]}"
                ) from None
        image = client.images.get(tag)
    used = base.describe(base_tag)
    _announce(f"built {spec.ref} in {time.monotonic() - started:.0f}s on {used}")
    return ResolvedImage(tag, normalize_digest(image.id), source_hash, built=True, base=used)


def find_pinned(
    spec: ProcessorSpec, client: docker.DockerClient, platform: str | None = None
) -> ResolvedImage:
    """The pinned image, present locally (by repo digest or image id) or pulled."""
    pin = spec.pinned_image(platform)
    if not pin:
        raise ImageUnavailable(f"{spec.ref}: no pinned image for {platform or host_platform()}")
    digest = normalize_digest(pin)
    for reference in (pin, digest):
        try:
            image = client.images.get(reference)
            return ResolvedImage(image.id, digest, None, pin=pin)
        except (ImageNotFound, APIError):
            continue
    try:
        image = client.images.pull(pin)
    except (ImageNotFound, APIError) as exc:
        raise ImageUnavailable(
            f"{spec.ref}: pinned image {pin} is not here and cannot be pulled "
            f"({getattr(exc, 'explanation', exc)})"
        ) from None
    return ResolvedImage(image.id, digest, None, pin=pin)


def registry_digest(image: docker.models.images.Image, repository: str) -> str | None:
    """The manifest digest ``image`` has in ``repository`` (after a push or a pull), if any."""
    for reference in image.attrs.get("RepoDigests") or []:
        repo, _, digest = reference.rpartition("@")
        if repo == repository:
            return normalize_digest(digest)
    return None


def as_pinned_run(
    spec: ProcessorSpec, image: ResolvedImage, client: docker.DockerClient
) -> ResolvedImage:
    """``image`` (built from source) as a pinned run when the registry pins this platform
    from that same source: its digest is then its manifest digest in the pin's repository."""
    pin = spec.pins.get(host_platform())
    if not pin or not image.source_hash or spec.source_hash != image.source_hash:
        return image  # unpinned, or pinned from other source: the run is the build's own
    local = client.images.get(image.reference)
    digest = registry_digest(local, repository_of(pin)) or image.digest
    return replace(image, digest=digest, pin=pin)


def resolve_image(
    spec: ProcessorSpec, client: docker.DockerClient, build: str = "auto"
) -> ResolvedImage:
    """The image to run: ``auto`` builds from source when needed (once per content hash),
    ``always`` rebuilds, ``never`` uses the registry pin only."""
    if build not in BUILD_MODES:
        raise ValueError(f"build must be one of {BUILD_MODES}")
    if build == "never":
        return find_pinned(spec, client)
    return as_pinned_run(spec, build_image(spec, client, force=build == "always"), client)
