"""ArtifactStore: the filesystem world and the in-memory backend keep the same contract."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest
from blake3 import blake3

from pytest_theory.contracts import WorldPathError, cid_of_bytes
from pytest_theory.django_project.apps.storage.store import (
    ArtifactStore,
    FilesystemArtifactStore,
    MemoryArtifactStore,
)


@pytest.fixture(params=["filesystem", "memory"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    return (
        FilesystemArtifactStore(tmp_path / "world")
        if request.param == "filesystem"
        else MemoryArtifactStore()
    )


def test_put_gives_the_b3_id_and_reads_back(any_store: ArtifactStore) -> None:
    ref = any_store.put("/ARTIFACTS//docs/a.txt", b"hello")
    assert (ref.path, ref.cid, ref.size_bytes, ref.mime) == (
        "/artifacts/docs/a.txt",
        cid_of_bytes(b"hello"),
        5,
        "text/plain",
    )
    assert any_store.read("/artifacts/docs/a.txt") == b"hello" and any_store.exists(
        "/artifacts/docs/a.txt"
    )
    streamed = any_store.put("/plan/p/b.bin", io.BytesIO(b"x" * 3_000_000))
    assert (
        streamed.cid == cid_of_bytes(b"x" * 3_000_000)
        and any_store.size("/plan/p/b.bin") == 3_000_000
    )
    assert list(any_store.list("/artifacts/")) == ["/artifacts/docs/a.txt"]
    any_store.delete("/artifacts/docs/a.txt")
    assert not any_store.exists("/artifacts/docs/a.txt")
    with pytest.raises(FileNotFoundError):
        any_store.open("/artifacts/docs/a.txt")


@pytest.mark.parametrize(
    "bad", ["/artifacts/../etc/passwd", "/etc/passwd", "/artifacts/%2e%2e/x", "relative"]
)
def test_paths_outside_the_world_are_refused(any_store: ArtifactStore, bad: str) -> None:
    with pytest.raises(WorldPathError):
        any_store.put(bad, b"x")


class Breaks(io.RawIOBase):
    def __init__(self) -> None:
        self.sent = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.sent:
            raise OSError("the upload broke")
        self.sent = True
        return b"partial"


def test_a_failed_put_leaves_nothing(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path / "world")
    with pytest.raises(OSError, match="broke"):
        store.put("/artifacts/x/big.bin", Breaks())  # type: ignore[arg-type]
    assert [p for p in (tmp_path / "world").rglob("*") if p.is_file()] == []


def test_a_large_put_keeps_memory_flat(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        f.truncate(128 * 1024 * 1024)
    store = FilesystemArtifactStore(tmp_path / "world")
    tracemalloc.start()
    ref = store.put_file("/artifacts/big.bin", source)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert ref.cid == "b3:" + blake3(bytes(128 * 1024 * 1024)).hexdigest()
    assert peak < 8 * 1024 * 1024, f"a 128 MiB put peaked at {peak} bytes"


def test_copy_out(tmp_path: Path) -> None:
    store = FilesystemArtifactStore(tmp_path / "world")
    store.put("/artifacts/o/a.txt", b"data")
    assert store.copy_out("/artifacts/o/a.txt", tmp_path / "out" / "a.txt").read_bytes() == b"data"
