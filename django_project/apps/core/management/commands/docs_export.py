"""``manage.py docs_export --out DIR [--erd] [--api] [--schemas]`` (all three when none is named).

erd.mmd          Mermaid ERD of every model of the project's apps (found, not listed)
storage_api.md   the ArtifactStore interface, with a diagram drawn from the code: the
                 store implementations and the adapters that exist
schemas.json     a JSON Schema per model, and the processor contract's schemas
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandParser
from django.db import models

#: Our apps are the installed ones that live in this project (Django's own are left out).
OUR_PACKAGE = "pytest_theory.django_project."
JSON_TYPES = {
    "AutoField": "integer",
    "BigAutoField": "integer",
    "BigIntegerField": "integer",
    "IntegerField": "integer",
    "PositiveIntegerField": "integer",
    "PositiveSmallIntegerField": "integer",
    "SmallIntegerField": "integer",
    "BooleanField": "boolean",
    "FloatField": "number",
    "DecimalField": "number",
    "JSONField": "object",
}
FORMATS = {"DateTimeField": "date-time", "DateField": "date", "EmailField": "email"}


def our_apps() -> list[str]:
    return [c.label for c in apps.get_app_configs() if c.name.startswith(OUR_PACKAGE)]


def our_models() -> list[type[models.Model]]:
    return [m for label in our_apps() for m in apps.get_app_config(label).get_models()]


def entity(model: type[models.Model]) -> str:
    return f"{model._meta.app_label}_{model.__name__}"


def erd() -> str:
    lines = ["erDiagram"]
    relations = []
    for model in our_models():
        lines.append(f"    {entity(model)} {{")
        for field in model._meta.concrete_fields:
            kind = field.get_internal_type()
            key = " PK" if field.primary_key else (" FK" if field.is_relation else "")
            lines.append(f"        {kind} {field.attname}{key}")
            if field.is_relation and field.related_model is not None:
                target = field.related_model
                target_name = (
                    entity(target) if target._meta.app_label in our_apps() else target.__name__
                )
                optional = "o" if field.null else "|"
                relations.append(
                    f'    {entity(model)} }}o--{optional}| {target_name} : "{field.name}"'
                )
        lines.append("    }")
    return "\n".join(lines + relations) + "\n"


def model_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in our_models():
        properties: dict[str, Any] = {}
        required = []
        for field in model._meta.concrete_fields:
            kind = field.get_internal_type()
            prop: dict[str, Any] = {"type": JSON_TYPES.get(kind, "string")}
            fmt = FORMATS.get(type(field).__name__) or FORMATS.get(
                kind
            )  # EmailField says "CharField"
            if fmt:
                prop["format"] = fmt
            if getattr(field, "max_length", None):
                prop["maxLength"] = field.max_length
            if field.choices:
                prop["enum"] = [value for value, _ in field.choices]
            if field.null:
                prop["type"] = [prop["type"], "null"]
            if field.help_text:
                prop["description"] = str(field.help_text)
            properties[field.attname] = prop
            if (
                not field.null
                and not field.has_default()
                and not field.blank
                and not field.primary_key
            ):
                required.append(field.attname)
        schemas[f"{model._meta.app_label}.{model.__name__}"] = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": f"{model._meta.app_label}.{model.__name__}",
            "description": inspect.cleandoc(model.__doc__ or ""),
            "type": "object",
            "properties": properties,
            "required": required,
        }
    return schemas


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def architecture() -> list[str]:
    """The flowchart, from what the code has: every concrete store and every adapter."""
    from pytest_theory.adapters import ADAPTERS
    from pytest_theory.django_project.apps.storage import store

    lines = [
        "```mermaid",
        "flowchart LR",
        "    cli[run_processor] --> service[RunService]",
        "    service --> store[ArtifactStore]",
        "    processor[processor] -->|writes P/outputs, index, receipts| world[(world /artifacts)]",
    ]
    for name in sorted(ADAPTERS):
        lines.append(
            f'    service --> adapter_{name}["{name} adapter: {ADAPTERS[name]}"] --> processor'
        )
    for impl in sorted(_subclasses(store.ArtifactStore), key=lambda c: c.__name__):
        if inspect.isabstract(impl):
            continue
        summary = inspect.cleandoc(impl.__doc__ or "").split("\n")[0].replace('"', "'")
        lines.append(f'    store --> {impl.__name__}["{impl.__name__}: {summary}"]')
    return [*lines, "```"]


def storage_api() -> str:
    from pytest_theory.django_project.apps.storage import store

    parts = [
        "# Storage API: `ArtifactStore`",
        "",
        inspect.cleandoc(store.__doc__ or ""),
        "",
        *architecture(),
        "",
        "## `ArtifactRef`",
        "",
        inspect.cleandoc(store.ArtifactRef.__doc__ or ""),
        "",
    ]
    parts += [f"- `{f}`" for f in store.ArtifactRef.__dataclass_fields__]
    parts += ["", "## Methods", ""]
    for name, member in inspect.getmembers(store.ArtifactStore, inspect.isfunction):
        if name.startswith("_"):
            continue
        parts += [
            f"### `{name}{inspect.signature(member)}`",
            "",
            inspect.cleandoc(member.__doc__ or ""),
            "",
        ]
    return "\n".join(parts)


class Command(BaseCommand):
    help = "Export generated documentation: an ERD, the storage API and JSON schemas."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True)
        parser.add_argument("--erd", action="store_true")
        parser.add_argument("--api", action="store_true")
        parser.add_argument("--schemas", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        everything = not (options["erd"] or options["api"] or options["schemas"])
        written = []
        if everything or options["erd"]:
            (out / "erd.mmd").write_text(erd())
            written.append("erd.mmd")
        if everything or options["api"]:
            (out / "storage_api.md").write_text(storage_api())
            written.append("storage_api.md")
        if everything or options["schemas"]:
            from pytest_theory.contracts.schemas import SCHEMA_NAMES, load_schema

            document = {
                "models": model_schemas(),
                "contract": {n: load_schema(n) for n in SCHEMA_NAMES},
            }
            (out / "schemas.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
            written.append("schemas.json")
        for name in written:
            self.stdout.write(str(out / name))
