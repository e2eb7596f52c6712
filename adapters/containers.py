"""Processor containers: start, reach, read logs, stop; and reap what a crashed run left.

Every container we start carries labels naming it as ours and naming its owner
process (host, pid and the pid's start time, so a reused pid is not mistaken
for the owner). ``reap_orphans`` removes containers whose owner is gone.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import httpx
from docker.errors import APIError, NotFound
from docker.models.containers import Container

LABEL_MANAGED = "org.pytest-theory.managed"
LABEL_OWNER = "org.pytest-theory.owner"
LABEL_REF = "org.pytest-theory.ref"
LABEL_SESSION = "org.pytest-theory.session"
CONTAINER_PORT = 8000
SESSION = uuid.uuid4().hex[:8]
#: One test run's containers, across the processes it starts (inherited through the
#: environment): what a run counts as its own leaks on an engine shared with other runs.
LABEL_RUN = "org.pytest-theory.run"
RUN_ID = os.environ.setdefault("THEORY_RUN_ID", SESSION)
_names = itertools.count(1)


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


def managed_containers(client: docker.DockerClient) -> list[Container]:
    # ignore_removed: a container removed between the listing and its inspection is gone, not an error.
    containers: list[Container] = client.containers.list(
        all=True, filters={"label": f"{LABEL_MANAGED}=1"}, ignore_removed=True
    )
    return containers


def reap_orphans(client: docker.DockerClient) -> list[str]:
    """Remove our containers whose owning process is gone; returns their names."""
    reaped = []
    for container in managed_containers(client):
        if not owner_alive(container.labels.get(LABEL_OWNER, "")):
            try:
                container.remove(force=True, v=True)
                reaped.append(container.name)
            except (NotFound, APIError):
                continue
    return reaped


class ProcessorContainer:
    """One processor container, testcontainers-style::

    with ProcessorContainer(client, image).with_env(IMAGE_DIGEST=d).with_world(root) as c:
        c.client.get("/healthz")
    """

    def __init__(self, docker_client: docker.DockerClient, image: str, *, ref: str = ""):
        self.docker = docker_client
        self.image = image
        self.ref = ref
        self.environment: dict[str, str] = {}
        self.volumes: dict[str, dict[str, str]] = {}
        self.labels = {
            LABEL_MANAGED: "1",
            LABEL_OWNER: owner_label(),
            LABEL_SESSION: SESSION,
            LABEL_RUN: RUN_ID,
            LABEL_REF: ref,
        }
        self.resources: dict[str, Any] = {}
        self.user: str | None = None
        slug = ref.replace("/", "-").replace("@", "-v").replace("_", "-") or "proc"
        #: Known before the container exists, so an interrupt mid-create can still remove it.
        self.name = f"theory-{slug}-{SESSION}-{next(_names)}"
        self.container: Container | None = None
        self.base_url = ""
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    # -- setup -----------------------------------------------------------------

    def with_env(self, **environment: str) -> ProcessorContainer:
        self.environment.update(environment)
        return self

    def with_world(self, root: str | Path) -> ProcessorContainer:
        """Mount the world's ``/artifacts`` (a host folder) read-write at ``/artifacts``."""
        self.volumes[str(Path(root).resolve())] = {"bind": "/artifacts", "mode": "rw"}
        return self

    def with_resources(self, *, cpu: str | float, memory_gb: float) -> ProcessorContainer:
        self.resources = {
            "nano_cpus": int(float(cpu) * 1e9),
            "mem_limit": f"{int(memory_gb * 1024)}m",
        }
        return self

    def with_user(self, user: str) -> ProcessorContainer:
        """Run as ``uid:gid`` so files written to the world belong to the caller."""
        self.user = user
        return self

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> ProcessorContainer:
        self.container = self.docker.containers.run(
            self.image,
            detach=True,
            name=self.name,
            environment=self.environment,
            volumes=self.volumes,
            labels=self.labels,
            ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", None)},
            user=self.user,
            **self.resources,
        )
        self.base_url = f"http://127.0.0.1:{self._published_port()}"
        return self

    def _published_port(self) -> str:
        assert self.container is not None
        for _ in range(100):  # the port shows up in the inspect data a moment after start
            self.container.reload()
            bindings = (self.container.attrs["NetworkSettings"]["Ports"] or {}).get(
                f"{CONTAINER_PORT}/tcp"
            )
            if bindings:
                port: str = bindings[0]["HostPort"]
                return port
            if self.container.status == "exited":
                return "0"
            time.sleep(0.02)
        raise RuntimeError("the container's port was never published")

    def stop(self) -> None:
        """Remove the container (and any anonymous volume); safe to call twice, and also
        after an interrupt left ``start`` without the container's id."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            self.container = None
        try:
            self.docker.api.remove_container(self.name, force=True, v=True)
        except NotFound:
            pass  # never created, or already gone
        except APIError as exc:
            if exc.status_code != 409:  # 409: another caller's removal is under way
                raise

    def __enter__(self) -> ProcessorContainer:
        return self.start()

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

    def health_status(self) -> str:
        """Docker's own HEALTHCHECK verdict: ``starting``, ``healthy`` or ``unhealthy``."""
        if self.container is None:
            return ""
        self.container.reload()
        status: str = self.container.attrs["State"].get("Health", {}).get("Status", "")
        return status
