"""Building processor images once per content hash, and finding pinned ones.

Tags are ``pytest-theory/<ns>-<name>:v<version>-<source hash>``. A build whose
tag exists is a lookup; otherwise the base image and the wheels are made
ready and the context is streamed to the engine. No build-time labels: the
legacy builder pays a container commit (seconds) for each, and the tag already
names the source. Without a registry, an image's digest is its id.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import docker
from docker.errors import APIError, ImageNotFound

from pytest_theory.contracts.digests import normalize_digest
from pytest_theory.images import base, context
from pytest_theory.images.cache import exclusive
from pytest_theory.registry import ProcessorSpec, host_platform

REPOSITORY_PREFIX = "pytest-theory/"
BUILD_MODES = ("auto", "always", "never")


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
    #: Which base a build used (python:3.11-slim or the local stand-in), for the build output.
    base: str = ""


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
    """
    source_hash = context.source_hash(spec)
    tag = content_tag(spec, source_hash)
    with exclusive(tag):
        if not force:
            try:
                image = client.images.get(tag)
                return ResolvedImage(tag, normalize_digest(image.id), source_hash)
            except ImageNotFound:
                pass
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
                        log.extend(chunk["stream"].splitlines())
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
    return ResolvedImage(
        tag, normalize_digest(image.id), source_hash, built=True, base=base.describe(base_tag)
    )


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
            return ResolvedImage(image.id, digest, None)
        except (ImageNotFound, APIError):
            continue
    try:
        image = client.images.pull(pin)
    except (ImageNotFound, APIError) as exc:
        raise ImageUnavailable(
            f"{spec.ref}: pinned image {pin} is not here and cannot be pulled "
            f"({getattr(exc, 'explanation', exc)})"
        ) from None
    return ResolvedImage(image.id, digest, None)


def resolve_image(
    spec: ProcessorSpec, client: docker.DockerClient, build: str = "auto"
) -> ResolvedImage:
    """The image to run: ``auto`` builds from source when needed (once per content hash),
    ``always`` rebuilds, ``never`` uses the registry pin only."""
    if build not in BUILD_MODES:
        raise ValueError(f"build must be one of {BUILD_MODES}")
    if build == "never":
        return find_pinned(spec, client)
    return build_image(spec, client, force=build == "always")
