"""The ``inprocess`` adapter: the processor's ASGI app in this process, for a fast lane without Docker.

The app is built from the processor's ``app/handler.py`` with exactly the
environment an adapter would pass a container, its world in a folder, and its
NDJSON log captured. Requests go through httpx's ``ASGITransport``, so the
envelopes and cids are those the container gives.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import sys
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx

from pytest_theory.adapters import http
from pytest_theory.adapters.base import (
    Adapter,
    AdapterError,
    Invocation,
    OnEvent,
    container_environment,
    present_secrets,
)
from pytest_theory.adapters.local import default_world_root
from pytest_theory.contracts.errors import ContractError, ErrorCode
from pytest_theory.processors.runtime import Handler, create_app
from pytest_theory.registry import ProcessorSpec


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


def load_handler(spec: ProcessorSpec) -> Handler:
    """``handle`` from the processor's ``app/handler.py``, imported as a package of its own."""
    app_dir = spec.directory / "app"
    digest = hashlib.sha256(str(app_dir).encode()).hexdigest()[:10]
    package = f"theory_inprocess_{spec.ref.dirname}_{digest}"
    if package not in sys.modules:
        module_spec = importlib.util.spec_from_file_location(
            package, app_dir / "__init__.py", submodule_search_locations=[str(app_dir)]
        )
        if module_spec is None or module_spec.loader is None:
            raise AdapterError(ErrorCode.ERR_REGISTRY, f"{app_dir} is not a processor app package")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[package] = module
        module_spec.loader.exec_module(module)
    handler: Handler = importlib.import_module(f"{package}.handler").handle
    return handler


def _local_or_pinned_digest(spec: ProcessorSpec) -> str:
    try:
        import docker

        from pytest_theory.images import content_tag

        return str(docker.from_env().images.get(content_tag(spec)).id)
    except Exception:  # no engine, or not built here: the registry's pin is the best we know
        pin = spec.pinned_image()
        return pin.rsplit("@", 1)[1] if pin else ""


@dataclass
class InprocessHandle:
    ref: str
    client: httpx.Client
    image_digest: str
    world_root: Path
    log: io.StringIO = field(repr=False)
    base_url: str = "http://processor"

    def stderr(self) -> str:
        return self.log.getvalue()

    def stdout(self) -> str | None:
        return None  # this process's stdout is shared; only a container's is observable

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
        self._digests: dict[str, str] = {}
        self._lock = threading.Lock()

    def digest_for(self, spec: ProcessorSpec) -> str:
        """The image's digest when known: given, built here for this source, or pinned.

        Looked up once per processor for this adapter's life.
        """
        if self.image_digest is not None:
            return self.image_digest
        if str(spec.path) not in self._digests:
            self._digests[str(spec.path)] = _local_or_pinned_digest(spec)
        return self._digests[str(spec.path)]

    def acquire(
        self,
        spec: ProcessorSpec,
        *,
        environment: Mapping[str, str] | None = None,
        secrets_present: Sequence[str] = (),
        world_root: str | Path | None = None,
        **_: Any,
    ) -> InprocessHandle:
        """The app for ``spec`` with ``environment`` (default: what an adapter passes a container)."""
        env = (
            dict(environment)
            if environment is not None
            else container_environment(
                self.digest_for(spec), present_secrets(spec, secrets_present)
            )
        )
        root = Path(world_root or self.world_root or default_world_root()).resolve()
        key = (str(spec.path), str(root), tuple(sorted(env.items())))
        with self._lock:
            handle = self._pool.get(key)
            if handle is None or not handle.alive():
                log = io.StringIO()
                app = create_app(
                    load_handler(spec),
                    registry_path=spec.path,
                    environ=env,
                    artifacts_root=root / "artifacts",
                    log_stream=log,
                )
                (root / "artifacts").mkdir(parents=True, exist_ok=True)
                client = httpx.Client(
                    transport=BlockingASGITransport(app), base_url="http://processor"
                )
                handle = InprocessHandle(
                    str(spec.ref), client, env.get("IMAGE_DIGEST", ""), root, log
                )
                self._pool[key] = handle
        return handle

    def close(self) -> None:
        with self._lock:
            handles, self._pool = list(self._pool.values()), {}
        for handle in handles:
            handle.close()

    def run(
        self, invocation: Invocation, opts: dict[str, Any], on_event: OnEvent | None
    ) -> dict[str, Any]:
        digest = self.digest_for(invocation.spec)
        try:
            handle = self.acquire(
                invocation.spec,
                environment=invocation.container_environment(digest),
                world_root=opts.get("world_root"),
            )
            return http.call(
                handle,
                invocation,
                timeout_s=opts.get("timeout_s"),
                expected_digest=opts.get("expected_digest") or digest or None,
                on_event=on_event,
            )
        except ContractError as exc:
            return invocation.error(exc, digest)
