"""Stand-ins for what lies outside: the providers' servers and Modal's SDK lookup.

Each provider stand-in is a real HTTP server (uvicorn in a thread) bound on all
interfaces, so a processor container reaches it through the Docker bridge's
gateway address, and real mode runs end to end without the internet. The Modal
stand-in replaces only the SDK's lookup, insisting on the real signatures.
"""

from __future__ import annotations

import base64
import inspect
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import modal
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.waiting import wait_for

MODAL_URL = "https://theory-llm-litellm-v1-dev--serve.modal.run"
FILE_BYTES = b"\x89PNG fake image bytes from the fake Replicate"


def openai_compatible() -> FastAPI:
    """``POST /v1/chat/completions``, plain and streamed, answering from the last message."""
    app = FastAPI()
    app.state.requests = []

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Response:
        body = await request.json()
        app.state.requests.append({"auth": request.headers.get("authorization"), "body": body})
        text = f"Hello from the fake server: {body['messages'][-1]['content']}"
        base = {"id": "chatcmpl-1", "created": 1, "model": body["model"]}
        if not body.get("stream"):
            return JSONResponse(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": text},
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10},
                }
            )

        async def chunks() -> AsyncIterator[bytes]:
            words = text.split(" ")
            for i, word in enumerate(words):
                delta = {"content": word + (" " if i < len(words) - 1 else "")}
                chunk = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            last = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            yield f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return app


def replicate_compatible() -> FastAPI:
    """``POST /v1/models/{owner}/{name}/predictions`` answering at once with a file (a data URL)."""
    app = FastAPI()
    app.state.requests = []

    @app.post("/v1/models/{owner}/{name}/predictions")
    async def predict(owner: str, name: str, request: Request) -> JSONResponse:
        body = await request.json()
        app.state.requests.append(
            {
                "auth": request.headers.get("authorization"),
                "body": body,
                "prefer": request.headers.get("prefer"),
            }
        )
        data_url = "data:image/png;base64," + base64.b64encode(FILE_BYTES).decode()
        return JSONResponse(
            status_code=201,
            content={
                "id": "p-1",
                "model": f"{owner}/{name}",
                "version": "v",
                "status": "succeeded",
                "input": body["input"],
                "output": [data_url],
                "logs": "",
                "error": None,
                "metrics": {"predict_time": 0.1},
                "created_at": "2026-01-01T00:00:00Z",
                "urls": {"get": "http://fake/v1/predictions/p-1", "cancel": "http://fake/cancel"},
            },
        )

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(app: FastAPI) -> Iterator[int]:
    """Serve ``app`` on all interfaces in a thread; yields the port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="0.0.0.0", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout_s=10, what="the fake server started")
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def bridge_gateway(docker_client: Any) -> str:
    """The host's address as containers on the default bridge see it."""
    import ipaddress

    config = docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    # Some engines leave Gateway out; it is then the subnet's first host address.
    return str(config.get("Gateway") or ipaddress.ip_network(config["Subnet"])[1])


def refuse_real_modal_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to create a real Modal client fail at once (it would hang ~1 min)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a test reached the real Modal client")

    monkeypatch.setattr(modal.client._Client, "from_env", refuse)
    monkeypatch.setattr(modal.client._Client, "from_credentials", refuse)


class StandInFunction:
    """What ``modal.Function.from_name`` returns, minus the network."""

    def __init__(self, url: str | None, fail: Exception | None, delay: float):
        self.url, self.fail, self.delay = url, fail, delay

    def get_web_url(self) -> str | None:
        inspect.signature(modal.Function.get_web_url).bind(self)  # the real method takes no args
        time.sleep(self.delay)  # fault: a lookup that answers slowly
        if self.fail:
            raise self.fail
        return self.url


class Lookup:
    """A stand-in for the SDK's lookup that records calls checked against the real signature."""

    def __init__(
        self, url: str | None = MODAL_URL, fail: Exception | None = None, delay: float = 0.0
    ):
        self.calls: list[inspect.BoundArguments] = []
        self.function = StandInFunction(url, fail, delay)

    def __call__(self, *args: Any, **kwargs: Any) -> StandInFunction:
        self.calls.append(inspect.signature(modal.Function.from_name).bind(*args, **kwargs))
        return self.function
