"""Canonical JSON and BLAKE3 content ids (``b3:<64 lowercase hex>``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from blake3 import blake3

CID_PREFIX = "b3:"
CID_RE = re.compile(r"^b3:[0-9a-f]{64}$")
#: Names the scheme behind ``inputs_hash`` (the receipt's ``hash_schema``).
HASH_SCHEMA = "blake3:canonical-json@1"
#: Read size for streaming hashes: large enough for blake3's SIMD/threads, small
#: enough that memory stays flat whatever the file size.
CHUNK_BYTES = 1 << 20


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: ``json.dumps(obj, sort_keys=True, separators=(",", ":"))``.

    NaN and infinities are refused: they are not JSON.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def cid_of_bytes(data: bytes | bytearray | memoryview) -> str:
    return CID_PREFIX + blake3(data).hexdigest()


def cid_of_chunks(chunks: Iterable[bytes]) -> tuple[str, int]:
    """The cid and total size of a byte stream given as chunks."""
    hasher = blake3(max_threads=blake3.AUTO)
    size = 0
    for chunk in chunks:
        hasher.update(chunk)
        size += len(chunk)
    return CID_PREFIX + hasher.hexdigest(), size


def cid_of_stream(stream: BinaryIO) -> tuple[str, int]:
    """The cid and size of everything left in ``stream``, read in fixed-size chunks."""
    return cid_of_chunks(iter(lambda: stream.read(CHUNK_BYTES), b""))


def cid_of_file(path: str | Path) -> tuple[str, int]:
    """The cid and size of a file of any size, with memory that stays flat."""
    hasher = blake3(max_threads=blake3.AUTO)
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    size = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            hasher.update(view[:n])
            size += n
    return CID_PREFIX + hasher.hexdigest(), size


def is_cid(value: object) -> bool:
    return isinstance(value, str) and CID_RE.match(value) is not None


def inputs_hash(inputs: Any) -> str:
    """``"b3:" + blake3(canonical JSON of inputs)``."""
    return cid_of_bytes(canonical_json(inputs))


def memo_key(*, ref: str, image_digest: str, mode: str, inputs_hash: str) -> str:
    """``"b3:" + blake3`` of the canonical JSON array ``[ref, image_digest, mode, inputs_hash]``."""
    return cid_of_bytes(canonical_json([ref, image_digest, mode, inputs_hash]))


def seed_for(inputs_hash: str) -> int:
    """A deterministic 63-bit seed derived from the inputs hash (mock runs use it)."""
    return int(inputs_hash[len(CID_PREFIX) : len(CID_PREFIX) + 16], 16) & (2**63 - 1)
