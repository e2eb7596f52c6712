"""World paths and write prefixes: canonical, idempotent, never escaping their facet."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from pytest_theory.contracts import (
    FACETS,
    ContractError,
    ErrorCode,
    WorldPathError,
    canonicalize,
    expand_write_prefix,
    is_under,
    validate_execution_id,
    validate_write_prefix,
)
from pytest_theory.contracts.worldpath import MAX_PATH_BYTES, MAX_SEGMENT_BYTES

# Pieces attackers and sloppy callers put in paths: traversal, encodings of
# '/', '.', '%', NUL and backslash, and Unicode look-alikes of dots and slashes.
TRICKS = [
    ".",
    "..",
    "%2e",
    "%2E%2e",
    "%2f",
    "%2F",
    "%5c",
    "%00",
    "\x00",
    "\\",
    "%25",
    "%252e",
    "\uff0e",
    "\uff0e\uff0e",
    "\u2024",
    "\u2025",
    "\uff0f",
    "\u2215",
    "\u2044",
    "\ufe52",
    "\u0301",
    "e\u0301",
    "\u00e9",
    "%c3%a9",
    "%ff",
    "~",
    " ",
    "a",
    "b",
    "out",
    "x" * 256,
]
segments = st.one_of(st.sampled_from(TRICKS), st.text(min_size=1, max_size=12))
facet_roots = st.sampled_from([*FACETS, "/ARTIFACTS", "/Plan", "/etc", "", "/"])
paths = st.builds(
    lambda root, parts, sep, trail: root + sep + sep.join(parts) + trail,
    facet_roots,
    st.lists(segments, max_size=6),
    st.sampled_from(["/", "//", "/%2f", "\\"]),
    st.sampled_from(["", "/"]),
)


def assert_confined(path: str) -> None:
    """An accepted path is absolute, in a facet, and resolves to itself."""
    segments = path.rstrip("/").split("/")[1:]
    assert "/" + segments[0] in FACETS
    assert all(s not in ("", ".", "..") for s in segments)
    assert "\x00" not in path and "\\" not in path and "%" not in path
    assert posixpath.normpath(path) == path.rstrip("/")
    assert all(len(s.encode()) <= MAX_SEGMENT_BYTES for s in segments)
    assert len(path.encode()) <= MAX_PATH_BYTES


@given(paths)
@example("/artifacts/a/%2e%2e/%2e%2e/etc/passwd")
@example("/artifacts/\uff0e\uff0e/x")
@example("/artifacts/a%2fb")
def test_canonicalisation_is_idempotent_and_confined(path: str) -> None:
    try:
        canonical = canonicalize(path)
    except WorldPathError:
        return
    assert canonicalize(canonical) == canonical
    assert_confined(canonical)


@given(st.lists(segments, min_size=1, max_size=5))
def test_no_accepted_path_escapes_its_facet(parts: list[str]) -> None:
    try:
        canonical = canonicalize("/artifacts/" + "/".join(parts))
    except WorldPathError:
        return
    assert is_under(canonical, "/artifacts")
    assert_confined(canonical)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/artifacts/a", "/artifacts/a"),
        ("/ARTIFACTS//x///y/", "/artifacts/x/y/"),
        ("/artifacts/%41b", "/artifacts/Ab"),
        ("/artifacts/e\u0301", "/artifacts/\u00e9"),  # NFC
        ("/artifacts/%c3%a9", "/artifacts/\u00e9"),
        ("/Plan/X", "/plan/X"),  # only the facet root is lowercased
        ("/streams/", "/streams/"),
    ],
)
def test_canonical_forms(raw: str, canonical: str) -> None:
    assert canonicalize(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "artifacts/a",
        "/",
        "//",
        "/etc/passwd",
        "/artifactsx/a",
        "/artifacts/../plan",
        "/artifacts/a/..",
        "/artifacts/./a",
        "/artifacts/%2e%2e/a",
        "/artifacts/%2E/a",
        "/artifacts/a%2Fb",
        "/artifacts/a%5cb",
        "/artifacts/a\\b",
        "/artifacts/a%00b",
        "/artifacts/a\x00b",
        "/artifacts/%252e%252e",
        "/artifacts/%ff",
        "/artifacts/%zz",
        "/artifacts/\uff0e\uff0e",
        "/artifacts/a\uff0fb",
        "/artifacts/a\x7f",
        "/artifacts/" + "x" * 256,
        "/artifacts/" + "/".join(["abcdefgh"] * 500),
    ],
)
def test_refused_paths(raw: str) -> None:
    with pytest.raises(WorldPathError):
        canonicalize(raw)


@pytest.mark.parametrize("value", [None, 3, b"/artifacts/a", ["/artifacts"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(WorldPathError):
        canonicalize(value)


# -- write prefixes and execution ids -----------------------------------------

execution_ids = st.from_regex(r"\A[A-Za-z0-9_.-]{1,128}\Z").filter(lambda s: s not in (".", ".."))
prefix_templates = st.builds(
    lambda parts, at, trail: (
        "/artifacts/" + "/".join([*parts[:at], "{execution_id}", *parts[at:]]) + trail
    ),
    st.lists(segments, max_size=4),
    st.integers(0, 4),
    st.sampled_from(["/", "", "//"]),
)


@given(prefix_templates, execution_ids)
@example("/artifacts/outputs/demo/{execution_id}/", "e-1")
@example("/artifacts/%2e%2e/{execution_id}/", "x")
def test_prefix_expansion_stays_under_artifacts_and_ends_with_slash(
    template: str, eid: str
) -> None:
    try:
        expanded = expand_write_prefix(template, eid)
    except ContractError as exc:
        assert exc.code is ErrorCode.ERR_WRITE_PREFIX
        return
    assert expanded.startswith("/artifacts/") and expanded.endswith("/")
    assert is_under(expanded, "/artifacts")
    assert "{execution_id}" not in expanded
    assert_confined(expanded)


@given(st.text(max_size=40))
def test_any_template_either_validates_or_is_a_write_prefix_error(template: str) -> None:
    try:
        canonical = validate_write_prefix(template)
    except ContractError as exc:
        assert exc.code is ErrorCode.ERR_WRITE_PREFIX
        return
    assert canonical.startswith("/artifacts/") and canonical.endswith("/")
    assert "{execution_id}" in canonical


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("/artifacts/outputs/", "{execution_id}"),
        ("/artifacts/{execution_id}", "end with '/'"),
        ("/plan/{execution_id}/", "under /artifacts/"),
        ("/artifacts/../{execution_id}/", "'..'"),
        ("artifacts/{execution_id}/", "absolute"),
        (42, "string"),
    ],
)
def test_bad_prefixes_name_the_rule(template: object, reason: str) -> None:
    with pytest.raises(
        WorldPathError, match=reason.replace("{", r"\{").replace("}", r"\}")
    ) as info:
        validate_write_prefix(template)
    assert info.value.code is ErrorCode.ERR_WRITE_PREFIX


def test_expansion_replaces_every_placeholder() -> None:
    assert (
        expand_write_prefix("/artifacts/{execution_id}/runs/{execution_id}/", "e1")
        == "/artifacts/e1/runs/e1/"
    )


@pytest.mark.parametrize("eid", ["", ".", "..", "a/b", "a b", "x" * 129, "é", None, 7])
def test_bad_execution_ids_are_payload_errors(eid: object) -> None:
    with pytest.raises(ContractError) as info:
        validate_execution_id(eid)
    assert info.value.code is ErrorCode.ERR_PAYLOAD


@given(execution_ids)
def test_valid_execution_ids_expand_to_one_segment(eid: str) -> None:
    assume(eid not in (".", ".."))
    assert expand_write_prefix("/artifacts/o/{execution_id}/", eid) == f"/artifacts/o/{eid}/"
