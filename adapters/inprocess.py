"""The ``inprocess`` adapter: the processor's own ASGI app in this process, a fast lane without Docker.

It serves what the image's uvicorn serves, ``app/http.py:app``, imported afresh
for each environment and world: the runtime's ``hosted`` block gives the app
exactly the environment an adapter would pass a container, a world folder for
``/artifacts`` and a captured stderr. Requests go through httpx's
``ASGITransport``, so the envelopes and cids are those the container gives.

An app that does not build on the runtime cannot be given a world here: it
would write to the literal ``/artifacts`` of this machine. Such a processor is
refused (``refusal``), and runs under ``--theory-adapter local``.

No Docker here (the fast lane must not load the Docker SDK): the digest is the
registry's pin, or the one given.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import re
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx

from pytest_theory.adapters.base import Adapter, AdapterError, ImageConfig, Launch
from pytest_theory.contracts.digests import normalize_digest
from pytest_theory.contracts.errors import ErrorCode
from pytest_theory.registry import ProcessorSpec

WORLD_ENV = "THEORY_WORLD_ROOT"


class BlockingASGITransport(httpx.BaseTransport):
    """httpx's ``ASGITransport`` for a synchronous ``httpx.Client``, through an anyio portal."""

    def __init__(self, app: Any):
        self._inner = httpx.ASGITransport(app)
        self._portal_cm: AbstractContextManager[Any] = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> tuple[int, httpx.Headers, bytes]:
            response = await self._inner.handle_async_request(request)
            return response.status_code, response.headers, await response.aread()

        status, headers, body = self._portal.call(send)
        return httpx.Response(status, headers=headers, content=body, request=request)

    def close(self) -> None:
        self._portal_cm.__exit__(None, None, None)


def default_world_root() -> Path:
    import os

    return Path(os.environ.get(WORLD_ENV) or tempfile.mkdtemp(prefix="theory-world-"))


def load_app(
    spec: ProcessorSpec, environment: Mapping[str, str], artifacts: Path, log: io.StringIO
) -> Any:
    """``app`` of the processor's ``app/http.py``, imported as a package of its own, hosted.

    Raises ``AdapterError`` when the app does not take its world from the runtime.
    """
    from pytest_theory.processors.runtime import hosted

    app_dir = spec.directory / "app"
    material = json.dumps([str(app_dir), sorted(environment.items()), str(artifacts)])
    package = (
        f"theory_inprocess_{spec.ref.dirname}_{hashlib.sha256(material.encode()).hexdigest()[:12]}"
    )
    module_spec = importlib.util.spec_from_file_location(
        package, app_dir / "__init__.py", submodule_search_locations=[str(app_dir)]
    )
    if module_spec is None or module_spec.loader is None:
        raise AdapterError(ErrorCode.ERR_REGISTRY, f"{app_dir} is not a processor app package")
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]  # a hosting asked for again is imported afresh, with its own log
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[package] = module
    try:
        module_spec.loader.exec_module(module)
        with hosted(environment, artifacts, log):
            app = importlib.import_module(f"{package}.http").app
    except AdapterError:
        raise
    except Exception as exc:  # the processor's own import failed: what a container would show
        raise AdapterError(
            ErrorCode.ERR_HEALTH,
            f"{spec.ref}: importing app/http.py failed ({type(exc).__name__}: {exc})",
            logs_tail=log.getvalue().splitlines()[-20:],
        ) from None
    processor = getattr(getattr(app, "state", None), "processor", None)
    root = getattr(getattr(processor, "config", None), "artifacts_root", None)
    if root is None or Path(root) != artifacts:
        raise AdapterError(
            ErrorCode.ERR_ADAPTER_INVOCATION,
            f"{spec.ref} cannot run in-process: its app/http.py:app does not build on "
            "pytest_theory's runtime, so it would write to this machine's literal /artifacts; "
            "run it with --theory-adapter local",
        )
    return app


