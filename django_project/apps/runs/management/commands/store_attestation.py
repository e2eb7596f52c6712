"""``manage.py store_attestation FILE...``: keep in-toto test-result statements for admission.

    manage.py store_attestation report/attestations/llm-litellm-v1-local-mock.intoto.json

Each file (written by ``pytest --theory-report DIR``) is checked against the
statement's schema and stored in the ArtifactStore under its image digest, where
``conformance.attested@1`` looks. Exit status: 0 when every file was stored, 2
when one is not a statement (nothing is stored then).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pytest_theory.django_project.apps.runs.predicates import store_attestation
from pytest_theory.django_project.apps.storage.store import default_store
from pytest_theory.report import attest


class Command(BaseCommand):
    help = "Store in-toto test-result attestations for admission by conformance.attested@1."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", type=Path, metavar="FILE")

    def handle(self, *args: Any, **options: Any) -> None:
        contents = {}
        for path in options["files"]:
            try:
                data = path.read_bytes()
                attest.check(json.loads(data))
            except (OSError, ValueError, attest.AttestationError) as exc:
                raise CommandError(f"{path}: {exc}", returncode=2) from None
            contents[path] = data
        store = default_store()
        for path, data in contents.items():
            for stored in store_attestation(store, data):
                self.stdout.write(f"{path} -> {stored}")
