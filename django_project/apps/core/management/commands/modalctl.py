"""``manage.py modalctl deploy|status|undeploy|sync-secrets --ref REF --env ENV``.

Deploys the processor's pinned amd64 image as a Modal ASGI app (``pytest_theory.adapters.modal_app``),
makes sure every secret the registry declares exists in the Modal environment
(created from this machine's environment when missing, never printed), and
reports or stops what is deployed.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pytest_theory.adapters.modal import FUNCTION_NAME, app_name, default_environment
from pytest_theory.registry import ProcessorSpec, Registry, RegistryError


class Command(BaseCommand):
    help = "Deploy, inspect, stop a processor on Modal, or sync its secrets (names only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["deploy", "status", "undeploy", "sync-secrets"])
        parser.add_argument("--ref", required=True)
        parser.add_argument(
            "--env", default=None, help="Modal environment (default $MODAL_ENVIRONMENT or dev)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            spec = Registry.discover(settings.THEORY_REGISTRY_ROOTS).get_spec(options["ref"])
        except RegistryError as exc:
            raise CommandError(exc.message, returncode=2) from None
        env = options["env"] or default_environment()
        action = options["action"].replace("-", "_")
        ok = getattr(self, action)(spec, env)
        if not ok:
            sys.exit(1)

    def sync_secrets(self, spec: ProcessorSpec, env: str) -> bool:
        """Every declared secret exists in Modal; created from this environment when missing."""
        import modal
        from modal.exception import NotFoundError

        missing_required = False
        for name in spec.secrets_declared:
            try:
                modal.Secret.from_name(name, environment_name=env).hydrate()
                state = "present"
            except NotFoundError:
                if os.environ.get(name):
                    modal.Secret.objects.create(
                        name, {name: os.environ[name]}, environment_name=env
                    )
                    state = "created"
                else:
                    state = "missing"
                    missing_required |= name in spec.secrets_required
            self.stdout.write(f"{name}: {state}")
        return not missing_required

    def deploy(self, spec: ProcessorSpec, env: str) -> bool:
        from pytest_theory.adapters.modal_app import build_app

        if not spec.pins.get("amd64"):
            raise CommandError(
                f"{spec.ref} has no pinned amd64 image: run `theory-images pin` first"
            )
        if not self.sync_secrets(spec, env):
            raise CommandError("a required secret is missing in Modal and in this environment")
        import modal

        name = app_name(spec.ref, env)
        build_app(spec, env).app.deploy(name=name, environment_name=env)
        url = modal.Function.from_name(name, FUNCTION_NAME, environment_name=env).get_web_url()
        self.stdout.write(f"deployed {name} ({spec.pins['amd64']}) at {url}")
        return True

    def status(self, spec: ProcessorSpec, env: str) -> bool:
        import modal
        from modal.exception import NotFoundError

        name = app_name(spec.ref, env)
        try:
            url = modal.Function.from_name(name, FUNCTION_NAME, environment_name=env).get_web_url()
        except NotFoundError:
            self.stdout.write(f"{name}: not deployed in {env}")
            return False
        self.stdout.write(f"{name}: deployed at {url}; pinned {spec.pins.get('amd64', 'nothing')}")
        return True

    def undeploy(self, spec: ProcessorSpec, env: str) -> bool:
        import modal
        from modal.exception import NotFoundError

        name = app_name(spec.ref, env)
        try:
            modal.App.lookup(name, environment_name=env).stop()
        except NotFoundError:
            self.stdout.write(f"{name}: not deployed in {env}")
            return False
        self.stdout.write(f"{name}: stopped")
        return True
