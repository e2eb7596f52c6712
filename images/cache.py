"""Where pytest-theory caches base-image tarballs and wheels, and a cross-process lock."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE_ENV = "THEORY_CACHE_DIR"


def cache_dir(*parts: str) -> Path:
    """``$THEORY_CACHE_DIR`` or ``~/.cache/pytest-theory``, joined with ``parts`` and created."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pytest-theory"
    )
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Serialise work on ``name`` across processes (xdist workers, parallel CI jobs)."""
    lock_path = cache_dir("locks") / f"{name.replace('/', '_').replace(':', '_')}.lock"
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
