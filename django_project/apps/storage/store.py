"""``ArtifactStore``: the world's files, addressed by world path, identified by ``b3:`` cid.

The interface names no filesystem: an S3-compatible backend fills it with
objects keyed by world path (``put`` streams to a multipart upload while
hashing, ``open`` is a ranged GET, ``list`` a prefix listing). Two backends
live here: the filesystem world every default run uses, and an in-memory one
that proves the interface does not lean on files.

Every ``put`` streams: the bytes are hashed as they are copied, in fixed-size
chunks, so memory stays flat whatever the size, and the object appears under
its final path only once complete.
"""

from __future__ import annotations

import io
import mimetypes
import os
import shutil
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from blake3 import blake3

from pytest_theory.contracts.hashing import CHUNK_BYTES, CID_PREFIX
from pytest_theory.contracts.worldpath import FACETS, canonicalize

#: Large enough for blake3 to hash on every core, small enough that two stay cheap.
PUT_CHUNK_BYTES = 2 << 20


@dataclass(frozen=True)
class ArtifactRef:
    """What a put stored: where, its content id, size and media type."""

    path: str
    cid: str
    size_bytes: int
    mime: str


def guess_mime(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def _chunks(source: bytes | BinaryIO) -> Iterator[bytes]:
    stream = BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk


def _read_into(stream: BinaryIO, buffer: bytearray) -> int:
    """``readinto`` where the stream has a real one (files, BytesIO), else ``read`` and copy."""
    if isinstance(stream, io.BufferedIOBase | io.FileIO):
        return stream.readinto(buffer) or 0
    data = stream.read(len(buffer))
    buffer[: len(data)] = data
    return len(data)


def _copy_hashing(source: bytes | BinaryIO, target: BinaryIO) -> tuple[str, int]:
    """Copy ``source`` to the unbuffered ``target``; the cid and size of what was written.

    Chunk n is written on a helper thread while chunk n+1 is read and hashed (both
    release the GIL), so a put costs about as much as hashing alone; two buffers
    alternate, so memory stays at two chunks whatever the size.
    """
    stream = BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source
    hasher = blake3(max_threads=blake3.AUTO)
    buffers = [bytearray(PUT_CHUNK_BYTES), bytearray(PUT_CHUNK_BYTES)]
    size = 0
    writing: Future[None] | None = None
    with ThreadPoolExecutor(1, thread_name_prefix="artifact-put") as writer:
        while n := _read_into(stream, buffers[0]):
            chunk = memoryview(buffers[0])[:n]
            hasher.update(chunk)
            size += n
            if writing is not None:
                writing.result()  # the other buffer is free again
            writing = writer.submit(_write_all, target, chunk)
            buffers.reverse()
        if writing is not None:
            writing.result()
    return CID_PREFIX + hasher.hexdigest(), size


def _write_all(target: BinaryIO, chunk: memoryview) -> None:
    while chunk:  # an unbuffered write may take only part
        chunk = chunk[target.write(chunk) :]


def _file_path(world_path: str) -> str:
    path = canonicalize(world_path)
    if path.endswith("/"):
        raise ValueError(f"{world_path} names a folder, not a file")
    return path


class ArtifactStore(ABC):
    """Files of the world by canonical world path (``/artifacts/...``, ``/plan/...``, ...)."""

    @abstractmethod
    def put(
        self, world_path: str, source: bytes | BinaryIO, *, mime: str | None = None
    ) -> ArtifactRef:
        """Store ``source`` (bytes or a readable binary stream) at ``world_path``, atomically."""

    @abstractmethod
    def open(self, world_path: str) -> BinaryIO:
        """A readable binary stream of the file; ``FileNotFoundError`` when there is none."""

    @abstractmethod
    def exists(self, world_path: str) -> bool: ...

    @abstractmethod
    def size(self, world_path: str) -> int: ...

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """World paths of the files under ``prefix``, sorted."""

    @abstractmethod
    def delete(self, world_path: str) -> None: ...

    def read(self, world_path: str) -> bytes:
        with self.open(world_path) as stream:
            return stream.read()

    def put_file(
        self, world_path: str, local: str | Path, *, mime: str | None = None
    ) -> ArtifactRef:
        with open(local, "rb") as stream:
            return self.put(world_path, stream, mime=mime or guess_mime(str(local)))

    def copy_out(self, world_path: str, destination: str | Path) -> Path:
        """Write the file to ``destination`` on this machine (``--save-dir``/``--save-first``)."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with self.open(world_path) as source, open(destination, "wb") as target:
            shutil.copyfileobj(source, target, CHUNK_BYTES)
        return destination


class FilesystemArtifactStore(ArtifactStore):
    """The world as folders: ``<root>/artifacts/...`` is ``/artifacts/...``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        for facet in FACETS:
            (self.root / facet.lstrip("/")).mkdir(parents=True, exist_ok=True)

    def host_path(self, world_path: str) -> Path:
        return self.root / canonicalize(world_path).lstrip("/")

    def put(
        self, world_path: str, source: bytes | BinaryIO, *, mime: str | None = None
    ) -> ArtifactRef:
        path = _file_path(world_path)
        final = self.root / path.lstrip("/")
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex}")
        try:
            with open(temp, "xb", buffering=0) as target:
                cid, size = _copy_hashing(source, target)
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return ArtifactRef(path, cid, size, mime or guess_mime(path))

    def open(self, world_path: str) -> BinaryIO:
        return open(self.host_path(_file_path(world_path)), "rb")

    def exists(self, world_path: str) -> bool:
        return self.host_path(_file_path(world_path)).is_file()

    def size(self, world_path: str) -> int:
        return self.host_path(_file_path(world_path)).stat().st_size

    def list(self, prefix: str) -> Iterator[str]:
        base = self.host_path(prefix)
        if base.is_file():
            yield canonicalize(prefix)
            return
        found = sorted(p for p in base.rglob("*") if p.is_file() and ".tmp-" not in p.name)
        for path in found:
            yield "/" + path.relative_to(self.root).as_posix()

    def delete(self, world_path: str) -> None:
        self.host_path(_file_path(world_path)).unlink(missing_ok=True)


