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
    determinism_receipt_path,
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


ABSOLUTE = "a world path must be absolute"
ROOT = "a world path must start with a facet root"
FACET = "a world path must start with one of /artifacts, /plan, /streams, /scratch"
DOTS = "'.' and '..' segments are not allowed"
SLASH = "a segment holds an encoded '/' or a backslash"
LOOKALIKE = "a segment holds a look-alike of '/' or '\\'"
CONTROL = "a segment holds NUL or a control character"
PERCENT = "a segment holds '%' after decoding (double or invalid encoding)"
TOO_LONG = "a world path must not exceed 4096 bytes"


def path_of(length: int) -> str:
    """A valid /artifacts path of exactly ``length`` bytes (segments of 100 bytes)."""
    head = "/artifacts/"
    whole, rest = divmod(length - len(head), 101)
    return head + ("x" * 100 + "/") * whole + "x" * rest


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("artifacts/a", ABSOLUTE),
        ("/", ROOT),
        ("//", ROOT),
        ("/etc/passwd", FACET),
        ("/artifactsx/a", FACET),
        ("/artifacts/../plan", DOTS),
        ("/artifacts/a/..", DOTS),
        ("/artifacts/./a", DOTS),
        ("/artifacts/%2e%2e/a", DOTS),
        ("/artifacts/%2E/a", DOTS),
        ("/artifacts/\uff0e\uff0e", DOTS),  # fullwidth dots: NFKC folds them to '..'
        ("/artifacts/\uff0e/a", DOTS),
        ("/artifacts/a%2Fb", SLASH),
        ("/artifacts/a%5cb", SLASH),
        ("/artifacts/a\\b", SLASH),
        ("/artifacts/a\uff0fb", LOOKALIKE),  # fullwidth solidus
        ("/artifacts/a\uff3cb", LOOKALIKE),  # fullwidth reverse solidus
        ("/artifacts/a%00b", CONTROL),
        ("/artifacts/a\x00b", CONTROL),
        ("/artifacts/a\x7f", CONTROL),
        ("/artifacts/%252e%252e", PERCENT),
        ("/artifacts/%zz", PERCENT),
        ("/artifacts/%ff", "percent-encoding does not decode to UTF-8"),
        ("/artifacts/" + "x" * 256, "a segment is longer than 255 bytes"),
        ("/artifacts/" + "/".join(["abcdefgh"] * 500), TOO_LONG),
        (path_of(4097), TOO_LONG),
        ("/artifacts/a" + "/" * (3 * 4096 - 11), TOO_LONG),  # over 3 x 4096 raw: not decoded
    ],
)
def test_refused_paths_name_their_rule(raw: str, problem: str) -> None:
    with pytest.raises(WorldPathError) as info:
        canonicalize(raw)
    assert str(info.value) == problem and info.value.code is ErrorCode.ERR_WRITE_PREFIX


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/artifacts/" + "x" * 255, "/artifacts/" + "x" * 255),
        (path_of(4096), path_of(4096)),
        (path_of(2000), path_of(2000)),
        ("/artifacts/a" + "/" * (3 * 4096 - 12), "/artifacts/a/"),  # 3 x 4096 raw bytes
    ],
)
def test_paths_at_the_limits_are_accepted(raw: str, canonical: str) -> None:
    assert canonicalize(raw) == canonical


@pytest.mark.parametrize("value", [None, 3, b"/artifacts/a", ["/artifacts"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(WorldPathError, match=r"^a world path must be a string$"):
        canonicalize(value)


@pytest.mark.parametrize(
    ("path", "prefix", "inside"),
    [
        ("/artifacts/a/b", "/artifacts/a", True),
        ("/artifacts/a/b", "/artifacts/a/", True),
        ("/artifacts/a/", "/artifacts/a", False),  # the prefix itself is not inside it
        ("/artifacts/ab", "/artifacts/a", False),  # segment-aware, not string-prefix
        ("/artifacts/other", "/artifacts/X", False),
        ("/plan/abcdefghijkl", "/artifacts", False),
    ],
)
def test_is_under_is_segment_aware(path: str, prefix: str, inside: bool) -> None:
    assert is_under(path, prefix) is inside


def test_the_determinism_receipt_lives_under_the_execution_facet() -> None:
    assert determinism_receipt_path("e-1") == "/artifacts/execution/e-1/determinism.json"
    with pytest.raises(ContractError, match=r"^execution_id must match"):
        determinism_receipt_path("..")


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
        ("/artifacts/outputs/", "write_prefix must contain {execution_id}"),
        ("/artifacts/{execution_id}", "write_prefix must end with '/'"),
        ("/plan/{execution_id}/", "write_prefix must lie under /artifacts/"),
        ("/artifacts/", "write_prefix must lie under /artifacts/"),
        ("/artifacts/../{execution_id}/", DOTS),
        ("artifacts/{execution_id}/", ABSOLUTE),
        (42, "write_prefix must be a string"),
    ],
)
def test_bad_prefixes_name_the_rule(template: object, reason: str) -> None:
    with pytest.raises(WorldPathError) as info:
        validate_write_prefix(template)
    assert str(info.value) == reason and info.value.code is ErrorCode.ERR_WRITE_PREFIX


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
    assert info.value.message == "execution_id must match [A-Za-z0-9_.-]{1,128}"


@given(execution_ids)
def test_valid_execution_ids_expand_to_one_segment(eid: str) -> None:
    assume(eid not in (".", ".."))
    assert expand_write_prefix("/artifacts/o/{execution_id}/", eid) == f"/artifacts/o/{eid}/"
