"""Writing a run into the artifact world: outputs, the index and the two receipts.

Nothing here follows a link. Every folder is opened one segment at a time from
the world's root with ``O_NOFOLLOW`` (``openat``-style, through folder file
descriptors), so a symbolic link planted anywhere on the way, dangling or not,
is refused instead of followed out of the prefix; there is no window between a
check and the write for a link to appear in.

A run is staged in a fresh folder under the world's root and committed by
renaming whole folders into place: the prefix ``P`` and
``/artifacts/execution/<id>/``. The commit happens only if the run's
``CommitGate`` is still open, so a run that answers ``ERR_TIMEOUT`` never
commits anything, and a failed run leaves neither files nor folders behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blake3 import blake3

from pytest_theory.contracts.errors import ContractError, ErrorCode
from pytest_theory.contracts.hashing import canonical_json, cid_of_bytes
from pytest_theory.contracts.worldpath import (
    WorldPathError,
    canonicalize,
    determinism_receipt_path,
    is_under,
)
from pytest_theory.processors.runtime.api import RunCancelled
from pytest_theory.processors.runtime.config import DEFAULT_MAX_ARTIFACT_BYTES

ARTIFACTS = "/artifacts"
STAGE_PREFIX = ".theory-stage-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_CHUNK = 1024 * 1024
#: Raised by ``open(..., O_NOFOLLOW|O_DIRECTORY)`` on a link, a file or a special file.
_NOT_A_FOLDER = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)


@dataclass(frozen=True)
class PlannedFile:
    world_path: str
    data: bytes


class CommitGate:
    """Decides, once, whether a run commits or is cancelled: never both."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "open"

    def claim(self) -> bool:
        """The run may commit now; False when it was cancelled first."""
        with self._lock:
            if self._state == "open":
                self._state = "committing"
            return self._state == "committing"

    def cancel(self) -> bool:
        """Cancel the run; False when its commit had already begun (it will finish)."""
        with self._lock:
            if self._state == "open":
                self._state = "cancelled"
            return self._state == "cancelled"


def _segments(world_path: str) -> list[str]:
    if not is_under(world_path, ARTIFACTS):
        raise WorldPathError(f"{world_path} is not under {ARTIFACTS}/")
    return world_path.removeprefix(ARTIFACTS + "/").rstrip("/").split("/")


def _refused(code: ErrorCode) -> ContractError:
    return ContractError(code, "the path crosses a symbolic link or a non-folder in the world")


