"""World paths, write prefixes and execution ids (SPEC sections 1 and 2).

Canonical form of a world path: absolute; segments percent-decoded exactly once;
Unicode NFC; the facet root lowercased; empty segments (``//``) collapsed; a
trailing ``/`` kept (it marks a prefix). Refused, whatever the encoding trick:
``.`` and ``..`` segments (also as look-alikes that NFKC folds to dots), a
decoded ``/`` or ``\\`` (also as look-alikes), NUL and other control characters,
a ``%`` left after decoding (double encoding, which a second decode would turn
into something else), segments over 255 bytes and paths over 4096 bytes.
Because nothing decodable survives, canonicalisation is idempotent.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

from pytest_theory.contracts.errors import ContractError, ErrorCode

FACETS: tuple[str, ...] = ("/artifacts", "/plan", "/streams", "/scratch")
MAX_PATH_BYTES = 4096
MAX_SEGMENT_BYTES = 255
#: Matched with ``fullmatch``: ``$`` alone would let a trailing newline through.
EXECUTION_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
PLACEHOLDER = "{execution_id}"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class WorldPathError(ContractError):
    """A path that is not a canonicalisable world path."""

    def __init__(self, message: str, *, code: ErrorCode = ErrorCode.ERR_WRITE_PREFIX):
        super().__init__(code, message)


def _canonical_segment(raw: str) -> str:
    try:
        segment = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise WorldPathError("percent-encoding does not decode to UTF-8") from None
    segment = unicodedata.normalize("NFC", segment)
    if "%" in segment:
        raise WorldPathError("a segment holds '%' after decoding (double or invalid encoding)")
    if "/" in segment or "\\" in segment:
        raise WorldPathError("a segment holds an encoded '/' or a backslash")
    if _CONTROL.search(segment):
        raise WorldPathError("a segment holds NUL or a control character")
    folded = unicodedata.normalize("NFKC", segment)
    if folded in (".", "..") or segment in (".", ".."):
        raise WorldPathError("'.' and '..' segments are not allowed")
    if "/" in folded or "\\" in folded:
        raise WorldPathError("a segment holds a look-alike of '/' or '\\'")
    if len(segment.encode()) > MAX_SEGMENT_BYTES:
        raise WorldPathError(f"a segment is longer than {MAX_SEGMENT_BYTES} bytes")
    return segment


def canonicalize(path: object) -> str:
    """The canonical form of a world path; raises ``WorldPathError`` when refused."""
    if not isinstance(path, str):
        raise WorldPathError("a world path must be a string")
    if not path.startswith("/"):
        raise WorldPathError("a world path must be absolute")
    if len(path.encode()) > MAX_PATH_BYTES * 3:  # cheap bound before decoding
        raise WorldPathError(f"a world path must not exceed {MAX_PATH_BYTES} bytes")
    raw_segments = path.split("/")
    trailing = path.endswith("/")
    segments = [_canonical_segment(s) for s in raw_segments if s != ""]
    if not segments:
        raise WorldPathError("a world path must start with a facet root")
    segments[0] = segments[0].lower()
    if "/" + segments[0] not in FACETS:
        raise WorldPathError(f"a world path must start with one of {', '.join(FACETS)}")
    canonical = "/" + "/".join(segments) + ("/" if trailing else "")
    if len(canonical.encode()) > MAX_PATH_BYTES:
        raise WorldPathError(f"a world path must not exceed {MAX_PATH_BYTES} bytes")
    return canonical


def facet_of(path: str) -> str:
    """The facet root (``/artifacts``, …) of a canonical world path."""
    return "/" + path.split("/", 2)[1]


def is_under(path: str, prefix: str) -> bool:
    """True when canonical ``path`` lies inside canonical ``prefix`` (segment-aware)."""
    base = prefix.rstrip("/") + "/"
    return path.startswith(base) and len(path) > len(base)


def validate_execution_id(execution_id: object) -> str:
    """``[A-Za-z0-9_.-]{1,128}``, and not ``.`` or ``..`` (it becomes a path segment)."""
    if (
        not isinstance(execution_id, str)
        or not EXECUTION_ID_RE.fullmatch(execution_id)
        or execution_id in (".", "..")
    ):
        raise ContractError(ErrorCode.ERR_PAYLOAD, "execution_id must match [A-Za-z0-9_.-]{1,128}")
    return execution_id


def validate_write_prefix(template: object) -> str:
    """The canonical template: under ``/artifacts/``, holds ``{execution_id}``, ends in ``/``."""
    if not isinstance(template, str):
        raise WorldPathError("write_prefix must be a string")
    if not template.endswith("/"):
        raise WorldPathError("write_prefix must end with '/'")
    canonical = canonicalize(template)
    if facet_of(canonical) != "/artifacts" or canonical == "/artifacts/":
        raise WorldPathError("write_prefix must lie under /artifacts/")
    if PLACEHOLDER not in canonical:
        raise WorldPathError("write_prefix must contain {execution_id}")
    return canonical


def expand_write_prefix(template: object, execution_id: object) -> str:
    """The expanded prefix P: every ``{execution_id}`` replaced, canonical, ends in ``/``."""
    canonical = validate_write_prefix(template)
    expanded = canonicalize(canonical.replace(PLACEHOLDER, validate_execution_id(execution_id)))
    if not is_under(expanded, "/artifacts") or not expanded.endswith("/"):  # pragma: no cover
        raise WorldPathError("write_prefix does not expand under /artifacts/")
    return expanded


def determinism_receipt_path(execution_id: str) -> str:
    """Where the determinism receipt of a run lives."""
    return f"/artifacts/execution/{validate_execution_id(execution_id)}/determinism.json"
