"""Locks you can trust: ``requirements.lock`` records a hash of the ``requirements.in`` it came from.

A lock whose recorded hash is not the hash of today's ``requirements.in`` (or
that records none) is stale: a build from it would install yesterday's closure,
and the image would fail at import time, once per check. The plugin and
``theory build`` refuse it once, up front, with the command that fixes it.

Re-locking resolves with the old lock as constraints, so pins move only when
the new requirements force them to.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pytest_theory.contracts.hashing import cid_of_bytes
from pytest_theory.images import wheels
from pytest_theory.images.wheels import Pin, WheelhouseError, normalize_name

IN_NAME = "requirements.in"
LOCK_NAME = "requirements.lock"
#: The lock's header line that records the hash of requirements.in.
HASH_PREFIX = "# requirements.in: "
_INCLUDE = re.compile(r"^(?:-r|--requirement)[=\s]\s*(\S+)$")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


class StaleLock(RuntimeError):
    """requirements.lock does not come from requirements.in as it is now."""


def requirement_lines(requirements_in: Path, *, follow: bool = False) -> list[str]:
    """The requirement lines of ``requirements_in``, comments and blank lines dropped (editing a
    comment does not stale a lock); ``-r`` includes expanded when ``follow`` (and present)."""
    lines: list[str] = []
    for raw in requirements_in.read_text("utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        include = _INCLUDE.match(line)
        target = requirements_in.parent / include[1] if include else None
        if follow and target is not None and target.exists():
            lines.extend(requirement_lines(target, follow=True))
        else:
            lines.append(line)
    return lines


def requirements_hash(requirements_in: Path) -> str:
    """``b3:`` id of the file's own requirement lines.

    An ``-r`` include counts as its line, not its content: a processor folder copied
    elsewhere keeps a valid lock; re-lock by hand after editing an included file.
    """
    return cid_of_bytes("\n".join(requirement_lines(requirements_in)).encode())


def recorded_hash(lock: Path) -> str | None:
    for line in lock.read_text("utf-8").splitlines():
        if line.startswith(HASH_PREFIX):
            return line.removeprefix(HASH_PREFIX).strip()
    return None


def lock_command(ref: str, registry: Path | None = None) -> str:
    """The command that re-locks ``ref`` (``--registry`` when the ini file does not name its root)."""
    option = f" --registry {shlex.quote(str(registry))}" if registry is not None else ""
    return f"theory lock{option} {ref}"


def stale_reason(folder: Path) -> str | None:
    """Why the lock in ``folder`` cannot be trusted, or None when it can (or nothing is locked)."""
    requirements_in, lock = folder / IN_NAME, folder / LOCK_NAME
    if not requirements_in.exists():
        return None  # a hand-written lock: nothing to compare it with
    if not lock.exists():
        return f"{folder / LOCK_NAME} is missing"
    recorded = recorded_hash(lock)
    if recorded is None:
        return f"{lock} records no hash of {IN_NAME}"
    current = requirements_hash(requirements_in)
    if recorded != current:
        return (
            f"{lock} is stale: {IN_NAME} changed since it was locked "
            f"(locked from {recorded[:15]}…, now {current[:15]}…)"
        )
    return None


def check_lock(folder: Path, ref: str, registry: Path | None = None) -> None:
    """``StaleLock`` naming the command that fixes it, when the lock in ``folder`` is stale."""
    reason = stale_reason(folder)
    if reason:
        raise StaleLock(f"{ref}: {reason}; run `{lock_command(ref, registry)}`")


@dataclass(frozen=True)
class Relocked:
    pins: list[Pin]
    moved: list[str]  # "name old -> new", for pins that had to move
    added: list[str]
    removed: list[str]


def _direct_names(requirements_in: Path) -> set[str]:
    names = set()
    for line in requirement_lines(requirements_in, follow=True):
        match = _NAME.match(line)
        if match and not line.startswith("-"):
            names.add(normalize_name(match[1]))
    return names


def relock(requirements_in: Path, platform: str = "amd64") -> Relocked:
    """Resolve ``requirements_in`` into the lock beside it, keeping its pins where they still fit.

    First with every old pin as a constraint; when that cannot resolve, without
    the pins of the packages ``requirements.in`` names itself (the ones its author
    changed); only then from nothing.
    """
    lock = requirements_in.with_name(LOCK_NAME)
    old = wheels.read_lock(lock) if lock.exists() else []
    direct = _direct_names(requirements_in)
    attempts = [old, [p for p in old if p.normalized not in direct], []]
    pins: list[Pin] | None = None
    error: WheelhouseError | None = None
    for constraints in dict.fromkeys(tuple(a) for a in attempts):
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as handle:
            handle.write("".join(f"{pin}\n" for pin in constraints))
            handle.flush()
            try:
                pins = wheels.resolve_lock(
                    requirements_in,
                    platform,
                    constraints=Path(handle.name) if constraints else None,
                )
                break
            except WheelhouseError as exc:
                error = exc
    if pins is None:
        assert error is not None
        raise error
    write_lock(lock, pins, requirements_hash(requirements_in))
    before = {p.normalized: p for p in old}
    after = {p.normalized: p for p in pins}
    return Relocked(
        pins,
        moved=[
            f"{after[n].name} {before[n].version} -> {after[n].version}"
            for n in sorted(before.keys() & after.keys())
            if before[n].version != after[n].version
        ],
        added=[str(after[n]) for n in sorted(after.keys() - before.keys())],
        removed=[str(before[n]) for n in sorted(before.keys() - after.keys())],
    )


def write_lock(path: Path, pins: list[Pin], in_hash: str) -> None:
    path.write_text(
        wheels.LOCK_HEADER + f"{HASH_PREFIX}{in_hash}\n" + "".join(f"{pin}\n" for pin in pins)
    )