def dockerfile_config(dockerfile: Path) -> ImageConfig:
    """CMD and HEALTHCHECK as the Dockerfile declares them (what the image will say)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    cmd = re.findall(r"^CMD\s+(\[.*\])\s*$", text, flags=re.M)
    health = re.findall(r"^HEALTHCHECK\s+(.*)$", text, flags=re.M)
    return ImageConfig(
        cmd=list(json.loads(cmd[-1])) if cmd else [], healthcheck=health[-1] if health else ""
    )


@dataclass
class InprocessHandle:
    ref: str
    client: httpx.Client
    image_digest: str
    world_root: Path
    dockerfile: Path
    log: io.StringIO = field(repr=False)
    environment_names: tuple[str, ...] = ()
    pinned_image: str | None = None
    base_url: str = "http://processor"

    def stderr(self) -> str:
        return self.log.getvalue()

    def stdout(self) -> None:
        return None  # this process's stdout is shared with pytest: not the processor's alone

    def image_config(self) -> ImageConfig:
        return dockerfile_config(self.dockerfile)

    def exec(self, argv: Sequence[str]) -> None:
        return None  # there is no image here

    def docker_health(self, timeout_s: float) -> None:
        return None  # nor a Docker to run its HEALTHCHECK

    def launch(self) -> Launch | None:
        """The pinned image (what this source builds to while the pins are current)."""
        return Launch(self.pinned_image, self.environment_names) if self.pinned_image else None

    def alive(self) -> bool:
        return not self.client.is_closed

    def close(self) -> None:
        self.client.close()


class InprocessAdapter(Adapter):
    name = "inprocess"

    def __init__(self, *, world_root: str | Path | None = None, image_digest: str | None = None):
        self.world_root = Path(world_root) if world_root else None
        self.image_digest = image_digest
        self._pool: dict[tuple[Any, ...], InprocessHandle] = {}
        self._lock = threading.Lock()

    def digest_for(self, spec: ProcessorSpec, opts: Mapping[str, Any] | None = None) -> str:
        """The digest given, else the registry's pin (which follows the image's content hash)."""
        if self.image_digest is not None:
            return self.image_digest
        pin = spec.pinned_image()
        return normalize_digest(pin) if pin else ""

    def refusal(self, spec: ProcessorSpec) -> str | None:
        """Why ``spec`` cannot run in this lane, or ``None``: its app is built once to see."""
        with tempfile.TemporaryDirectory(prefix="theory-probe-") as probe:
            try:
                load_app(spec, self.default_environment(spec), Path(probe), io.StringIO())
            except AdapterError as exc:
                return exc.message
        return None

    def acquire(
        self,
        spec: ProcessorSpec,
        *,
        environment: Mapping[str, str] | None = None,
        world_root: str | Path | None = None,
        opts: Mapping[str, Any] | None = None,
    ) -> InprocessHandle:
        """The app for ``spec`` with ``environment`` (default: what an adapter passes a container)."""
        env = dict(environment) if environment is not None else self.default_environment(spec)
        root = Path(world_root or self.world_root or default_world_root()).resolve()
        key = (str(spec.path), str(root), tuple(sorted(env.items())))
        with self._lock:
            handle = self._pool.get(key)
            if handle is None or not handle.alive():
                (root / "artifacts").mkdir(parents=True, exist_ok=True)
                log = io.StringIO()
                app = load_app(spec, env, root / "artifacts", log)
                client = httpx.Client(
                    transport=BlockingASGITransport(app), base_url="http://processor"
                )
                handle = InprocessHandle(
                    str(spec.ref),
                    client,
                    env.get("IMAGE_DIGEST", ""),
                    root,
                    spec.dockerfile,
                    log,
                    tuple(sorted(env)),
                    spec.pinned_image(),
                )
                self._pool[key] = handle
                self.boots += 1
        return handle

    def close(self, keep: bool = False) -> None:
        with self._lock:
            handles, self._pool = list(self._pool.values()), {}
        for handle in handles:
            handle.close()
