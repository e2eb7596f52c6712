"""Processor images on a machine that cannot pull: base image, wheels, builds, pins.

The command line is ``theory`` (``pytest_theory.cli``; ``theory-images`` is the same).
"""

from pytest_theory.images.build import (
    BUILD_MODES,
    ImageBuildError,
    ImageUnavailable,
    ResolvedImage,
    build_image,
    content_tag,
    find_pinned,
    resolve_image,
)
from pytest_theory.images.context import source_hash
from pytest_theory.images.pins import (
    PinStatus,
    PushError,
    pin_processor,
    pin_status,
    push_image,
    verify_pin,
    write_pin,
)

__all__ = [
    "BUILD_MODES",
    "ImageBuildError",
    "ImageUnavailable",
    "PinStatus",
    "PushError",
    "ResolvedImage",
    "build_image",
    "content_tag",
    "find_pinned",
    "pin_processor",
    "pin_status",
    "push_image",
    "resolve_image",
    "source_hash",
    "verify_pin",
    "write_pin",
]
