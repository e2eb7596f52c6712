"""The ``modal`` adapter: the processor deployed on Modal, reached through its web endpoint.

The endpoint's URL comes from the Modal SDK (``Function.from_name(...).get_web_url()``),
never from string-building; after that the calls and checks are those of the
local adapter. The expected digest is the registry's pin (what should be
deployed), so a stale deployment is reported as drift.

``adapter_opts``: ``environment`` (default ``$MODAL_ENVIRONMENT`` or ``dev``),
``lookup_timeout_s`` (30), ``health_timeout_s`` (120, cold starts),
``timeout_s``, ``expected_digest``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from pytest_theory.adapters import http
from pytest_theory.adapters.base import Adapter, AdapterError, ImageConfig, Launch
from pytest_theory.contracts.digests import normalize_digest
from pytest_theory.contracts.errors import ContractError, ErrorCode
from pytest_theory.registry import ProcessorSpec, Ref

FUNCTION_NAME = "serve"
DEFAULT_ENVIRONMENT = "dev"
MODAL_PLATFORM = "amd64"


def app_name(ref: Ref, environment: str) -> str:
    """The Modal app that serves ``ref`` in ``environment``: ``theory-llm-litellm-v1-dev``."""
    return f"theory-{ref.slug}-{environment}"


def volume_name(environment: str) -> str:
    """The Modal volume mounted at ``/artifacts`` in ``environment``."""
    return f"theory-world-{environment}"


def default_environment() -> str:
    return os.environ.get("MODAL_ENVIRONMENT") or DEFAULT_ENVIRONMENT


T = TypeVar("T")


def bounded(
    call: Callable[[], T],
    *,
    timeout_s: float,
    what: str,
    passthrough: tuple[type[BaseException], ...] = (),
) -> T:
    """``call()`` (Modal SDK calls) within ``timeout_s``; ``ERR_MODAL`` on any failure or delay.

    The SDK retries an unreachable control plane for about a minute: the call runs in a
    daemon thread, so one that never returns cannot hold up interpreter exit either.
    Exceptions of the ``passthrough`` types (``NotFoundError`` for a lookup) are re-raised.
    """
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=f"modal-{what.split()[0]}", daemon=True).start()
    try:
        return future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        _quiet_abandoned_calls()
        raise AdapterError(
            ErrorCode.ERR_MODAL, f"Modal {what} timed out after {timeout_s:g}s"
        ) from None
    except passthrough:
        raise
    except Exception as exc:  # AuthError, connection errors, …: all a Modal failure
        raise AdapterError(
            ErrorCode.ERR_MODAL, f"Modal {what} failed ({type(exc).__name__})"
        ) from None


def _abandoned_call(record: logging.LogRecord) -> bool:
    """False for the log record of an abandoned SDK call that the SDK's exit closed."""
    from modal.exception import ClientClosed

    return not (record.exc_info and isinstance(record.exc_info[1], ClientClosed))


def _quiet_abandoned_calls() -> None:
    """An abandoned (timed-out) call still runs in the SDK's event loop; at exit the SDK
    closes its client under it and asyncio logs that with a traceback. The failure was
    already reported as ERR_MODAL: drop exactly those records."""
    logger = logging.getLogger("asyncio")
    if _abandoned_call not in logger.filters:
        logger.addFilter(_abandoned_call)


def lookup_web_url(
    ref: Ref,
    environment: str,
    timeout_s: float,
    passthrough: tuple[type[BaseException], ...] = (),
) -> str:
    """The deployed endpoint's URL, from the Modal SDK; ``ERR_MODAL`` on any failure or delay."""
    import modal

    name = app_name(ref, environment)

    def lookup() -> str | None:
        function = modal.Function.from_name(name, FUNCTION_NAME, environment_name=environment)
        url: str | None = function.get_web_url()
        return url

    url = bounded(lookup, timeout_s=timeout_s, what=f"lookup of {name}", passthrough=passthrough)
    if not url:
        raise AdapterError(ErrorCode.ERR_MODAL, f"{name} has no web endpoint")
    return url.rstrip("/")


@dataclass
class ModalHandle:
    ref: str
    base_url: str
    client: httpx.Client
    image_digest: str
    world_root: Path | None = None

    # A deployed function's logs and image live on Modal: nothing of them is observable here.
    def stderr(self) -> None:
        return None

    def stdout(self) -> None:
        return None

    def image_config(self) -> ImageConfig | None:
        return None

    def exec(self, argv: Sequence[str]) -> None:
        return None

    def docker_health(self, timeout_s: float) -> None:
        return None

    def launch(self) -> Launch | None:
        return None

    def alive(self) -> bool:
        return not self.client.is_closed

    def close(self) -> None:
        self.client.close()


class ModalAdapter(Adapter):
    name = "modal"
    sets_environment = False  # the deployment's environment is set when it is deployed

    def __init__(
        self,
        *,
        environment: str | None = None,
        lookup_timeout_s: float = 30.0,
        health_timeout_s: float = 120.0,
    ):
        self.environment = environment or default_environment()
        self.lookup_timeout_s = lookup_timeout_s
        self.health_timeout_s = health_timeout_s
        self._handles: dict[tuple[str, str], ModalHandle] = {}
        self._lock = threading.Lock()

    def digest_for(self, spec: ProcessorSpec, opts: Mapping[str, Any] | None = None) -> str:
        return self.pinned_digest(spec)

    @staticmethod
    def pinned_digest(spec: ProcessorSpec) -> str:
        pin = spec.pins.get(MODAL_PLATFORM)
        if not pin:
            raise ContractError(
                ErrorCode.ERR_REGISTRY,
                f"{spec.ref} has no pinned {MODAL_PLATFORM} image to run on Modal",
            )
        return normalize_digest(pin)

    def acquire(
        self,
        spec: ProcessorSpec,
        *,
        environment: Mapping[str, str] | None = None,
        world_root: str | Path | None = None,
        opts: Mapping[str, Any] | None = None,
    ) -> ModalHandle:
        """The deployed endpoint for ``spec``, found once per Modal environment and health-checked.

        ``environment`` and ``world_root`` are the deployment's own (``sets_environment``
        is false); ``opts``: ``environment`` (the Modal one), ``lookup_timeout_s``,
        ``health_timeout_s``.
        """
        opts = opts or {}
        env = opts.get("environment") or self.environment
        key = (str(spec.ref), env)
        with self._lock:
            handle = self._handles.get(key)
        if handle is not None and handle.alive():
            return handle
        url = lookup_web_url(spec.ref, env, opts.get("lookup_timeout_s") or self.lookup_timeout_s)
        handle = ModalHandle(
            str(spec.ref), url, httpx.Client(base_url=url), self.pinned_digest(spec)
        )
        try:
            http.wait_healthy(handle, opts.get("health_timeout_s") or self.health_timeout_s)
        except BaseException:
            handle.close()
            raise
        with self._lock:
            self._handles[key] = handle
            self.boots += 1
        return handle

    def close(self, keep: bool = False) -> None:
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle.close()
