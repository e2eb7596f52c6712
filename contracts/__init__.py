"""The processor contract as data: JSON Schemas plus the small pure helpers that speak it.

Everything here depends only on the standard library, jsonschema and blake3, so
processors, adapters, the plugin and the control plane all share one copy of
every rule. See ``SPEC.md`` for the contract itself.
"""

from pytest_theory.contracts.digests import digests_equal, is_pinned, normalize_digest
from pytest_theory.contracts.errors import (
    ADAPTER_CODES,
    PROCESSOR_STATUS,
    TRANSIENT_ADAPTER_CODES,
    ContractError,
    ErrorCode,
    error_envelope,
    is_valid_status,
    status_for,
)
from pytest_theory.contracts.hashing import (
    HASH_SCHEMA,
    canonical_json,
    cid_of_bytes,
    cid_of_chunks,
    cid_of_file,
    cid_of_stream,
    inputs_hash,
    is_cid,
    memo_key,
    seed_for,
)
from pytest_theory.contracts.modes import Mode, check_ci_safety, is_ci, parse_mode, resolve_mode
from pytest_theory.contracts.schemas import (
    SchemaViolation,
    is_valid,
    load_schema,
    problems,
    validate,
)
from pytest_theory.contracts.worldpath import (
    FACETS,
    WorldPathError,
    canonicalize,
    determinism_receipt_path,
    expand_write_prefix,
    is_under,
    validate_execution_id,
    validate_write_prefix,
)

__all__ = [
    "ADAPTER_CODES",
    "FACETS",
    "HASH_SCHEMA",
    "PROCESSOR_STATUS",
    "TRANSIENT_ADAPTER_CODES",
    "ContractError",
    "ErrorCode",
    "Mode",
    "SchemaViolation",
    "WorldPathError",
    "canonical_json",
    "canonicalize",
    "check_ci_safety",
    "cid_of_bytes",
    "cid_of_chunks",
    "cid_of_file",
    "cid_of_stream",
    "determinism_receipt_path",
    "digests_equal",
    "error_envelope",
    "expand_write_prefix",
    "inputs_hash",
    "is_ci",
    "is_cid",
    "is_pinned",
    "is_under",
    "is_valid",
    "is_valid_status",
    "load_schema",
    "memo_key",
    "normalize_digest",
    "parse_mode",
    "problems",
    "resolve_mode",
    "seed_for",
    "status_for",
    "validate",
    "validate_execution_id",
    "validate_write_prefix",
]
