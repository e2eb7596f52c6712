"""Editing one top-level block of a registry.yaml as text, so every other line and comment survives."""

from __future__ import annotations

from typing import Any

import yaml


def replace_top_level_block(text: str, key: str, value: Any) -> str:
    """``text`` with the ``key:`` block replaced by ``value`` dumped as YAML."""
    block = yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=False)
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#"):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # keep the blank line that separates blocks
    return "".join(lines[:start]) + block + "".join(lines[end:])


def without_pins(text: str) -> str:
    """The registry.yaml text with its ``image`` block reduced to no pins: what an image is built from."""
    image = yaml.safe_load(text)["image"]
    return replace_top_level_block(
        text, "image", {"platforms": {}, "default_platform": image["default_platform"]}
    )
