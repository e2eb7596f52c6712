"""The ``local`` adapter: the processor's image in a Docker container on this machine.

Containers are reused across calls with the same image, world and environment
(a session-scoped pool), and always removed: on ``close()``, when a call leaves
one broken, at interpreter exit, and, for a run that crashed before any of
those, by the reaper on the next run.

``adapter_opts`` (all optional, JSON-friendly):

    world_root        host folder of the world; its ``artifacts/`` is mounted at /artifacts
    build             "auto" (build from source once per content hash), "always", "never" (pins only)
    reuse             keep the container for later calls (default True)
    health_timeout_s  bound on the wait for /healthz (default 60)
    timeout_s         bound on one call (default runtime.timeout_s + 10)
    expected_digest   the digest the processor must report (default: the image started)
"""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.errors import DockerException

from pytest_theory.adapters import http
from pytest_theory.adapters.base import (
    Adapter,
    AdapterError,
    Invocation,
    OnEvent,
    container_environment,
    present_secrets,
)
from pytest_theory.adapters.containers import ProcessorContainer, reap_orphans
from pytest_theory.contracts.errors import ContractError, ErrorCode
from pytest_theory.images import ImageBuildError, ImageUnavailable, ResolvedImage, resolve_image
from pytest_theory.registry import ProcessorSpec

WORLD_ENV = "THEORY_WORLD_ROOT"
#: Each Docker API call's bound (the SDK's per-request timeout; its default is 60 s).
DOCKER_TIMEOUT_S = 30
DEFAULTS: dict[str, Any] = {"build": "auto", "reuse": True, "health_timeout_s": 60.0}
_live: weakref.WeakSet[LocalAdapter] = weakref.WeakSet()


@dataclass
class LocalHandle:
    """A running processor container, as adapters and the plugin see it."""

    ref: str
    container: ProcessorContainer
    image: ResolvedImage
    world_root: Path

    @property
    def base_url(self) -> str:
        return self.container.base_url

    @property
    def client(self) -> httpx.Client:
        return self.container.client

    @property
    def image_digest(self) -> str:
        return self.image.digest

    def stderr(self) -> str:
        return self.container.logs(stdout=False)

    def stdout(self) -> str | None:
        return self.container.logs(stdout=True)

    def alive(self) -> bool:
        return self.container.alive()

    def close(self) -> None:
        self.container.stop()


def default_world_root() -> Path:
    return Path(os.environ.get(WORLD_ENV) or tempfile.mkdtemp(prefix="theory-world-"))


