"""``--attach name=path``: files stored in the world, and ``{"$attach": name}`` rewritten to them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pytest_theory.contracts.hashing import cid_of_file
from pytest_theory.contracts.worldpath import canonicalize
from pytest_theory.django_project.apps.storage.store import ArtifactRef, ArtifactStore, guess_mime

NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class AttachmentError(ValueError):
    pass


def world_path_for(file: Path, cid: str) -> str:
    """``/artifacts/inputs/<cid hex>/<file name>``; ``AttachmentError`` when the file's name
    is not a world path segment as it stands (``%``-escapes, control characters, ...)."""
    path = f"/artifacts/inputs/{cid[3:]}/{file.name}"
    try:
        canonical = canonicalize(path)
    except ValueError as exc:
        raise AttachmentError(f"attachment file name {file.name!r}: {exc}") from None
    if canonical != path:
        raise AttachmentError(
            f"attachment file name {file.name!r} is not a plain world path segment "
            "(it would be stored as another name): rename the file"
        )
    return path


def parse_attach(values: list[str]) -> dict[str, Path]:
    """``["image=photo.jpg", ...]`` -> ``{"image": Path("photo.jpg")}``, checking each file exists."""
    attachments: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise AttachmentError(f"--attach {value!r}: expected name=path")
        if not NAME_RE.fullmatch(name):
            raise AttachmentError(f"--attach {name!r}: a name is 1-64 of A-Z a-z 0-9 _ . -")
        if name in attachments:
            raise AttachmentError(f"--attach {name}: given twice")
        file = Path(path).expanduser()
        if not file.is_file():
            raise AttachmentError(f"--attach {name}: attachment file not found: {path}")
        world_path_for(file, "b3:" + "0" * 64)  # the name alone decides: checked before hashing
        attachments[name] = file
    return attachments


def planned(attachments: dict[str, Path]) -> dict[str, ArtifactRef]:
    """Where ``store_attachments`` will put each file, without storing it (to check inputs)."""
    refs = {}
    for name, file in attachments.items():
        cid, size = cid_of_file(file)
        refs[name] = ArtifactRef(world_path_for(file, cid), cid, size, guess_mime(file.name))
    return refs


def store_attachments(store: ArtifactStore, attachments: dict[str, Path]) -> dict[str, ArtifactRef]:
    """Each file at ``/artifacts/inputs/<cid>/<file name>``: the same bytes always land in one place."""
    stored = {}
    for name, file in attachments.items():
        cid, _ = cid_of_file(file)
        stored[name] = store.put_file(world_path_for(file, cid), file, mime=guess_mime(file.name))
    return stored


def referenced(value: Any) -> set[str]:
    """The attachment names ``{"$attach": name}`` references in ``value``."""
    if isinstance(value, dict):
        if set(value) == {"$attach"}:
            return {str(value["$attach"])}
        return set().union(*(referenced(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(referenced(v) for v in value)) if value else set()
    return set()


def rewrite(value: Any, stored: dict[str, ArtifactRef]) -> Any:
    """Every ``{"$attach": name}`` becomes ``{"$artifact": path, "cid": ..., "mime": ...}``."""
    if isinstance(value, dict):
        if set(value) == {"$attach"}:
            name = value["$attach"]
            if name not in stored:
                raise AttachmentError(
                    f"--inputs-json refers to attachment {name!r}, but no --attach {name}=PATH was given"
                )
            ref = stored[name]
            return {"$artifact": ref.path, "cid": ref.cid, "mime": ref.mime}
        return {k: rewrite(v, stored) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite(v, stored) for v in value]
    return value
