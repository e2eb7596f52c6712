"""Processor containers on testcontainers-python: start, reach, read logs, stop; and reap
what a crashed run left.

``ProcessorContainer`` is a thin ``DockerContainer``: its fluent ``with_*`` setup, ``start``
(create, start, then the wait strategy) and context manager are testcontainers'. Readiness
is a wait strategy, each bounded by its startup timeout: ``HealthzReady`` (SPEC section 2's
``GET /healthz``, what the adapters wait on) or testcontainers' ``HealthcheckWaitStrategy``
(Docker's own HEALTHCHECK verdict).

Ryuk, testcontainers' reaper container, is off: it would be one more container per run on a
shared engine, and it reaps only when its socket closes. Every container we start instead
carries labels naming it as ours and naming its owner process (host, pid and the pid's
start time, so a reused pid is not mistaken for the owner); ``reap_orphans`` removes
containers whose owner is gone, on the next run after a crash.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path

import docker
import httpx
from docker.errors import APIError, NotFound
from docker.models.containers import Container
from testcontainers.core.config import ConnectionMode, testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import HealthcheckWaitStrategy
from testcontainers.core.waiting_utils import WaitStrategy, WaitStrategyTarget

from pytest_theory.adapters import http
from pytest_theory.adapters.base import ImageConfig

LABEL_MANAGED = "org.pytest-theory.managed"
LABEL_OWNER = "org.pytest-theory.owner"
LABEL_REF = "org.pytest-theory.ref"
LABEL_SESSION = "org.pytest-theory.session"
#: The adapter that started the container: what its close() sweeps for leftovers.
LABEL_ADAPTER = "org.pytest-theory.adapter"
CONTAINER_PORT = 8000
SESSION = uuid.uuid4().hex[:8]
#: One test run's containers, across the processes it starts (inherited through the
#: environment): what a run counts as its own leaks on an engine shared with other runs.
LABEL_RUN = "org.pytest-theory.run"
RUN_ID = os.environ.setdefault("THEORY_RUN_ID", SESSION)
_names = itertools.count(1)
# Set on testcontainers' config, not through TESTCONTAINERS_RYUK_DISABLED and
# TESTCONTAINERS_CONNECTION_MODE, so nothing of this process's environment changes.
testcontainers_config.ryuk_disabled = True  # our label-and-owner reaper instead (see above)
testcontainers_config.connection_mode_override = ConnectionMode.docker_host


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (Linux), so pid reuse is told apart; "" elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def owner_label(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def owner_alive(label: str) -> bool:
    """True when the process named by an owner label still runs (or runs on another host)."""
    host, _, rest = label.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # not ours to judge
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not started or _start_time(pid) == started


def managed_containers(client: docker.DockerClient, *labels: str) -> list[Container]:
    """Our containers, narrowed by the engine to those carrying every ``labels`` (``k=v``)."""
    # ignore_removed: a container removed between the listing and its inspection is gone, not an error.
    containers: list[Container] = client.containers.list(
        all=True, filters={"label": [f"{LABEL_MANAGED}=1", *labels]}, ignore_removed=True
    )
    return containers


def remove_containers(containers: Iterable[Container]) -> list[str]:
    """Force-remove each container (and its anonymous volumes); returns the names removed."""
    removed = []
    for container in containers:
        try:
            container.remove(force=True, v=True)
            removed.append(container.name)
        except (NotFound, APIError):
            continue
    return removed


def reap_orphans(client: docker.DockerClient) -> list[str]:
    """Remove our containers whose owning process is gone; returns their names."""
    return remove_containers(
        c for c in managed_containers(client) if not owner_alive(c.labels.get(LABEL_OWNER, ""))
    )


class HealthzReady(WaitStrategy):
    """Ready when ``GET /healthz`` answers ``200 {"ok": true}``; ``ERR_HEALTH`` with the log tail
    when the container exits first or the startup timeout passes (``adapters.http.wait_healthy``,
    shared with the adapters that start nothing)."""

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        assert isinstance(container, ProcessorContainer)
        http.wait_healthy(container, self._startup_timeout)


class ProcessorContainer(DockerContainer):
    """One processor container::

    with ProcessorContainer(client, image).with_envs(IMAGE_DIGEST=d).with_world(root) as c:
        c.client.get("/healthz")
    """

    def __init__(
        self, docker_client: docker.DockerClient, image: str, *, ref: str = "", owner: str = ""
    ):
        slug = ref.replace("/", "-").replace("@", "-v").replace("_", "-") or "proc"
        #: Known before the container exists, so an interrupt mid-create can still remove it.
        self.name = f"theory-{slug}-{SESSION}-{next(_names)}"
        # The adapter's client, not a new one per container (and its API version, so the
        # client testcontainers makes first does not ask the engine for it).
        super().__init__(
            image, docker_client_kw={"version": docker_client.api.api_version}, name=self.name
        )
        self._docker.client = docker_client
        self.docker = docker_client
        self.ref = ref
        self.labels = {
            LABEL_MANAGED: "1",
            LABEL_OWNER: owner_label(),
            LABEL_SESSION: SESSION,
            LABEL_RUN: RUN_ID,
            LABEL_REF: ref,
            **({LABEL_ADAPTER: owner} if owner else {}),
        }
        # Published on 127.0.0.1 only (testcontainers' with_bind_ports binds every interface).
        # ``network=None``: the engine's default bridge, never the network testcontainers
        # would inherit from the container this runs in.
        self.ports = {f"{CONTAINER_PORT}/tcp": ("127.0.0.1", None)}  # type: ignore[dict-item]
        self.with_kwargs(labels=self.labels, network=None)
        self.waiting_for(HealthzReady())
        self._client: httpx.Client | None = None
        self._base_url = ""
        self._lock = threading.Lock()

    # -- setup -----------------------------------------------------------------

    def with_world(self, root: str | Path) -> ProcessorContainer:
        """Mount the world's ``/artifacts`` (a host folder) read-write at ``/artifacts``."""
        return self.with_volume_mapping(str(Path(root).resolve()), "/artifacts", "rw")

    def with_resources(self, *, cpu: str | float, memory_gb: float) -> ProcessorContainer:
        return self.with_kwargs(
            **self._kwargs, nano_cpus=int(float(cpu) * 1e9), mem_limit=f"{int(memory_gb * 1024)}m"
        )

    def with_user(self, user: str) -> ProcessorContainer:
        """Run as ``uid:gid`` so files written to the world belong to the caller."""
        return self.with_kwargs(**self._kwargs, user=user)

    def with_health_timeout(self, seconds: float) -> ProcessorContainer:
        """Bound the wait for readiness."""
        assert self._wait_strategy is not None
        self._wait_strategy.with_startup_timeout(timedelta(seconds=seconds))
        return self

    # -- lifecycle ---------------------------------------------------------------

    @property
    def container(self) -> Container | None:
        """The Docker SDK's container, once created."""
        return self._container

    @container.setter
    def container(self, value: Container | None) -> None:
        self._container = value

    def start(self) -> ProcessorContainer:
        """Create, start and wait until ready; a failed start removes what it started."""
        try:
            super().start()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<published port>``, looked up once the container exists."""
        if not self._base_url and self._container is not None:
            self._base_url = f"http://127.0.0.1:{self._published_port()}"
        return self._base_url

    def _published_port(self) -> str:
        # Hand-written rather than get_exposed_port: that one waits for "running" up to its
        # own timeout, where a container that crashed at start must be seen as gone at once.
        assert self._container is not None
        for _ in range(100):  # the port shows up in the inspect data a moment after start
            self._container.reload()
            bindings = (self._container.attrs["NetworkSettings"]["Ports"] or {}).get(
                f"{CONTAINER_PORT}/tcp"
            )
            if bindings:
                port: str = bindings[0]["HostPort"]
                return port
            if self._container.status == "exited":
                return "0"
            time.sleep(0.02)
        raise RuntimeError("the container's port was never published")

    def stop(self, force: bool = True, delete_volume: bool = True) -> None:
        """Remove the container (and any anonymous volume); safe to call twice, and also
        after an interrupt left ``start`` without the container's id.

        Hand-written: testcontainers' ``stop`` removes only a container whose id it got
        back, and closes the Docker client, which here is the adapter's, shared."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            self._container = None
        try:
            self.docker.api.remove_container(self.name, force=True, v=True)
        except NotFound:
            pass  # never created, or already gone
        except APIError as exc:
            if exc.status_code != 409:  # 409: another caller's removal is under way
                raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reaching it ---------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self.base_url,
                    limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
                )
            return self._client

    @property
    def id(self) -> str:
        return self.container.id if self.container is not None else ""

    def alive(self) -> bool:
        if self.container is None:
            return False
        try:
            self.container.reload()
        except NotFound:
            return False
        return self.container.status in ("created", "running")

    def logs(self, *, stdout: bool) -> str:
        if self.container is None:
            return ""
        data: bytes = self.container.logs(stdout=stdout, stderr=not stdout)
        return data.decode("utf-8", errors="replace")

    def image_config(self) -> ImageConfig:
        """The CMD and HEALTHCHECK of the image this container runs."""
        if self.container is None:
            raise RuntimeError("the container is not started")
        config = self.container.image.attrs["Config"] if self.container.image else {}
        return ImageConfig(
            cmd=list(config.get("Cmd") or []),
            healthcheck=" ".join((config.get("Healthcheck") or {}).get("Test", [])),
        )

    def exit_code_of(self, argv: Sequence[str]) -> int:
        """Run ``argv`` in the container; its exit code."""
        if self.container is None:
            raise RuntimeError("the container is not started")
        exit_code: int = self.container.exec_run(list(argv)).exit_code
        return exit_code

    def stderr(self) -> str:
        return self.logs(stdout=False)

    def wait_docker_healthy(self, timeout_s: float) -> None:
        """Wait for Docker's own HEALTHCHECK verdict ``healthy`` (testcontainers' strategy):
        ``TimeoutError`` past ``timeout_s``, ``RuntimeError`` on ``unhealthy``."""
        strategy = HealthcheckWaitStrategy().with_startup_timeout(timedelta(seconds=timeout_s))
        strategy.wait_until_ready(self)

    def docker_health(self, timeout_s: float) -> tuple[str, list[str]]:
        """Docker's HEALTHCHECK verdict once past ``starting`` (at most ``timeout_s``), with
        the output of its last two probes. Unlike ``wait_docker_healthy`` it reports any
        verdict, so a check can say what Docker saw."""
        assert self.container is not None, "the container has not started"
        deadline = time.monotonic() + timeout_s
        while True:  # the verdict comes after the HEALTHCHECK's interval: wait on the state
            self.container.reload()
            health = self.container.attrs["State"].get("Health") or {}
            status = str(health.get("Status", ""))
            if status != "starting" or time.monotonic() > deadline:
                probes = [str(p.get("Output", "")).strip()[:300] for p in health.get("Log") or []]
                return status, probes[-2:]
            time.sleep(0.5)

    def health_status(self) -> str:
        """Docker's own HEALTHCHECK verdict: ``starting``, ``healthy`` or ``unhealthy``."""
        if self.container is None:
            return ""
        self.container.reload()
        status: str = self.container.attrs["State"].get("Health", {}).get("Status", "")
        return status
