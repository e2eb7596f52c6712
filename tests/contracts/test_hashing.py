"""Canonical JSON and ``b3:`` content ids."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pytest
from blake3 import blake3
from hypothesis import given
from hypothesis import strategies as st

from pytest_theory.contracts import (
    canonical_json,
    cid_of_bytes,
    cid_of_file,
    cid_of_stream,
    inputs_hash,
    is_cid,
    memo_key,
    seed_for,
)

# Official BLAKE3 test vectors (input: bytes i % 251 for i in range(n)).
VECTORS = {
    0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    1023: "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
    1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
    102400: "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085",
}


def vector_input(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


@pytest.mark.parametrize(("length", "hexdigest"), VECTORS.items())
def test_cids_match_official_vectors_and_the_library(length: int, hexdigest: str) -> None:
    data = vector_input(length)
    assert cid_of_bytes(data) == "b3:" + hexdigest
    assert cid_of_bytes(data) == "b3:" + blake3(data).hexdigest()
    assert cid_of_stream(io.BytesIO(data)) == ("b3:" + hexdigest, length)


@given(st.binary(max_size=5000))
def test_streaming_and_file_ids_equal_the_one_shot_id(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("h") / "f"
    path.write_bytes(data)
    assert cid_of_file(path) == (cid_of_bytes(data), len(data))
    assert is_cid(cid_of_bytes(data))


def test_hashing_a_large_file_keeps_memory_flat(tmp_path: Path) -> None:
    size = 256 * 1024 * 1024
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:  # sparse: quick to make, read back as zeros
        f.truncate(size)
    tracemalloc.start()
    cid, seen = cid_of_file(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen == size
    assert cid == "b3:" + blake3(bytes(1024 * 1024) * 256).hexdigest()
    assert peak < 4 * 1024 * 1024, f"hashing 256 MiB peaked at {peak} bytes of Python memory"


def test_a_stream_is_hashed_chunk_by_chunk_with_memory_flat(tmp_path: Path) -> None:
    size = 64 * 1024 * 1024 + 3  # many chunks, the last one short
    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        f.truncate(size)
    with open(path, "rb") as f:
        tracemalloc.start()
        cid, seen = cid_of_stream(f)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert seen == size
    assert cid == "b3:" + blake3(bytes(size)).hexdigest()
    assert peak < 4 * 1024 * 1024, f"hashing a 64 MiB stream peaked at {peak} bytes"


def test_canonical_json_is_sorted_compact_and_refuses_nan() -> None:
    assert (
        canonical_json({"b": 1, "a": [1, {"d": "é", "c": None}]})
        == b'{"a":[1,{"c":null,"d":"\\u00e9"}],"b":1}'
    )
    with pytest.raises(ValueError, match="JSON"):
        canonical_json({"x": float("nan")})


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids),
        max_leaves=20,
    )
)
def test_canonical_json_equals_the_spec_formula(value: object) -> None:
    assert (
        canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    )


def test_inputs_hash_memo_key_and_seed_follow_the_spec() -> None:
    inputs = {"schema": "v1", "params": {"x": 1}}
    ih = inputs_hash(inputs)
    assert ih == "b3:" + blake3(b'{"params":{"x":1},"schema":"v1"}').hexdigest()
    key = memo_key(ref="a/b@1", image_digest="sha256:" + "0" * 64, mode="mock", inputs_hash=ih)
    assert key == cid_of_bytes(canonical_json(["a/b@1", "sha256:" + "0" * 64, "mock", ih]))
    assert key != memo_key(
        ref="a/b@1", image_digest="sha256:" + "0" * 64, mode="real", inputs_hash=ih
    )
    assert seed_for(ih) == int(ih[3:19], 16) & (2**63 - 1)
    assert inputs_hash({"params": {"x": 1}, "schema": "v1"}) == ih  # key order is irrelevant


@pytest.mark.parametrize(
    ("first_16_hex", "seed"),
    [("f" * 16, 2**63 - 1), ("8" + "0" * 15, 0), ("0123456789abcdef", 0x0123456789ABCDEF)],
)
def test_the_seed_is_63_bits_of_the_hash_head(first_16_hex: str, seed: int) -> None:
    """The hash's first 8 bytes without their top bit: a seed always fits a signed int64."""
    assert seed_for("b3:" + first_16_hex + "0" * 48) == seed


@pytest.mark.parametrize("value", ["b3:" + "A" * 64, "b3:" + "0" * 63, "sha256:" + "0" * 64, None])
def test_is_cid_refuses_malformed_ids(value: object) -> None:
    assert not is_cid(value)
