"""The Modal app that serves one processor's ASGI app from its pinned image.

Deploy with ``python manage.py modalctl deploy --ref llm/litellm@1 --env dev``
(or ``THEORY_REF=llm/litellm@1 modal deploy -m adapters.modal_app``). The image is
the registry's pinned amd64 image, unchanged: Modal imports ``app.http:app`` from
it instead of running its uvicorn CMD. Secrets are attached by name; their values
live in Modal. The world's ``/artifacts`` is a Modal volume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pytest_theory.adapters.modal import (
    FUNCTION_NAME,
    MODAL_PLATFORM,
    app_name,
    default_environment,
    volume_name,
)
from pytest_theory.contracts.digests import normalize_digest
from pytest_theory.registry import ProcessorSpec, Registry


@dataclass(frozen=True)
class ModalDeployment:
    app: Any  # modal.App
    function: Any  # the modal.Function serving the ASGI app


def build_app(spec: ProcessorSpec, environment: str, oci: str | None = None) -> ModalDeployment:
    """A ``modal.App`` named after the ref and environment, serving the processor from
    ``oci`` (``<repo>@sha256:…``), by default the registry's amd64 pin."""
    import modal

    pin = oci or spec.pins.get(MODAL_PLATFORM)
    if not pin:
        raise ValueError(
            f"{spec.ref} has no pinned {MODAL_PLATFORM} image; run `theory-images pin`"
        )
    image = modal.Image.from_registry(pin).env(
        {"IMAGE_DIGEST": normalize_digest(pin), "THEORY_LOG_STDIO": "1", "PYTHONPATH": "/srv"}
    )
    app = modal.App(app_name(spec.ref, environment))
    secrets = [
        modal.Secret.from_name(name, environment_name=environment) for name in spec.secrets_required
    ]
    volume = modal.Volume.from_name(
        volume_name(environment), environment_name=environment, create_if_missing=True
    )

    def serve() -> Any:
        from app.http import app as asgi  # inside the image (missing imports are ignored)

        return asgi

    function: Any = app.function(
        image=image,
        secrets=secrets,
        volumes={"/artifacts": volume},
        cpu=float(spec.runtime["cpu"]),
        memory=int(float(spec.runtime["memory_gb"]) * 1024),
        timeout=int(spec.timeout_s) + 30,
        serialized=True,
        name=FUNCTION_NAME,
    )(modal.asgi_app()(serve))
    return ModalDeployment(app, function)


def _app_from_environment() -> Any:
    ref = os.environ.get("THEORY_REF")
    if not ref:
        return None
    return build_app(Registry.discover().get_spec(ref), default_environment()).app


#: For ``modal deploy -m adapters.modal_app`` (set THEORY_REF and MODAL_ENVIRONMENT).
app = _app_from_environment()
