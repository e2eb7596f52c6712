"""``manage.py scaffold_processor --ref ns/name@1 [--into DIR]``: a new processor that builds and
passes ``pytest --theory-ref ns/name@1`` as it is. The same code as ``theory new``
(``pytest_theory.scaffold``), which needs no Django."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pytest_theory.cli import CliError, refuse_installed
from pytest_theory.registry import RegistryError, builtin_root, parse_ref
from pytest_theory.scaffold import new_processor


class Command(BaseCommand):
    help = "Create a processor folder from the template: Dockerfile, registry.yaml, locks and app/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ref", required=True, help="ns/name@version")
        parser.add_argument(
            "--into", help="registry root to create it in (default: a checkout's processors/)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            ref = parse_ref(options["ref"])
            root = Path(options["into"]) if options["into"] else builtin_root()
            refuse_installed(root, "new")
            folder = new_processor(ref, root)
        except RegistryError as exc:
            raise CommandError(exc.message, returncode=2) from None
        except CliError as exc:
            raise CommandError(str(exc), returncode=2) from None
        self.stdout.write(str(folder))
