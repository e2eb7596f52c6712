"""Generated cases: drawn once per schema, kept in pytest's cache, replayed exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _pytest.cacheprovider import Cache

from pytest_theory.adapters.inprocess import InprocessAdapter
from pytest_theory.fuzz import cached_cases, check_run_answer, fuzz_endpoint, property_run
from pytest_theory.registry import Registry

INPUTS_SCHEMA = {
    "type": "object",
    "required": ["n"],
    "properties": {"n": {"type": "integer"}, "s": {"type": "string"}},
}


@pytest.fixture
def cache(pytestconfig: pytest.Config, tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache", pytestconfig, _ispytest=True)


def test_cases_are_drawn_once_per_material(cache: Cache) -> None:
    calls: list[int] = []

    def generate() -> list[Any]:
        calls.append(1)
        return [{"n": len(calls)}]

    first = cached_cases(cache, "inputs", ["schema-a", 20], generate)
    again = cached_cases(cache, "inputs", ["schema-a", 20], generate)
    other = cached_cases(cache, "inputs", ["schema-b", 20], generate)
    assert first == again == [{"n": 1}]
    assert other == [{"n": 2}]
    assert len(calls) == 2


def test_without_a_cache_cases_are_drawn_every_time() -> None:
    calls: list[int] = []
    for _ in range(2):
        cached_cases(None, "inputs", ["schema-a", 20], lambda: calls.append(1) or [])
    assert len(calls) == 2


def test_replayed_inputs_are_the_ones_a_fresh_draw_gives(cache: Cache) -> None:
    """Generation is derandomized, so the cache changes the speed and never the cases."""
    fresh: list[Any] = []
    property_run(INPUTS_SCHEMA, 30, fresh.append)
    cached: list[Any] = []
    property_run(INPUTS_SCHEMA, 30, cached.append, cache)
    replayed: list[Any] = []
    property_run(INPUTS_SCHEMA, 30, replayed.append, cache)
    assert len(fresh) >= 20
    assert fresh == cached == replayed


def test_fuzzing_replays_the_same_requests_from_the_cache(cache: Cache, tmp_path: Path) -> None:
    adapter = InprocessAdapter(world_root=tmp_path / "world")
    try:
        handle = adapter.acquire(Registry.discover().get_spec("llm/litellm@1"))
        seen: list[tuple[Any, str | None]] = []

        def record(case: Any, response: Any) -> None:
            check_run_answer(case, response)
            seen.append((case.body, case.media_type))

        drawn = fuzz_endpoint(handle, "POST", "/run", 15, record, cache)
        replayed = fuzz_endpoint(handle, "POST", "/run", 15, record, cache)
    finally:
        adapter.close()
    assert drawn == replayed >= 10
    assert seen[:drawn] == seen[drawn:]
    assert any(media != "application/json" or not isinstance(body, dict) for body, media in seen), (
        "no negative case was drawn"
    )
