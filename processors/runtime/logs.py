"""NDJSON logs on stderr, with every secret value redacted.

A server process (``THEORY_LOG_STDIO=1``, set in every processor image) also
routes uvicorn's own loggers, ``warnings`` and anything written to
``sys.stdout``/``sys.stderr`` through the same logger, so stdout stays empty and
every stderr line is a JSON object.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

REDACTED = "[REDACTED]"
#: Shorter values cannot be redacted without mangling unrelated text.
MIN_SECRET_LENGTH = 4
_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn"}


class Redactor:
    """Replaces every occurrence of the given secret values."""

    def __init__(self, secrets: Iterable[str] = ()):
        values = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
        # Longest first, so a secret containing another is replaced whole.
        self._values = sorted(values, key=len, reverse=True)
        self._escaped = [json.dumps(v)[1:-1] for v in self._values]

    def __bool__(self) -> bool:
        return bool(self._values)

    def text(self, value: str) -> str:
        for secret, escaped in zip(self._values, self._escaped, strict=True):
            value = value.replace(secret, REDACTED)
            if escaped != secret:
                value = value.replace(escaped, REDACTED)
        return value

    def data(self, value: bytes) -> bytes:
        for secret in self._values:
            value = value.replace(secret.encode(), REDACTED.encode())
        return value

    @property
    def longest(self) -> int:
        return len(self._values[0]) if self._values else 0

    def stream(self) -> StreamRedactor:
        """A redactor for text that arrives in pieces (streamed tokens)."""
        return StreamRedactor(self)

    def obj(self, value: Any) -> Any:
        """A copy of a JSON-like value with secrets redacted in every string (keys too)."""
        if not self._values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.obj(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.obj(v) for v in value]
        return value


class StreamRedactor:
    """Redacts text sent in pieces, so a secret split across pieces is still caught.

    The joined text is redacted, and its last ``longest - 1`` characters are held
    back: a secret that has begun but not ended can only start there.
    """

    def __init__(self, redactor: Redactor):
        self._redactor = redactor
        self._hold = max(redactor.longest - 1, 0)
        self._pending = ""

    def feed(self, piece: str) -> str:
        """What of the text so far can be released now."""
        text = self._redactor.text(self._pending + piece)
        cut = len(text) - self._hold
        if cut <= 0:
            self._pending = text
            return ""
        self._pending = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        """The rest, at the end of the stream (or before another kind of event)."""
        text, self._pending = self._redactor.text(self._pending), ""
        return text


def utc_timestamp() -> str:
    """``2026-01-02T03:04:05.678Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class NdjsonLogger:
    """Writes one JSON object per line: ``ts``, ``level``, ``event``, ``service`` and fields."""

    def __init__(
        self, service: str, stream: TextIO | None = None, redactor: Redactor | None = None
    ):
        self.service = service
        self.stream = stream if stream is not None else sys.__stderr__
        self.redactor = redactor or Redactor()
        self._lock = threading.Lock()

    def log(self, event: str, level: str = "info", **fields: Any) -> None:
        record = {"ts": utc_timestamp(), "level": level, "event": event, "service": self.service}
        record.update(fields)
        # ASCII only: raw U+0085/U+2028 would read as line breaks to tools that split on them.
        line = json.dumps(self.redactor.obj(record), default=str)
        line = self.redactor.text(line) + "\n"
        with self._lock:
            stream = self.stream
            if stream is not None:  # stderr is None under pythonw and some embedders
                stream.write(line)
                stream.flush()


class _LoggingBridge(logging.Handler):
    """Standard-library log records (uvicorn, warnings, libraries) as NDJSON lines."""

    def __init__(self, logger: NdjsonLogger):
        super().__init__()
        self.ndjson = logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = _LEVELS.get(record.levelno, "error")
            if (
                record.name == "uvicorn.access"
                and isinstance(record.args, tuple)
                and len(record.args) == 5
            ):
                _client, method, path, _version, status = record.args
                self.ndjson.log("http.access", "debug", method=method, path=path, status=status)
                return
            fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()}
            if record.exc_info and record.exc_info[0] is not None:
                fields["exc_type"] = record.exc_info[0].__name__
            self.ndjson.log("log." + record.name, level, **fields)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class _LineWriter(io.TextIOBase):
    """A text stream that turns each written line into an NDJSON event."""

    def __init__(self, logger: NdjsonLogger, event: str):
        self._logger = logger
        self._event = event
        self._buffer = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if line.strip():
                self._logger.log(self._event, "warn", message=line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            rest, self._buffer = self._buffer, ""
        if rest.strip():
            self._logger.log(self._event, "warn", message=rest)


def take_over_process_output(logger: NdjsonLogger) -> None:
    """Route this process's Python-level output through ``logger`` (server processes only)."""
    bridge = _LoggingBridge(logger)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers = [bridge] if name != "uvicorn.error" else []
        named.propagate = name == "uvicorn.error"
    root = logging.getLogger()
    root.handlers = [bridge]
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    sys.stdout = _LineWriter(logger, "stdout")
    sys.stderr = _LineWriter(logger, "stderr")
    threading.excepthook = lambda args: logger.log(
        "thread.exception", "error", exc_type=getattr(args.exc_type, "__name__", "Exception")
    )
