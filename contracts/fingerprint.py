"""The environment fingerprint every envelope and receipt carries.

A deterministic summary of what the processor runs with: the declared runtime
resources and the *names* of the secrets present (never their values). Two runs
of the same image with the same configuration have the same fingerprint,
whether they run in a container or in-process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def env_fingerprint(runtime: Mapping[str, Any], secrets_present: Iterable[str]) -> str:
    """``cpu=1;memory_gb=2;gpu=none;secrets=A,B``."""
    gpu = runtime.get("gpu") or "none"
    names = ",".join(sorted(set(secrets_present))) or "none"
    return f"cpu={runtime['cpu']};memory_gb={runtime['memory_gb']};gpu={gpu};secrets={names}"