class LocalAdapter(Adapter):
    name = "local"

    def __init__(
        self,
        *,
        world_root: str | Path | None = None,
        docker_client: docker.DockerClient | None = None,
        **defaults: Any,
    ):
        self.world_root = Path(world_root) if world_root else None
        self.defaults = {**DEFAULTS, **defaults}
        self._docker = docker_client
        self._pool: dict[tuple[Any, ...], LocalHandle] = {}
        #: Every container started and not yet stopped, pooled or not: what ``close`` removes.
        self._started: set[ProcessorContainer] = set()
        self._starting: dict[tuple[Any, ...], threading.Lock] = {}
        self._lock = threading.Lock()
        self._reaped = False
        self._images: dict[tuple[str, str], ResolvedImage] = {}
        _live.add(self)

    # -- docker and images ----------------------------------------------------------

    def docker(self) -> docker.DockerClient:
        """The Docker client; ``ERR_DOCKER`` when no engine answers. Reaps orphans once."""
        with self._lock:
            if self._docker is None:
                try:
                    # Bounded: an engine that accepts and never answers costs this, not 60 s.
                    self._docker = docker.from_env(timeout=DOCKER_TIMEOUT_S)
                except DockerException as exc:
                    raise AdapterError(
                        ErrorCode.ERR_DOCKER, f"Docker is not available ({exc})"
                    ) from None
            if not self._reaped:
                self._reaped = True
                reap_orphans(self._docker)
            return self._docker

    def resolve(self, spec: ProcessorSpec, build: str | None = None) -> ResolvedImage:
        """The image to run, resolved once per processor and build mode for this adapter's life
        (hashing the build context on every call would dominate a warm call)."""
        build = build or self.defaults["build"]
        key = (str(spec.path), build)
        if key in self._images:
            return self._images[key]
        try:
            image = resolve_image(spec, self.docker(), build)
        except ImageUnavailable as exc:
            raise AdapterError(ErrorCode.ERR_IMAGE_UNAVAILABLE, str(exc)) from None
        except ImageBuildError as exc:
            lines = str(exc).splitlines()
            raise AdapterError(
                ErrorCode.ERR_IMAGE_UNAVAILABLE, lines[0], logs_tail=lines[1:]
            ) from None
        except DockerException as exc:
            raise AdapterError(ErrorCode.ERR_DOCKER, f"Docker failed ({exc})") from None
        self._images[key] = image
        return image

    def digest_for(self, spec: ProcessorSpec) -> str:
        return self.resolve(spec).digest

    # -- containers ---------------------------------------------------------------------

    def acquire(
        self,
        spec: ProcessorSpec,
        *,
        image: ResolvedImage | None = None,
        environment: Mapping[str, str] | None = None,
        secrets_present: Sequence[str] = (),
        world_root: str | Path | None = None,
        build: str | None = None,
        reuse: bool | None = None,
        health_timeout_s: float | None = None,
    ) -> LocalHandle:
        """A healthy container for ``spec``: the pooled one, or a new one.

        ``environment`` replaces what an adapter would pass (the contract suite
        uses this for its canary and CI variants); by default it is IMAGE_DIGEST,
        the declared secrets present and CI.
        """
        image = image or self.resolve(spec, build)
        env = (
            dict(environment)
            if environment is not None
            else container_environment(image.digest, present_secrets(spec, secrets_present))
        )
        root = Path(world_root or self.world_root or default_world_root()).resolve()
        artifacts = root / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        reuse = self.defaults["reuse"] if reuse is None else reuse
        timeout = float(health_timeout_s or self.defaults["health_timeout_s"])
        if not reuse:
            return self._start(spec, image, env, root, timeout)
        key = (image.reference, image.digest, str(root), tuple(sorted(env.items())))
        with self._lock:
            starting = self._starting.setdefault(key, threading.Lock())
        with starting:
            with self._lock:
                handle = self._pool.get(key)
            if handle is not None:
                # Not inspected (a Docker round trip per call): a pooled container that
                # died is found by the refused connection, and ``run`` starts another.
                return handle
            handle = self._start(spec, image, env, root, timeout)
            with self._lock:
                self._pool[key] = handle
            return handle

    def _start(
        self,
        spec: ProcessorSpec,
        image: ResolvedImage,
        env: dict[str, str],
        root: Path,
        timeout: float,
    ) -> LocalHandle:
        container = (
            ProcessorContainer(self.docker(), image.reference, ref=str(spec.ref))
            .with_env(**env)
            .with_world(root / "artifacts")
            .with_resources(cpu=spec.runtime["cpu"], memory_gb=spec.runtime["memory_gb"])
            .with_user(f"{os.getuid()}:{os.getgid()}")
        )
        handle = LocalHandle(str(spec.ref), container, image, root)
        with self._lock:
            self._started.add(container)
        try:
            container.start()
            http.wait_healthy(handle, timeout)
        except BaseException as exc:  # unhealthy, Docker failed, or interrupted: never left behind
            self.discard(handle)
            if isinstance(exc, DockerException):
                raise AdapterError(
                    ErrorCode.ERR_DOCKER, f"starting the container failed ({exc})"
                ) from None
            raise
        return handle

    def discard(self, handle: LocalHandle) -> None:
        """Stop ``handle`` and forget it, so the next call starts afresh."""
        with self._lock:
            for key, pooled in list(self._pool.items()):
                if pooled is handle:
                    del self._pool[key]
            self._started.discard(handle.container)
        handle.close()

    def detach(self) -> None:
        """Leave this adapter's containers running past exit (``--theory-keep``).

        They keep their session label, so the next run's reaper removes them.
        """
        _live.discard(self)
        with self._lock:
            self._started, self._pool = set(), {}

    def close(self) -> None:
        """Remove every container this adapter started."""
        with self._lock:
            containers, self._started, self._pool = list(self._started), set(), {}
        _stop_all(containers)

    # -- invoke -------------------------------------------------------------------------

    def run(
        self, invocation: Invocation, opts: dict[str, Any], on_event: OnEvent | None
    ) -> dict[str, Any]:
        opts = {**self.defaults, **opts}
        image_digest = ""
        try:
            image = self.resolve(invocation.spec, opts["build"])
            image_digest = image.digest
            try:
                return self._call(invocation, image, opts, on_event)
            except http.Unreachable:
                if not opts["reuse"]:
                    raise
                # The pooled container died since its last run and nothing was sent: once more.
                return self._call(invocation, image, opts, on_event)
        except ContractError as exc:
            return invocation.error(exc, image_digest)
        except DockerException as exc:
            return invocation.error(
                AdapterError(ErrorCode.ERR_DOCKER, f"Docker failed ({exc})"), image_digest
            )

    def _call(
        self,
        invocation: Invocation,
        image: ResolvedImage,
        opts: dict[str, Any],
        on_event: OnEvent | None,
    ) -> dict[str, Any]:
        """One call in the pooled container or a new one; one that failed is never reused."""
        handle = self.acquire(
            invocation.spec,
            image=image,
            environment=invocation.container_environment(image.digest),
            world_root=opts.get("world_root"),
            build=opts["build"],
            reuse=opts["reuse"],
            health_timeout_s=opts["health_timeout_s"],
        )
        try:
            return http.call(
                handle,
                invocation,
                timeout_s=opts.get("timeout_s"),
                expected_digest=opts.get("expected_digest") or image.digest,
                on_event=on_event,
            )
        except AdapterError as exc:
            if (
                exc.code in (ErrorCode.ERR_TIMEOUT, ErrorCode.ERR_ADAPTER_INVOCATION)
                or not handle.alive()
            ):
                self.discard(handle)  # hung or crashed: never hand it out again
            raise
        finally:
            if not opts["reuse"]:
                self.discard(handle)


def _stop_all(containers: list[ProcessorContainer]) -> None:
    """Remove containers side by side: each removal is a wait on the Docker daemon."""
    if len(containers) < 2:
        for container in containers:
            container.stop()
        return
    try:
        with ThreadPoolExecutor(min(len(containers), 8), thread_name_prefix="theory-rm") as pool:
            list(pool.map(ProcessorContainer.stop, containers))
    except RuntimeError:  # no new threads at interpreter shutdown (the atexit hook)
        for container in containers:
            container.stop()


def _close_all() -> None:
    for adapter in list(_live):
        adapter.close()


atexit.register(_close_all)
