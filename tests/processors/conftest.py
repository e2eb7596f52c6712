"""Driving a processor app in-process, the way the tests of the runtime need."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder

from pytest_theory.processors.runtime import Handler, create_app
from pytest_theory.registry import Registry

REGISTRY = Registry.discover()
LLM = REGISTRY.get_spec("llm/litellm@1")
DIGEST = "sha256:" + "12" * 32


def sse_events(text: str) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [decoder.decode(line) for line in text.splitlines()]
    return [e for e in events if e is not None]


@dataclass
class App:
    """An app under test, its world root and its captured NDJSON log."""

    handler: Handler
    world: Path
    environ: dict[str, str] = field(default_factory=dict)
    registry_path: Path = LLM.path
    log: io.StringIO = field(default_factory=io.StringIO)

    def __post_init__(self) -> None:
        self.app = create_app(
            self.handler,
            registry_path=self.registry_path,
            environ=self.environ,
            artifacts_root=self.world,
            log_stream=self.log,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://processor"
            ) as client:
                return await client.request(method, path, timeout=30, **kwargs)

        return asyncio.run(go())

    def run(self, body: Any = None, **kwargs: Any) -> httpx.Response:
        return (
            self.request("POST", "/run", json=body, **kwargs)
            if body is not None
            else self.request("POST", "/run", **kwargs)
        )

    def stream(self, body: Any) -> list[ServerSentEvent]:
        return sse_events(self.request("POST", "/run-stream", json=body).text)

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.world)) for p in self.world.rglob("*") if p.is_file())


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., App]:
    from pytest_theory.processors.llm_litellm.app.handler import handle

    def make(
        handler: Handler = handle, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> App:
        env = {"IMAGE_DIGEST": DIGEST, **(environ or {})}
        world = tmp_path / f"world{len(list(tmp_path.iterdir()))}"
        world.mkdir()
        return App(handler, world, env, **kwargs)

    return make


@pytest.fixture
def taken_over(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """``take_over_process_output`` on a logger writing here; everything it changes restored.

    Taken over when the test starts (pytest's capture sets ``sys.stdout`` again between a
    fixture's setup and the test), so the test itself takes over (or makes an app that does)."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {n: _logger_state(logging.getLogger(n)) for n in names}
    # Start as a fresh process does: an earlier test's uvicorn.Config(log_level=...) leaves
    # its levels on these loggers, which would drop the access lines before the bridge.
    for name in names[1:]:
        logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger(name).disabled = False
    logging.getLogger().setLevel(logging.WARNING)
    try:
        yield stream
    finally:
        logging.captureWarnings(False)
        for name, (handlers, propagate, level, disabled) in saved.items():
            named = logging.getLogger(name)
            named.handlers, named.propagate, named.disabled = handlers, propagate, disabled
            named.setLevel(level)


def _logger_state(logger: logging.Logger) -> tuple[list[logging.Handler], bool, int, bool]:
    return logger.handlers[:], logger.propagate, logger.level, logger.disabled