class MemoryArtifactStore(ArtifactStore):
    """Objects in a dict: what an object store looks like from here (and a fast test double)."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(
        self, world_path: str, source: bytes | BinaryIO, *, mime: str | None = None
    ) -> ArtifactRef:
        path = _file_path(world_path)
        hasher = blake3()
        parts: list[bytes] = []
        for chunk in _chunks(source):
            hasher.update(chunk)
            parts.append(chunk)
        data = b"".join(parts)
        with self._lock:
            self._objects[path] = data
        return ArtifactRef(
            path, CID_PREFIX + hasher.hexdigest(), len(data), mime or guess_mime(path)
        )

    def open(self, world_path: str) -> BinaryIO:
        path = _file_path(world_path)
        with self._lock:
            if path not in self._objects:
                raise FileNotFoundError(path)
            return BytesIO(self._objects[path])

    def exists(self, world_path: str) -> bool:
        return _file_path(world_path) in self._objects

    def size(self, world_path: str) -> int:
        return len(self._objects[_file_path(world_path)])

    def list(self, prefix: str) -> Iterator[str]:
        base = canonicalize(prefix).rstrip("/")
        with self._lock:
            keys = sorted(k for k in self._objects if k == base or k.startswith(base + "/"))
        yield from keys

    def delete(self, world_path: str) -> None:
        with self._lock:
            self._objects.pop(_file_path(world_path), None)


def default_store() -> FilesystemArtifactStore:
    """The configured world (``settings.THEORY_WORLD_ROOT``)."""
    from django.conf import settings

    return FilesystemArtifactStore(settings.THEORY_WORLD_ROOT)


__all__ = [
    "ArtifactRef",
    "ArtifactStore",
    "FilesystemArtifactStore",
    "MemoryArtifactStore",
    "default_store",
    "guess_mime",
]
