"""Waiting on a state, bounded: the one place the tests poll (a grep test keeps it so).

A test that needs a state the code under test reaches on its own (a container healthy, a
line logged, a server started) waits for that state here, never for a fixed time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.05


def wait_for(
    state: Callable[[], T], *, timeout_s: float, what: str | Callable[[], str] = "the state"
) -> T:
    """``state()``'s first truthy value, polled until ``timeout_s`` has passed; then an
    AssertionError naming ``what`` (a text, or a function giving one, e.g. a log tail)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = state()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"not reached within {timeout_s:g} s: {detail}")
        time.sleep(POLL_S)
