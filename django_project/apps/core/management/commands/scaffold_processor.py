"""``manage.py scaffold_processor --ref ns/name@1 [--into DIR]``: a new processor that builds and
passes ``pytest --theory-ref ns/name@1`` as it is."""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pytest_theory.images.context import runtime_lock
from pytest_theory.registry import RegistryError, builtin_root, load_spec, parse_ref

TEMPLATES = Path(__file__).resolve().parents[2] / "scaffold"
#: template file -> path in the new processor
FILES = {
    "Dockerfile.tmpl": "Dockerfile",
    "registry.yaml.tmpl": "registry.yaml",
    "requirements.in.tmpl": "requirements.in",
    "app___init__.py.tmpl": "app/__init__.py",
    "app_http.py.tmpl": "app/http.py",
    "app_handler.py.tmpl": "app/handler.py",
}


class Command(BaseCommand):
    help = "Create a processor folder from the template: Dockerfile, registry.yaml, locks and app/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ref", required=True, help="ns/name@version")
        parser.add_argument(
            "--into", help="registry root to create it in (default: the built-in processors/)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            ref = parse_ref(options["ref"])
        except RegistryError as exc:
            raise CommandError(exc.message, returncode=2) from None
        root = Path(options["into"]) if options["into"] else builtin_root()
        folder = root / ref.dirname
        if folder.exists():
            raise CommandError(f"{folder} already exists", returncode=2)
        values = {
            "ref": str(ref),
            "secret": f"{ref.ns}_{ref.name}_API_KEY".upper().replace("-", "_"),
            "runtime_requirements": (runtime_lock().with_name("requirements.in"))
            .read_text()
            .strip(),
        }
        for template, target in FILES.items():
            path = folder / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(Template((TEMPLATES / template).read_text()).substitute(values))
        (folder / "requirements.lock").write_text(runtime_lock().read_text())
        load_spec(folder / "registry.yaml")  # what was written validates
        self.stdout.write(str(folder))
