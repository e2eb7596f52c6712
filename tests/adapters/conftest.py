from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_theory.adapters import invoke_kwargs
from pytest_theory.registry import Registry
from tests.conftest import FIXTURES, llm_inputs


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry.discover([FIXTURES / "faults"])


@pytest.fixture
def call(registry: Registry, tmp_path: Path) -> Any:
    """``call(adapter, ref, **overrides)``: one invoke with sensible defaults."""

    def invoke(adapter: Any, ref: str = "llm/litellm@1", **overrides: Any) -> dict[str, Any]:
        spec = registry.get_spec(ref)
        inputs = llm_inputs() if ref == "llm/litellm@1" else {"schema": "v1", "params": {}}
        kwargs = invoke_kwargs(
            spec,
            execution_id="e-1",
            inputs=inputs,
            adapter_opts={"world_root": str(tmp_path / "world")},
            secrets_present=[],
        )
        kwargs.update(overrides)
        envelope: dict[str, Any] = adapter.invoke(**kwargs)
        return envelope

    return invoke


def chaos(behave: str) -> dict[str, Any]:
    return {"schema": "v1", "params": {"behave": behave}}
