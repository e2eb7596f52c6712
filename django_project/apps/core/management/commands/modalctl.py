"""``manage.py modalctl deploy|status|undeploy|sync-secrets --ref REF --env ENV``.

    modalctl deploy --ref ns/name@1 --env dev [--oci ghcr.io/owner/repo/ns-name@sha256:…]
    modalctl status --ref ns/name@1 --env dev
    modalctl sync-secrets --ref ns/name@1 --env dev
    modalctl undeploy --ref ns/name@1 --env dev

``deploy`` serves an image by digest (``--oci``, default the registry's amd64 pin) as a
Modal ASGI app (``pytest_theory.adapters.modal_app``), after making sure every secret
the registry declares exists in the Modal environment (created from this machine's
environment when missing, never printed). ``status`` finds the endpoint and asks it
which digest it serves (the ``meta.image_digest`` of the error envelope a refused
payload gets, so nothing runs), compared with the pin.

Every Modal SDK call is bounded (``--timeout``; ``--deploy-timeout`` for the deploy
itself): a failure or a delay is ``ERR_MODAL``, never a hang or a traceback.
Exit codes: 0 done; 1 not deployed, a required secret missing, or drift; 2 bad input
(ref, ``--oci``, no pin); 3 ``ERR_MODAL``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pytest_theory.adapters.base import AdapterError
from pytest_theory.adapters.modal import (
    MODAL_PLATFORM,
    app_name,
    bounded,
    default_environment,
    lookup_web_url,
)
from pytest_theory.contracts.digests import is_pinned, normalize_digest, repository_of
from pytest_theory.contracts.errors import ErrorCode
from pytest_theory.registry import ProcessorSpec, Registry, RegistryError

T = TypeVar("T")
EXIT_FAILED, EXIT_USAGE, EXIT_MODAL = 1, 2, 3


def loopback_host(reference: str) -> bool:
    """True when ``reference`` lives in a registry on this machine's loopback."""
    host = reference.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Command(BaseCommand):
    help = "Deploy a processor image by digest on Modal, inspect or stop it, sync its secrets."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["deploy", "status", "undeploy", "sync-secrets"])
        parser.add_argument("--ref", required=True)
        parser.add_argument(
            "--env", default=None, help="Modal environment (default $MODAL_ENVIRONMENT or dev)"
        )
        parser.add_argument(
            "--oci",
            default=None,
            metavar="REPO@sha256:…",
            help="deploy: the image to serve, by digest (default: the registry's amd64 pin)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=20.0,
            help="bound in seconds on each Modal lookup and on the endpoint (default 20)",
        )
        parser.add_argument(
            "--deploy-timeout",
            type=float,
            default=900.0,
            help="bound in seconds on the deploy itself, image build included (default 900)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            spec = Registry.discover(settings.THEORY_REGISTRY_ROOTS).get_spec(options["ref"])
        except RegistryError as exc:
            raise CommandError(exc.message, returncode=EXIT_USAGE) from None
        self.env = options["env"] or default_environment()
        self.timeout_s = options["timeout"]
        self.deploy_timeout_s = options["deploy_timeout"]
        self.oci = options["oci"]
        action = options["action"].replace("-", "_")
        try:
            ok = getattr(self, action)(spec)
        except AdapterError as exc:  # ERR_MODAL from a bounded SDK call
            raise CommandError(f"{exc.code}: {exc.message}", returncode=EXIT_MODAL) from None
        if not ok:
            sys.exit(EXIT_FAILED)

    def sdk(self, call: Callable[[], T], what: str, *, timeout_s: float | None = None) -> T:
        """One Modal SDK call, bounded; ``NotFoundError`` comes back for the caller to read."""
        from modal.exception import NotFoundError

        return bounded(
            call, timeout_s=timeout_s or self.timeout_s, what=what, passthrough=(NotFoundError,)
        )

    # -- actions ------------------------------------------------------------------------------

    def sync_secrets(self, spec: ProcessorSpec) -> bool:
        """Every declared secret exists in Modal; created from this environment when missing."""
        import modal
        from modal.exception import NotFoundError

        env = self.env
        missing_required = False
        for name in spec.secrets_declared:
            try:
                self.sdk(
                    lambda name=name: modal.Secret.from_name(name, environment_name=env).hydrate(),
                    f"secret lookup of {name}",
                )
                state = "present"
            except NotFoundError:
                if os.environ.get(name):
                    value = {name: os.environ[name]}
                    self.sdk(
                        lambda name=name, value=value: modal.Secret.objects.create(
                            name, value, environment_name=env
                        ),
                        f"secret creation of {name}",
                    )
                    state = "created"
                else:
                    state = "missing"
                    missing_required |= name in spec.secrets_required
            self.stdout.write(f"{name}: {state}")
        return not missing_required

    def image_to_deploy(self, spec: ProcessorSpec, oci: str | None) -> str:
        """``--oci`` or the registry's amd64 pin: a digest reference Modal can pull."""
        pin = spec.pins.get(MODAL_PLATFORM)
        image = oci or pin
        if not image:
            raise CommandError(
                f"ERR_REGISTRY: {spec.ref} has no pinned {MODAL_PLATFORM} image: run "
                "`theory-images pin --repository ghcr.io/OWNER/REPO` or pass --oci",
                returncode=EXIT_USAGE,
            )
        if not is_pinned(image):
            raise CommandError(
                f"ERR_REGISTRY: --oci {image!r} is not <repo>@sha256:<64 hex>: "
                "Modal deploys by digest only",
                returncode=EXIT_USAGE,
            )
        if loopback_host(image):
            raise CommandError(
                f"ERR_REGISTRY: {repository_of(image)} is in this machine's loopback registry, "
                "which Modal cannot pull from: pin to a registry Modal reaches "
                "(`theory-images pin --repository ghcr.io/OWNER/REPO`) or pass --oci",
                returncode=EXIT_USAGE,
            )
        if pin and normalize_digest(pin) != normalize_digest(image):
            self.stderr.write(
                f"warning: the registry pins {normalize_digest(pin)}; the modal adapter expects "
                "the pin and reports ERR_IMAGE_DIGEST_MISMATCH until registry.yaml pins this image"
            )
        return image

    def deploy(self, spec: ProcessorSpec) -> bool:
        from modal.exception import NotFoundError

        from pytest_theory.adapters.modal_app import build_app

        image = self.image_to_deploy(spec, self.oci)
        name = app_name(spec.ref, self.env)
        # A cheap, bounded first call: a dead network fails here, in seconds (not found: the
        # first deploy of this app).
        with contextlib.suppress(NotFoundError):
            lookup_web_url(spec.ref, self.env, self.timeout_s, passthrough=(NotFoundError,))
        if not self.sync_secrets(spec):
            raise CommandError(
                "a required secret is missing in Modal and in this environment",
                returncode=EXIT_FAILED,
            )
        deployment = build_app(spec, self.env, oci=image)
        self.sdk(
            lambda: deployment.app.deploy(name=name, environment_name=self.env),
            f"deploy of {name}",
            timeout_s=self.deploy_timeout_s,
        )
        url = lookup_web_url(spec.ref, self.env, self.timeout_s)
        self.stdout.write(f"deployed {name} ({image}) at {url}")
        return True

    def status(self, spec: ProcessorSpec) -> bool:
        from modal.exception import NotFoundError

        name = app_name(spec.ref, self.env)
        try:
            url = lookup_web_url(spec.ref, self.env, self.timeout_s, passthrough=(NotFoundError,))
        except NotFoundError:
            self.stdout.write(f"{name}: not deployed in {self.env}")
            return False
        serving = self.served_digest(url)
        pin = spec.pins.get(MODAL_PLATFORM)
        self.stdout.write(f"{name}: deployed at {url}; serving {serving}")
        if not pin:
            self.stdout.write(f"{name}: the registry pins no {MODAL_PLATFORM} image")
            return True
        if normalize_digest(pin) != serving:
            self.stdout.write(
                f"{name}: {ErrorCode.ERR_IMAGE_DIGEST_MISMATCH}: the registry pins {pin}; "
                "run `modalctl deploy`"
            )
            return False
        self.stdout.write(f"{name}: serves the pin {pin}")
        return True

    def served_digest(self, url: str) -> str:
        """The digest the endpoint reports: every envelope, a refusal too, carries it (SPEC §4)."""
        try:
            with httpx.Client(base_url=url, timeout=self.timeout_s) as client:
                client.get("/healthz").raise_for_status()
                envelope = client.post("/run", json={}).json()
            return normalize_digest(envelope["meta"]["image_digest"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise AdapterError(
                ErrorCode.ERR_MODAL, f"the endpoint {url} did not say its digest ({exc})"
            ) from None

    def undeploy(self, spec: ProcessorSpec) -> bool:
        import modal
        from modal.exception import NotFoundError

        name = app_name(spec.ref, self.env)
        try:
            self.sdk(
                lambda: modal.App.lookup(name, environment_name=self.env).stop(),
                f"stop of {name}",
            )
        except NotFoundError:
            self.stdout.write(f"{name}: not deployed in {self.env}")
            return False
        self.stdout.write(f"{name}: stopped")
        return True