class World:
    """The ``/artifacts`` facet of a world, rooted at ``root`` on this filesystem."""

    def __init__(self, root: str | Path, *, max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES):
        self.root = Path(root)
        self.max_artifact_bytes = max_artifact_bytes

    def host_path(self, world_path: str) -> Path:
        """Where canonical ``world_path`` (under ``/artifacts``) lives on disk (for reading only)."""
        return self.root.joinpath(*_segments(world_path))

    # -- folders, never through a link -------------------------------------------------

    @contextmanager
    def _folder(
        self,
        segments: list[str],
        *,
        create: bool,
        code: ErrorCode,
        created: list[str] | None = None,
    ) -> Iterator[int]:
        """A descriptor of the folder ``segments`` below the root, made when ``create``.

        A link or non-folder on the way raises ``ContractError(code)``; folders this
        call made are appended (as relative paths) to ``created``. Only the opening is
        judged: an error of the caller's own work inside the ``with`` passes unchanged.
        """
        fds = [os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
        try:
            try:
                for depth, name in enumerate(segments):
                    fd, made = _open_child(fds[-1], name, create=create)
                    fds.append(fd)
                    if made and created is not None:
                        created.append("/".join(segments[: depth + 1]))
            except OSError as exc:
                if exc.errno in _NOT_A_FOLDER or isinstance(exc, FileExistsError):
                    raise _refused(code) from None
                raise
            yield fds[-1]
        finally:
            for fd in fds:
                os.close(fd)

    def check_writable(self, world_path: str, code: ErrorCode = ErrorCode.ERR_WRITE_PREFIX) -> None:
        """Refuse early when an existing part of ``world_path`` is a link or not a folder."""
        segments = _segments(world_path)
        for depth in range(1, len(segments) + 1):
            try:
                st = os.lstat(self.root.joinpath(*segments[:depth]))
            except FileNotFoundError:
                return
            except OSError:
                raise _refused(code) from None
            if not stat.S_ISDIR(st.st_mode):
                raise _refused(code)

    def _remove_created(self, created: list[str]) -> None:
        """Remove the folders a failed commit made, deepest first, if still empty."""
        for relpath in reversed(created):
            *parents, name = relpath.split("/")
            with (
                suppress(OSError, ContractError),
                self._folder(parents, create=False, code=ErrorCode.ERR_INTERNAL) as fd,
            ):
                os.rmdir(name, dir_fd=fd)

    # -- reading $artifact inputs --------------------------------------------------------

    def read(self, world_path: str, cid: str | None = None) -> bytes:
        """A regular file under ``/artifacts`` (an attachment), read with a bounded size.

        ``ERR_INPUTS`` when absent, a link, a FIFO, a device, a folder, too large, or
        altered (its cid differs). Opened non-blocking, so a FIFO never holds a thread.
        """
        refused = ContractError(
            ErrorCode.ERR_INPUTS, "an $artifact is not a readable regular file under /artifacts"
        )
        try:
            *parents, name = _segments(canonicalize(world_path))
            with self._folder(parents, create=False, code=ErrorCode.ERR_INPUTS) as folder:
                fd = os.open(
                    name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder
                )
        except (ContractError, OSError):
            raise refused from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise refused
        with os.fdopen(fd, "rb") as f:
            limit = self.max_artifact_bytes
            if info.st_size > limit:
                raise ContractError(ErrorCode.ERR_INPUTS, f"an $artifact exceeds {limit} bytes")
            hasher, data = blake3(), bytearray()
            while chunk := f.read(_READ_CHUNK):
                data += chunk
                hasher.update(chunk)
                if len(data) > limit:  # grew since fstat
                    raise ContractError(ErrorCode.ERR_INPUTS, f"an $artifact exceeds {limit} bytes")
        if cid is not None and "b3:" + hasher.hexdigest() != cid:
            raise ContractError(ErrorCode.ERR_INPUTS, "an $artifact's bytes do not match its cid")
        return bytes(data)

    # -- committing a run ---------------------------------------------------------------

    def commit(
        self,
        files: list[PlannedFile],
        *,
        units: list[str],
        gate: CommitGate,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        """Stage ``files``, then, if ``gate`` lets it, rename each unit folder into place.

        ``units`` are world folders (``P``, ``/artifacts/execution/<id>/``) that hold
        every file; each replaces what was there. On any failure, or when the run was
        cancelled, nothing of this call stays in the world.
        """
        stage = STAGE_PREFIX + uuid.uuid4().hex
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        created: list[str] = []
        placed: list[_Placed] = []
        units = _outermost(units)
        try:
            os.mkdir(stage, dir_fd=root_fd)
            with self._folder([stage], create=False, code=ErrorCode.ERR_INTERNAL) as stage_fd:
                self._stage(stage_fd, files, units, cancelled)
                if not gate.claim():
                    raise RunCancelled()
                try:
                    self._place(stage_fd, units, created, placed)
                except BaseException:
                    self._unplace(stage_fd, placed)
                    self._remove_created(created)
                    raise
                finally:
                    for entry in placed:
                        os.close(entry.parent_fd)
        finally:
            with suppress(OSError):
                shutil.rmtree(stage, dir_fd=root_fd)
            os.close(root_fd)

    def _stage(
        self,
        stage_fd: int,
        files: list[PlannedFile],
        units: list[str],
        cancelled: Callable[[], bool],
    ) -> None:
        unit_segments = [_segments(u) for u in units]
        for i in range(len(units)):
            os.mkdir(f"u{i}", dir_fd=stage_fd)
        for planned in files:
            if cancelled():
                raise RunCancelled()
            segments = _segments(planned.world_path)
            unit = next(
                i
                for i, u in enumerate(unit_segments)
                if segments[: len(u)] == u and len(segments) > len(u)
            )
            *folders, name = [f"u{unit}", *segments[len(unit_segments[unit]) :]]
            with _folder_at(stage_fd, folders) as fd:
                out = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o666,
                    dir_fd=fd,
                )
                with os.fdopen(out, "wb") as f:
                    f.write(planned.data)

    def _place(
        self, stage_fd: int, units: list[str], created: list[str], placed: list[_Placed]
    ) -> None:
        for i, unit in enumerate(units):
            *parents, name = _segments(unit)
            with self._folder(
                parents, create=True, code=ErrorCode.ERR_WRITE_PREFIX, created=created
            ) as fd:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    # The usual case: one rename puts the whole folder in place.
                    os.rename(f"u{i}", name, src_dir_fd=stage_fd, dst_dir_fd=fd)
                    placed.append(_Placed(os.dup(fd), name, f"u{i}", None))
                    continue
            if not stat.S_ISDIR(st.st_mode):
                raise _refused(ErrorCode.ERR_WRITE_PREFIX)
            self._merge(stage_fd, i, _segments(unit), created, placed)

    def _merge(
        self,
        stage_fd: int,
        unit: int,
        segments: list[str],
        created: list[str],
        placed: list[_Placed],
    ) -> None:
        """Move the staged files of a folder that exists (a rerun) into it one by one."""
        for top, _dirs, names, top_fd in os.fwalk(f"u{unit}", dir_fd=stage_fd):
            relative = top.split("/")[1:]
            for name in names:
                with self._folder(
                    segments + relative,
                    create=True,
                    code=ErrorCode.ERR_WRITE_PREFIX,
                    created=created,
                ) as fd:
                    backup = None
                    with suppress(FileNotFoundError):
                        if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                            raise ContractError(
                                ErrorCode.ERR_INTERNAL, "a folder stands where a file must go"
                            )
                        backup = f"old-{len(placed)}"
                        os.rename(name, backup, src_dir_fd=fd, dst_dir_fd=stage_fd)
                    staged = f"moved-{len(placed)}"
                    os.rename(name, staged, src_dir_fd=top_fd, dst_dir_fd=stage_fd)
                    placed.append(_Placed(os.dup(fd), name, staged, backup))
                    os.rename(staged, name, src_dir_fd=stage_fd, dst_dir_fd=fd)

    def _unplace(self, stage_fd: int, placed: list[_Placed]) -> None:
        for entry in reversed(placed):
            with suppress(OSError):
                os.rename(entry.name, entry.staged, src_dir_fd=entry.parent_fd, dst_dir_fd=stage_fd)
            if entry.backup is not None:
                with suppress(OSError):
                    os.rename(
                        entry.backup, entry.name, src_dir_fd=stage_fd, dst_dir_fd=entry.parent_fd
                    )


@dataclass(frozen=True)
class _Placed:
    """A folder or file a commit renamed into place, and what it replaced (kept in the stage)."""

    parent_fd: int
    name: str
    staged: str
    backup: str | None


def _outermost(units: list[str]) -> list[str]:
    """``units`` without those inside (or equal to) another: each file has one unit."""
    kept: list[str] = []
    for unit in sorted(set(units), key=len):
        if not any(unit.startswith(k) for k in kept):
            kept.append(unit)
    return kept


def _open_child(parent_fd: int, name: str, *, create: bool) -> tuple[int, bool]:
    """A descriptor of the folder ``name`` in ``parent_fd`` (made when ``create``), and
    whether this call made it. Never through a link: ``OSError`` ELOOP/ENOTDIR instead."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd), False
    except FileNotFoundError:
        if not create:
            raise
    made = True
    try:
        os.mkdir(name, dir_fd=parent_fd)
    except FileExistsError:
        made = False  # made meanwhile by a concurrent run, or a (dangling) link
    return os.open(name, _DIR_FLAGS, dir_fd=parent_fd), made


@contextmanager
def _folder_at(base_fd: int, segments: list[str]) -> Iterator[int]:
    """A descriptor of ``segments`` below ``base_fd`` inside a stage (made as needed)."""
    fds = [os.dup(base_fd)]
    try:
        for name in segments:
            fds.append(_open_child(fds[-1], name, create=True)[0])
        yield fds[-1]
    finally:
        for fd in fds:
            os.close(fd)


def output_world_path(prefix: str, relpath: str) -> str:
    """``P/outputs/<relpath>``, canonical and confined to ``P/outputs/``."""
    outputs_dir = prefix + "outputs/"
    try:
        path = canonicalize(outputs_dir + relpath)
    except WorldPathError as exc:
        raise ContractError(ErrorCode.ERR_INTERNAL, f"output path refused: {exc.message}") from None
    if not is_under(path, outputs_dir) or path.endswith("/"):
        raise ContractError(ErrorCode.ERR_INTERNAL, "an output path escapes P/outputs/")
    return path


def execution_folder(execution_id: str) -> str:
    """``/artifacts/execution/<id>/``: the folder of the determinism receipt."""
    return determinism_receipt_path(execution_id).rsplit("/", 1)[0] + "/"


def plan_run_files(
    *,
    prefix: str,
    execution_id: str,
    outputs: list[tuple[str, bytes, str]],
    receipt: dict[str, Any],
    determinism: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[PlannedFile]]:
    """The index entries and every file of a run, outputs first and receipts last.

    ``outputs`` are ``(world_path, bytes, mime)``; ``receipt``/``determinism`` get
    ``output_cids`` (and the receipt ``outputs_index``) filled in here.
    """
    entries: list[dict[str, Any]] = sorted(
        (
            {"path": path, "cid": cid_of_bytes(data), "size_bytes": len(data), "mime": mime}
            for path, data, mime in outputs
        ),
        key=lambda e: str(e["path"]),
    )
    index_path = prefix + "outputs.json"
    cids = sorted(e["cid"] for e in entries)
    receipt = {**receipt, "outputs_index": index_path, "output_cids": cids}
    determinism = {**determinism, "output_cids": cids}
    files = [PlannedFile(path, data) for path, data, _ in sorted(outputs)]
    files.append(PlannedFile(index_path, canonical_json({"outputs": entries})))
    files.append(PlannedFile(prefix + "receipt.json", canonical_json(receipt)))
    files.append(PlannedFile(determinism_receipt_path(execution_id), canonical_json(determinism)))
    return entries, files
