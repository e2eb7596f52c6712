"""Load the contract's JSON Schemas and validate instances against them.

Every schema lives once, as a file in ``contracts/schemas/``; every package
validates through ``validate``/``problems`` here so the rules are never re-typed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from referencing import Registry
from referencing.jsonschema import DRAFT7

from pytest_theory.contracts.errors import ContractError, ErrorCode

if TYPE_CHECKING:
    from referencing._core import Resolver  # not re-exported; for the annotation only

BASE_URI = "https://pytest-theory.dev/contracts/v1/"
SCHEMA_NAMES: tuple[str, ...] = (
    "defs",
    "payload",
    "output_entry",
    "outputs_index",
    "envelope_success",
    "envelope_error",
    "envelope",
    "receipt",
    "determinism",
    "sse_event",
    "log_line",
    "registry",
    "report_cell",
    "intoto_test_result",
)


class SchemaViolation(ContractError):
    """An instance fails a contract schema; ``problems`` lists every failure."""

    def __init__(self, code: ErrorCode | str, message: str, problems: Sequence[str]):
        super().__init__(code, message)
        self.problems = list(problems)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``contracts/schemas/<name>.json``."""
    if name not in SCHEMA_NAMES:
        raise KeyError(f"no contract schema named {name!r}")
    text = resources.files(__package__).joinpath("schemas", f"{name}.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        (BASE_URI + f"{name}.json", DRAFT7.create_resource(load_schema(name)))
        for name in SCHEMA_NAMES
    )


@cache
def validator(name: str) -> Draft7Validator:
    """A validator for schema ``name``, its ``$ref``s inlined once.

    Resolving ``$ref`` through the registry on every instance was half the cost of
    checking an envelope; the contract has no recursive references, so inlining is exact.
    """
    schema = load_schema(name)
    return Draft7Validator(_inline(schema, _registry().resolver(base_uri=schema["$id"])))


def _inline(node: Any, resolver: Resolver[Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:  # draft-07: a $ref's siblings are ignored
            resolved = resolver.lookup(node["$ref"])
            return _inline(resolved.contents, resolved.resolver)
        return {key: _inline(value, resolver) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(value, resolver) for value in node]
    return node


def json_path(parts: Iterable[Any], root: str = "") -> str:
    """``outputs[0].cid`` from jsonschema's path deque (under ``root``); ``(root)`` when empty."""
    out = root
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def describe(error: ValidationError) -> str:
    return f"{json_path(error.absolute_path)}: {error.message}"


def safe_describe(error: ValidationError, root: str = "") -> str:
    """Like ``describe`` but naming the rule instead of quoting the value (values may be secret)."""
    where = json_path(error.absolute_path, root)
    rule = error.validator_value
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k[:40] for k in error.instance if k not in allowed and isinstance(k, str))
        return f"{where}: unexpected field(s) {extra[:5]}"
    if error.validator in ("oneOf", "anyOf", "allOf", "not", "if", "then", "else"):
        rule = "…"
    text = repr(rule)
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{where}: fails {error.validator}={text}"


def first_problem(errors: Iterable[ValidationError], root: str = "") -> str:
    """The most relevant failure, described without quoting values."""
    return safe_describe(best_match(errors), root)


def problems(name: str, instance: Any) -> list[str]:
    """Every failure of ``instance`` against schema ``name``, one readable line each."""
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [describe(e) for e in errors]


def is_valid(name: str, instance: Any) -> bool:
    return validator(name).is_valid(instance)


def validate(name: str, instance: Any, *, code: ErrorCode | str = ErrorCode.ERR_PAYLOAD) -> None:
    """Raise ``SchemaViolation(code, …)`` naming the most relevant failure."""
    errors = list(validator(name).iter_errors(instance))
    if errors:
        main = best_match(errors)
        raise SchemaViolation(code, describe(main), [describe(e) for e in errors])


def check_draft7_schema(schema: Any, root: str = "") -> list[str]:
    """Problems with ``schema`` as a draft-07 JSON Schema (empty when it is one)."""
    try:
        Draft7Validator.check_schema(schema)
    except SchemaError as exc:
        return [f"{json_path(exc.absolute_path, root)}: {exc.message}"]
    return []


@cache
def _inputs_validator_cached(schema_json: str) -> Draft7Validator:
    return Draft7Validator(json.loads(schema_json))


def inputs_validator(schema: dict[str, Any]) -> Draft7Validator:
    """A cached validator for a registry ``inputs`` schema."""
    return _inputs_validator_cached(json.dumps(schema, sort_keys=True))
