"""The FastAPI app every processor serves: /healthz, /run, /run-stream and /openapi.json.

A processor's ``app/http.py`` is one line::

    app = create_app(handle, registry_path=Path(__file__).parent.parent / "registry.yaml")

Everything of the contract that is not the handler's own work lives here:
payload and inputs validation, canonical error envelopes with the statuses of
SPEC.md, write-prefix confinement, atomic outputs and receipts, logs, timeouts.

What the app cannot reach: SPEC fixes the image's command to
``uvicorn app.http:app --host 0.0.0.0 --port 8000``, so uvicorn's own HTTP layer
(h11) answers malformed framing (a bad request line, broken chunking) with its
bare ``text/plain`` 400 before any request reaches this app, and it alone could
time out slow request headers. It closes idle keep-alive connections after 5 s
(its default); the app bounds the body (``BODY_READ_TIMEOUT_S``, the size limit).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.exceptions import HTTPException as StarletteHTTPException

from pytest_theory.contracts import schemas
from pytest_theory.contracts.errors import ContractError, ErrorCode, error_envelope
from pytest_theory.contracts.hashing import HASH_SCHEMA, inputs_hash, memo_key, seed_for
from pytest_theory.contracts.modes import Mode, resolve_mode
from pytest_theory.contracts.openapi import openapi_document
from pytest_theory.contracts.worldpath import expand_write_prefix, validate_execution_id
from pytest_theory.processors.runtime.api import (
    Handler,
    ProviderError,
    Result,
    RunCancelled,
    RunContext,
)
from pytest_theory.processors.runtime.config import ProcessorConfig
from pytest_theory.processors.runtime.logs import (
    NdjsonLogger,
    take_over_process_output,
    utc_timestamp,
)
from pytest_theory.processors.runtime.world import (
    CommitGate,
    World,
    execution_folder,
    output_world_path,
    plan_run_files,
)

STREAM_EVENTS = frozenset({"progress", "log", "token"})
#: Set by a host serving this app in its own process (the harness's inprocess adapter):
#: what ``create_app`` uses in place of the process's environment, ``/artifacts`` and stderr.
HOSTING: ContextVar[Hosting | None] = ContextVar("theory_hosting", default=None)
#: Handler threads. A timed-out handler keeps its thread until it notices, so
#: leave room beyond the CPU count.
HANDLER_THREADS = 32
#: A request body must arrive whole within this (a client trickling bytes holds no slot for long).
BODY_READ_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Hosting:
    environ: Mapping[str, str]
    artifacts_root: Path
    log_stream: TextIO


@contextmanager
def hosted(environ: Mapping[str, str], artifacts_root: Path, log_stream: TextIO) -> Iterator[None]:
    """Apps created (``app/http.py`` imported) inside this block use these, not the process's."""
    token = HOSTING.set(Hosting(dict(environ), artifacts_root, log_stream))
    try:
        yield
    finally:
        HOSTING.reset(token)


@dataclass(frozen=True)
class ValidRun:
    execution_id: str
    trace_id: str
    mode: Mode
    prefix: str
    inputs: dict[str, Any]
    fault: str | None


