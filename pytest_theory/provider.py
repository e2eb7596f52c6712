"""A local provider for the split-secret check: an OpenAI-compatible server on this machine
that streams the caller's API key back in 3-character tokens.

A processor reaches it only when its registry declares a secret naming a base URL
(``*_BASE_URL``) beside the key it requires; the check is not run otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

TOKEN_CHARS = 3
START_TIMEOUT_S = 10.0


def key_echoing_app() -> FastAPI:
    """``POST /v1/chat/completions``: the bearer key, streamed back in 3-character tokens."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> StreamingResponse:
        body = await request.json()
        key = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        text = f"your key is {key}, in pieces"
        base = {"id": "c-1", "created": 1, "model": str(body.get("model", "m"))}

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            event = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            return f"data: {json.dumps(event)}\n\n".encode()

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(text), TOKEN_CHARS):
                yield chunk({"content": text[i : i + TOKEN_CHARS]}, None)
            yield chunk({}, "stop") + b"data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return app


@contextmanager
def serving(host: str) -> Iterator[int]:
    """Serve ``key_echoing_app`` on ``host`` in a thread; yields its port (start bounded)."""
    server = uvicorn.Server(uvicorn.Config(key_echoing_app(), host=host, port=0, log_level="error"))
    thread = threading.Thread(target=server.run, name="theory-provider", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the local provider did not start")
        time.sleep(0.02)
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)


def address_for_processors() -> str:
    """An address of this machine that its processors reach, in a container or in-process:
    Docker's bridge gateway (a local address of this machine too) when an engine answers,
    else 127.0.0.1."""
    import ipaddress

    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=5)
        config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    except (DockerException, KeyError, IndexError):
        return "127.0.0.1"
    return str(config.get("Gateway") or ipaddress.ip_network(config["Subnet"])[1])
