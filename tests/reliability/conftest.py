"""Processors to hammer: one container and one in-process app per ref, each with its own world.

Booted once per module through the real adapters, removed at the end (also on
failure or Ctrl-C: the adapters' own cleanup).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.adapters import InprocessAdapter, LocalAdapter
from pytest_theory.adapters.base import ProcessorHandle
from pytest_theory.registry import ProcessorSpec, Registry

REGISTRY = Registry.discover()
REFS = ["llm/litellm@1", "replicate/generic@1"]
INPUTS: dict[str, dict[str, Any]] = {
    "llm/litellm@1": {
        "schema": "v1",
        "params": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
    },
    "replicate/generic@1": {
        "schema": "v1",
        "params": {"model": "acme/painter", "input": {"prompt": "a cat"}},
    },
}


@dataclass
class Target:
    """A booted processor, the adapter that booted it and the world it writes to."""

    spec: ProcessorSpec
    adapter: Any
    handle: ProcessorHandle
    world: Path

    @property
    def inputs(self) -> dict[str, Any]:
        return INPUTS[str(self.spec.ref)]

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.world)) for p in self.world.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def local_adapter() -> Iterator[LocalAdapter]:
    adapter = LocalAdapter()
    yield adapter
    adapter.close()


@pytest.fixture(scope="module")
def inprocess_adapter() -> Iterator[InprocessAdapter]:
    adapter = InprocessAdapter()
    yield adapter
    adapter.close()


def boot(adapter: Any, ref: str, world: Path) -> Target:
    spec = REGISTRY.get_spec(ref)
    return Target(spec, adapter, adapter.acquire(spec, world_root=world), world)
