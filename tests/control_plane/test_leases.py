"""The LeaseManager façade: canonical selectors, segment-aware overlap, no-op while disabled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_theory.django_project.apps.leases.leases import (
    LeaseConflict,
    LeaseError,
    LeaseManager,
    canonicalize_selector,
    paths_overlap,
)

segment = st.sampled_from(["out", "frames", "foo", "foobar", "a", "b", "%41", "x y"])
paths = st.builds(
    lambda facet, parts: facet + "/" + "/".join(parts),
    st.sampled_from(["/artifacts", "/plan"]),
    st.lists(segment, min_size=1, max_size=4),
)


def test_the_seed_examples() -> None:
    assert paths_overlap("/artifacts/out", "/artifacts/out/frames")
    assert not paths_overlap("/artifacts/foo", "/artifacts/foobar")
    lm = LeaseManager(enabled=False)
    handle = lm.acquire("plan-123", [{"kind": "prefix", "path": "/artifacts/out/"}])
    with lm("plan-456", [{"kind": "exact", "path": "/artifacts/result.json"}]) as held:
        assert held.plan_id == "plan-456"
    handle.release()


@given(paths, paths)
def test_overlap_is_symmetric_and_segment_aware(a: str, b: str) -> None:
    assert paths_overlap(a, b) == paths_overlap(b, a)
    pa, pb = [p for p in a.split("/") if p], [p for p in b.split("/") if p]
    expected = pa[: len(pb)] == pb or pb[: len(pa)] == pa
    assert paths_overlap(a, b) == expected
    assert paths_overlap(a, a)


@given(paths, st.sampled_from(["exact", "prefix"]))
def test_canonical_selectors_are_idempotent(path: str, kind: str) -> None:
    raw = {"kind": kind, "path": path + ("/" if kind == "prefix" else "")}
    once = canonicalize_selector(raw)
    assert canonicalize_selector(once) == once
    assert once.path == once.path.replace("//", "/")


@pytest.mark.parametrize(
    "selector",
    [
        {"kind": "exact", "path": "/artifacts/out/"},
        {"kind": "prefix", "path": "/artifacts/out"},
        {"kind": "glob", "path": "/artifacts/*"},
        {"kind": "exact", "path": "/artifacts/../x"},
        {"kind": "exact", "path": "/etc/passwd"},
    ],
)
def test_bad_selectors_are_refused_even_while_disabled(selector: dict[str, str]) -> None:
    with pytest.raises(LeaseError):
        LeaseManager(enabled=False).acquire("p", [selector])


def test_disabled_leases_hold_nothing() -> None:
    lm = LeaseManager(enabled=False)
    lm.acquire("a", [{"kind": "prefix", "path": "/artifacts/out/"}])
    lm.acquire("b", [{"kind": "prefix", "path": "/artifacts/out/"}])  # no conflict: a façade
    assert lm.held() == []


@pytest.mark.django_db
def test_enabled_leases_conflict_across_plans_and_expire() -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    lm = LeaseManager(enabled=True, clock=lambda: now[0])
    with lm("a", [{"kind": "prefix", "path": "/artifacts/out/"}]):
        with pytest.raises(LeaseConflict):
            lm.acquire("b", [{"kind": "exact", "path": "/artifacts/out/frame.png"}])
        lm.acquire(
            "a", [{"kind": "exact", "path": "/artifacts/out/frame.png"}]
        ).release()  # same plan
        lm.acquire("b", [{"kind": "exact", "path": "/artifacts/outside.png"}]).release()
    lm.acquire("b", [{"kind": "prefix", "path": "/artifacts/out/"}], ttl_s=60)
    with pytest.raises(LeaseConflict):
        lm.acquire("c", [{"kind": "prefix", "path": "/artifacts/out/"}])
    now[0] += timedelta(seconds=61)  # the clock moves past the TTL: nothing sleeps
    lm.acquire("c", [{"kind": "prefix", "path": "/artifacts/out/"}])  # the expired lease is gone
    assert lm.held() == [("c", "prefix", "/artifacts/out/")]


def test_the_setting_switches_it_on(settings: object) -> None:
    settings.LEASES_ENABLED = True  # type: ignore[attr-defined]
    assert LeaseManager().enabled
    settings.LEASES_ENABLED = False  # type: ignore[attr-defined]
    assert not LeaseManager().enabled
