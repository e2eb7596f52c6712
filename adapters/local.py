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
    expected_digest   the digest the processor must report (default: the pin when the
                      run is pinned, else the image started)
"""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.errors import DockerException

from pytest_theory.adapters.base import (
    Adapter,
    AdapterError,
    ImageConfig,
    Launch,
    ProcessorHandle,
)
from pytest_theory.adapters.containers import (
    LABEL_ADAPTER,
    ProcessorContainer,
    managed_containers,
    reap_orphans,
    remove_containers,
)
from pytest_theory.contracts.errors import ErrorCode
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

    def stdout(self) -> str:
        return self.container.logs(stdout=True)

    def image_config(self) -> ImageConfig:
        return self.container.image_config()

    def exec(self, argv: Sequence[str]) -> int:
        return self.container.exit_code_of(argv)

    def docker_health(self, timeout_s: float) -> tuple[str, list[str]]:
        return self.container.docker_health(timeout_s)

    def launch(self) -> Launch:
        return Launch(self.image.reference, tuple(sorted(self.container.env)))

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
        #: Labels every container this adapter starts, so close() can find what it missed.
        self.id = uuid.uuid4().hex[:12]
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
        with self.errors():
            image = resolve_image(spec, self.docker(), build)
        self._images[key] = image
        return image

    def digest_for(self, spec: ProcessorSpec, opts: Mapping[str, Any] | None = None) -> str:
        return self.resolve(spec, (opts or {}).get("build")).digest

    def expected_pin(self, spec: ProcessorSpec, opts: Mapping[str, Any]) -> str | None:
        image = self.resolve(spec, opts.get("build"))
        return image.expected_digest if image.pin else None

    @contextmanager
    def errors(self) -> Iterator[None]:
        """The Docker SDK's and the image builder's exceptions, as adapter errors."""
        try:
            yield
        except ImageUnavailable as exc:
            raise AdapterError(ErrorCode.ERR_IMAGE_UNAVAILABLE, str(exc)) from None
        except ImageBuildError as exc:
            lines = str(exc).splitlines()
            raise AdapterError(
                ErrorCode.ERR_IMAGE_UNAVAILABLE, lines[0], logs_tail=lines[1:]
            ) from None
        except DockerException as exc:
            raise AdapterError(ErrorCode.ERR_DOCKER, f"Docker failed ({exc})") from None

    # -- containers ---------------------------------------------------------------------

    def acquire(
        self,
        spec: ProcessorSpec,
        *,
        environment: Mapping[str, str] | None = None,
        world_root: str | Path | None = None,
        opts: Mapping[str, Any] | None = None,
    ) -> LocalHandle:
        """A healthy container for ``spec``: the pooled one, or a new one.

        ``opts``: ``build``, ``reuse`` and ``health_timeout_s`` for this call
        (defaults: the adapter's).
        """
        opts = {**self.defaults, **(opts or {})}
        image = self.resolve(spec, opts["build"])
        env = dict(environment) if environment is not None else self.default_environment(spec)
        root = Path(world_root or self.world_root or default_world_root()).resolve()
        artifacts = root / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        timeout = float(opts["health_timeout_s"])
        if not opts["reuse"]:
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
            ProcessorContainer(self.docker(), image.reference, ref=str(spec.ref), owner=self.id)
            .with_envs(**env)
            .with_world(root / "artifacts")
            .with_resources(cpu=spec.runtime["cpu"], memory_gb=spec.runtime["memory_gb"])
            .with_user(f"{os.getuid()}:{os.getgid()}")
            .with_health_timeout(timeout)
        )
        handle = LocalHandle(str(spec.ref), container, image, root)
        with self._lock:
            self._started.add(container)
            self.boots += 1
        try:
            container.start()  # and waits for /healthz (HealthzReady), bounded by timeout
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

    def release(self, handle: ProcessorHandle, *, broken: bool) -> None:
        """Discard a container a call left broken, or one that was not pooled (``reuse`` off)."""
        assert isinstance(handle, LocalHandle)
        with self._lock:
            pooled = any(h is handle for h in self._pool.values())
        if broken or not pooled:
            self.discard(handle)

    def close(self, keep: bool = False) -> None:
        """Remove every container this adapter started; ``keep`` (``--theory-keep``) leaves
        them running past exit, with their session label, so the next run's reaper
        removes them."""
        if keep:
            _live.discard(self)
        with self._lock:
            containers, self._started, self._pool = list(self._started), set(), {}
        if not keep:
            try:
                _stop_all(containers)
            finally:
                self._sweep()

    def _sweep(self) -> None:
        """Remove any container of this adapter still there: one whose create was in flight
        when an interrupt removed it by name, or whose removal the engine refused mid-start.
        Best effort (the next session's reaper removes what is left); bounded per call."""
        if self._docker is None:
            return  # never reached Docker: it started nothing
        with suppress(DockerException):
            remove_containers(managed_containers(self._docker, f"{LABEL_ADAPTER}={self.id}"))


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
