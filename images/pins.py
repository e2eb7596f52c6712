"""Recording image pins in registry.yaml, and telling when a pin is stale.

A pin is ``<repo>@sha256:<digest>`` per platform plus ``image.source_hash``,
the content hash of the build context it was built from. Image ids are not
reproducible across machines, so staleness is judged by the source: a pin is
stale when the processor's context no longer hashes to ``source_hash``. The
``image`` block itself is not part of the context (see ``context``), so
writing a pin never makes it stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_theory.images import context
from pytest_theory.images.build import ResolvedImage, repository
from pytest_theory.registry import ProcessorSpec, host_platform, load_spec
from pytest_theory.registry.yamltext import replace_top_level_block


@dataclass(frozen=True)
class PinStatus:
    ref: str
    current: bool
    reason: str


def pin_status(spec: ProcessorSpec) -> PinStatus:
    """Whether the registry's pins were built from the processor's current source."""
    ref = str(spec.ref)
    if not spec.pins:
        return PinStatus(ref, False, "not pinned: run `theory-images pin`")
    if not spec.source_hash:
        return PinStatus(ref, False, "image.source_hash is missing: run `theory-images pin`")
    current = context.source_hash(spec)
    if current != spec.source_hash:
        return PinStatus(
            ref,
            False,
            f"stale: pinned from {spec.source_hash[:19]}…, source is now {current[:19]}…; "
            "run `theory-images pin`",
        )
    return PinStatus(ref, True, f"current ({spec.source_hash[:19]}…)")


def write_pin(
    spec: ProcessorSpec, image: ResolvedImage, platform: str | None = None
) -> ProcessorSpec:
    """Record ``image`` as the pin for ``platform`` (default: this machine) in registry.yaml."""
    platform = platform or host_platform()
    image_block: dict[str, Any] = dict(spec.data["image"])
    image_block["platforms"] = {**spec.pins, platform: f"{repository(spec)}@{image.digest}"}
    image_block["source_hash"] = image.source_hash or context.source_hash(spec)
    path = Path(spec.path)
    path.write_text(replace_top_level_block(path.read_text("utf-8"), "image", image_block), "utf-8")
    return load_spec(path)