class Processor:
    """One processor's request handling, independent of the web framework around it."""

    def __init__(self, handler: Handler, config: ProcessorConfig, log_stream: TextIO | None = None):
        self.handler = handler
        self.config = config
        self.logger = NdjsonLogger(config.ref, stream=log_stream, redactor=config.redactor)
        self.world = World(config.artifacts_root, max_artifact_bytes=config.max_artifact_bytes)
        self.executor = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="handler")
        self.inputs_validator = schemas.inputs_validator(config.inputs_schema)

    # -- envelopes ---------------------------------------------------------

    def error(self, exc: ContractError, execution_id: str = "") -> tuple[int, dict[str, Any]]:
        envelope = error_envelope(
            exc.code,
            exc.message,
            execution_id=execution_id,
            image_digest=self.config.image_digest,
            env_fingerprint=self.config.env_fingerprint,
        )
        return exc.status, envelope

    def encode(self, envelope: Mapping[str, Any]) -> str:
        """Envelope JSON with every secret value redacted."""
        return self.config.redactor.text(json.dumps(self.config.redactor.obj(envelope)))

    # -- validation --------------------------------------------------------

    def validate(self, payload: dict[str, Any]) -> ValidRun:
        """SPEC order: payload shape, mode, CI safety, execution id, prefix, inputs, secrets."""
        errors = list(schemas.validator("payload").iter_errors(payload))
        shape = [e for e in errors if list(e.absolute_path)[:1] != ["mode"]]
        if shape:
            raise ContractError(ErrorCode.ERR_PAYLOAD, schemas.first_problem(shape))
        if errors:
            raise ContractError(ErrorCode.ERR_MODE, "mode must be 'mock' or 'real'")
        if payload["ref"] != self.config.ref:
            raise ContractError(ErrorCode.ERR_PAYLOAD, f"ref must be {self.config.ref}")
        mode = resolve_mode(payload["mode"], self.config.environ)
        execution_id = validate_execution_id(payload["execution_id"])
        prefix = expand_write_prefix(payload["write_prefix"], execution_id)
        # Early and cheap; the commit itself walks without following links, whatever changed.
        self.world.check_writable(prefix)
        self.world.check_writable(execution_folder(execution_id))
        if _has_non_finite(payload["inputs"]):
            raise ContractError(
                ErrorCode.ERR_INPUTS, "inputs hold a number too large for a JSON double"
            )
        inputs_errors = list(self.inputs_validator.iter_errors(payload["inputs"]))
        if inputs_errors:
            raise ContractError(
                ErrorCode.ERR_INPUTS, schemas.first_problem(inputs_errors, "inputs")
            )
        if mode is Mode.REAL:
            missing = [
                n for n in self.config.secrets_required if n not in self.config.secrets_present
            ]
            if missing:
                raise ContractError(
                    ErrorCode.ERR_MISSING_SECRET,
                    f"required secret(s) not set: {', '.join(missing)}",
                )
        meta = payload.get("meta") or {}
        fault = meta.get("fault") if self.config.fault_injection else None
        trace_id = meta.get("trace_id") or execution_id
        return ValidRun(execution_id, trace_id, mode, prefix, payload["inputs"], fault)

    # -- running -----------------------------------------------------------

    async def execute(
        self,
        payload: dict[str, Any] | ContractError,
        emit: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Validate and run one payload; always returns ``(http_status, envelope)``."""
        started = time.monotonic()
        ids = _ids_of(payload)
        self.logger.log("http.run.start", ref=self.config.ref, **ids)
        try:
            if isinstance(payload, ContractError):
                raise payload
            run = self.validate(payload)
        except ContractError as exc:
            return self._settle(started, ids, *self.error(exc, _valid_id(ids["execution_id"])), exc)
        ids = {"execution_id": run.execution_id, "trace_id": run.trace_id}
        cancelled = threading.Event()
        gate = CommitGate()
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(
            self.executor, self._run_and_write, run, emit, cancelled, gate, started
        )
        try:
            done, _ = await asyncio.wait({job}, timeout=self.config.timeout_s)
            if not done and gate.cancel():
                # Out of time and not committing: nothing of this run will be committed.
                cancelled.set()
                failure = ContractError(ErrorCode.ERR_TIMEOUT, "the run exceeded runtime.timeout_s")
                return self._settle(started, ids, *self.error(failure, run.execution_id), failure)
            envelope = await job  # done, or its commit began in time: a couple of renames
        except (ContractError, RunCancelled) as raised:
            failure = (
                raised
                if isinstance(raised, ContractError)
                else ContractError(ErrorCode.ERR_TIMEOUT, "the run exceeded runtime.timeout_s")
            )
            return self._settle(started, ids, *self.error(failure, run.execution_id), failure)
        except Exception as raised:  # the handler's bug: a canonical envelope, never a page
            self.logger.log("handler.exception", "error", exc_type=type(raised).__name__, **ids)
            failure = ContractError(ErrorCode.ERR_INTERNAL, "the processor failed unexpectedly")
            return self._settle(started, ids, *self.error(failure, run.execution_id), failure)
        return self._settle(started, ids, 200, envelope, None)

    def _settle(
        self,
        started: float,
        ids: dict[str, str],
        status: int,
        envelope: dict[str, Any],
        exc: ContractError | None,
    ) -> tuple[int, dict[str, Any]]:
        elapsed_ms = int((time.monotonic() - started) * 1000)
        if exc is not None:
            self.logger.log(
                "http.run.error",
                "warn" if status < 500 else "error",
                reason=exc.code.value,
                message=exc.message,
                **ids,
            )
        self.logger.log(
            "http.run.settle",
            status=envelope["status"],
            http_status=status,
            elapsed_ms=elapsed_ms,
            **ids,
        )
        return status, envelope

    def _run_and_write(
        self,
        run: ValidRun,
        emit: Callable[[str, dict[str, Any]], None] | None,
        cancelled: threading.Event,
        gate: CommitGate,
        started: float,
    ) -> dict[str, Any]:
        """Runs in a handler thread: call the handler, then write outputs and receipts."""
        config = self.config
        streaming = emit is not None
        emit = emit or (lambda event, data: None)
        ihash = inputs_hash(run.inputs)
        ctx = RunContext(
            execution_id=run.execution_id,
            trace_id=run.trace_id,
            ref=config.ref,
            mode=run.mode.value,
            inputs=run.inputs,
            inputs_hash=ihash,
            seed=seed_for(ihash),
            secrets=config.secrets_for(run.mode),
            emit=emit,
            streaming=streaming,
            read_artifact=self.world.read,
            log=lambda event, level="info", **f: self.logger.log(
                event, level, execution_id=run.execution_id, trace_id=run.trace_id, **f
            ),
            cancelled=cancelled,
        )
        emit("progress", {"stage": "running"})
        result = self._call_handler(ctx, run.fault)
        ctx.check_cancelled()
        emit("progress", {"stage": "writing"})
        outputs = []
        for output in result.outputs:
            declared = config.declared_output(output.relpath)
            if declared is None:
                raise ContractError(
                    ErrorCode.ERR_INTERNAL,
                    "the handler produced an output registry.yaml does not declare",
                )
            path = output_world_path(run.prefix, output.relpath)
            outputs.append((path, config.redactor.data(output.data), declared["mime"]))
        if len({p for p, _, _ in outputs}) != len(outputs):
            raise ContractError(
                ErrorCode.ERR_INTERNAL, "the handler produced one output path twice"
            )
        duration_ms = int((time.monotonic() - started) * 1000)
        common = {
            "execution_id": run.execution_id,
            "processor_ref": config.ref,
            "image_digest": config.image_digest,
            "env_fingerprint": config.env_fingerprint,
            "inputs_hash": ihash,
        }
        receipt = {
            **common,
            "mode": run.mode.value,
            "hash_schema": HASH_SCHEMA,
            "processor_info": config.redactor.text(result.processor_info),
            "usage": config.redactor.obj(result.usage),
            "timestamp_utc": utc_timestamp(),
            "duration_ms": duration_ms,
        }
        determinism = {
            **common,
            "memo_key": memo_key(
                ref=config.ref,
                image_digest=config.image_digest,
                mode=run.mode.value,
                inputs_hash=ihash,
            ),
            "seed": ctx.seed,
        }
        entries, files = plan_run_files(
            prefix=run.prefix,
            execution_id=run.execution_id,
            outputs=outputs,
            receipt=receipt,
            determinism=determinism,
        )
        self.world.commit(
            files,
            units=[run.prefix, execution_folder(run.execution_id)],
            gate=gate,
            cancelled=cancelled.is_set,
        )
        return {
            "status": "success",
            "execution_id": run.execution_id,
            "outputs": entries,
            "index_path": run.prefix + "outputs.json",
            "meta": {
                "image_digest": config.image_digest,
                "env_fingerprint": config.env_fingerprint,
                "duration_ms": duration_ms,
            },
        }

    def _call_handler(self, ctx: RunContext, fault: str | None) -> Result:
        if fault == "provider":
            raise ProviderError("injected provider failure")
        if fault == "internal":
            raise RuntimeError("injected internal failure")
        if fault == "timeout":
            ctx.cancelled.wait(self.config.timeout_s * 2 + 1)
            ctx.check_cancelled()
        result = self.handler(ctx)
        if not isinstance(result, Result):
            raise TypeError("a handler must return processors.runtime.Result")
        return result


def _ids_of(payload: object) -> dict[str, str]:
    """Best-effort ids for logging a request that may not validate."""
    if not isinstance(payload, dict):
        return {"execution_id": "", "trace_id": ""}
    execution_id = payload.get("execution_id")
    meta = payload.get("meta")
    trace_id = meta.get("trace_id") if isinstance(meta, dict) else None
    execution_id = execution_id if isinstance(execution_id, str) else ""
    return {
        "execution_id": execution_id[:128],
        "trace_id": (trace_id if isinstance(trace_id, str) else execution_id)[:256],
    }


def _valid_id(execution_id: str) -> str:
    try:
        return validate_execution_id(execution_id)
    except ContractError:
        return ""


# -- reading the request body ---------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _has_non_finite(value: Any) -> bool:
    """True when a number parsed to inf (``1e999``): JSON cannot carry it back out."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def read_payload(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object, or a ``ContractError`` with the SPEC's status."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ContractError(
            ErrorCode.ERR_PAYLOAD, "Content-Type must be application/json", status=415
        )
    too_large = ContractError(ErrorCode.ERR_PAYLOAD, f"body exceeds {limit} bytes", status=413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise too_large
    except TimeoutError:
        raise ContractError(
            ErrorCode.ERR_PAYLOAD, f"the body did not arrive within {BODY_READ_TIMEOUT_S:g}s"
        ) from None
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ContractError(ErrorCode.ERR_PAYLOAD, "body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ContractError(
            ErrorCode.ERR_PAYLOAD, f"body is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError):
        raise ContractError(ErrorCode.ERR_PAYLOAD, "body is not acceptable JSON") from None
    if not isinstance(payload, dict):
        raise ContractError(ErrorCode.ERR_PAYLOAD, "body must be a JSON object")
    if _has_lone_surrogate(payload):
        raise ContractError(ErrorCode.ERR_PAYLOAD, "body holds an unpaired UTF-16 surrogate")
    return payload


# -- the app --------------------------------------------------------------------


def create_app(
    handler: Handler,
    *,
    registry_path: str | Path,
    environ: Mapping[str, str] | None = None,
    artifacts_root: str | Path | None = None,
    log_stream: TextIO | None = None,
) -> FastAPI:
    """The processor's ASGI app.

    ``environ`` defaults to ``os.environ`` (the container's environment); the
    inprocess adapter passes exactly what an adapter would pass a container.
    """
    hosting = HOSTING.get()
    if hosting is not None:
        environ = hosting.environ if environ is None else environ
        artifacts_root = hosting.artifacts_root if artifacts_root is None else artifacts_root
        log_stream = hosting.log_stream if log_stream is None else log_stream
    config = ProcessorConfig.load(registry_path, environ=environ, artifacts_root=artifacts_root)
    processor = Processor(handler, config, log_stream=log_stream)
    if config.owns_stdio:
        take_over_process_output(processor.logger)
    processor.logger.log(
        "processor.start",
        ref=config.ref,
        image_digest=config.image_digest,
        fault_injection=config.fault_injection,
    )
    # redirect_slashes off: `POST /run/` is a 404, never a 307 to a Location built from Host.
    app = FastAPI(title=config.ref, docs_url=None, redoc_url=None, redirect_slashes=False)
    document = openapi_document(
        title=config.ref,
        version=config.ref.rsplit("@", 1)[1],
        inputs_schema=config.inputs_schema,
        ref=config.ref,
    )
    app.openapi = lambda: document  # type: ignore[method-assign]
    app.state.processor = processor

    def respond(status: int, envelope: dict[str, Any]) -> Response:
        return Response(
            processor.encode(envelope), status_code=status, media_type="application/json"
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        processor.logger.log("http.unhandled", "error", exc_type=type(exc).__name__)
        return respond(*processor.error(ContractError(ErrorCode.ERR_INTERNAL, "internal error")))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Unknown paths and methods: not part of the contract, but still JSON, with the
        # framework's headers kept (a 405's ``Allow``, which RFC 9110 requires).
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    async def payload_of(request: Request) -> dict[str, Any] | ContractError:
        try:
            return await read_payload(request, config.max_body_bytes)
        except ContractError as exc:
            return exc

    @app.post("/run", include_in_schema=False)
    async def run(request: Request) -> Response:
        return respond(*await processor.execute(await payload_of(request)))

    @app.post("/run-stream", include_in_schema=False)
    async def run_stream(request: Request) -> EventSourceResponse:
        payload = await payload_of(request)
        return EventSourceResponse(_sse_events(processor, payload))

    return app


async def _sse_events(
    processor: Processor, payload: dict[str, Any] | ContractError
) -> AsyncIterator[bytes]:
    """``progress``/``log``/``token`` events as the handler emits them, then one ``done``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    def emit(event: str, data: dict[str, Any]) -> None:
        if event not in STREAM_EVENTS:
            raise ValueError(f"stream events are {sorted(STREAM_EVENTS)}")
        loop.call_soon_threadsafe(queue.put_nowait, (event, data))

    def frame(event: str, data: Mapping[str, Any]) -> bytes:
        return format_sse_event(event=event, data_str=processor.encode(data))

    # Token texts are one text in pieces: redacted joined, so a secret split across tokens
    # is caught too (each frame is still redacted on its own by ``encode``).
    tokens = processor.config.redactor.stream()

    def frames(event: str, data: dict[str, Any]) -> list[bytes]:
        if event == "token" and isinstance(data.get("text"), str):
            text = tokens.feed(data["text"])
            return [frame(event, {**data, "text": text})] if text else []
        return [*flush(), frame(event, data)]

    def flush() -> list[bytes]:
        text = tokens.flush()
        return [frame("token", {"text": text})] if text else []

    task = asyncio.ensure_future(processor.execute(payload, emit))
    while True:
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            break
        for chunk in frames(*getter.result()):
            yield chunk
    await asyncio.sleep(0)  # let events scheduled by the last handler call land
    while not queue.empty():
        for chunk in frames(*queue.get_nowait()):
            yield chunk
    for chunk in flush():
        yield chunk
    _status, envelope = task.result()
    yield frame("done", envelope)
