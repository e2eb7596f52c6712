"""Image digests: ``sha256:x`` and ``repo@sha256:x`` name the same image.

Without a registry (images built on this machine) an image's digest is its
image id, the sha256 of its config; with a registry it is the manifest digest
Docker records in ``RepoDigests``. Both normalise the same way.
"""

from __future__ import annotations

import re

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
PINNED_REF_RE = re.compile(r"^(?P<repo>[a-z0-9][a-z0-9._/:-]*)@(?P<digest>sha256:[0-9a-f]{64})$")


def normalize_digest(value: str) -> str:
    """``sha256:<hex>`` from ``sha256:<hex>``, ``repo@sha256:<hex>``, ``repo:tag@sha256:<hex>``."""
    if not isinstance(value, str):
        raise ValueError("a digest must be a string")
    digest = value.rsplit("@", 1)[-1].strip().lower()
    if not DIGEST_RE.match(digest):
        raise ValueError(f"not an image digest: {value!r}")
    return digest


def digests_equal(a: str, b: str) -> bool:
    """True when both name the same digest; False when either is not a digest."""
    try:
        return normalize_digest(a) == normalize_digest(b)
    except ValueError:
        return False


def is_pinned(reference: str) -> bool:
    """True for ``repo@sha256:<64 hex>``: a reference that cannot move."""
    return PINNED_REF_RE.match(reference) is not None


def repository_of(reference: str) -> str:
    """The repository part of ``repo[:tag]@sha256:…``."""
    match = PINNED_REF_RE.match(reference)
    if not match:
        raise ValueError(f"not a pinned reference: {reference!r}")
    return match.group("repo")
