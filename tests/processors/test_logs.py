"""The runtime's NDJSON logging and redaction, one behaviour at a time (issue 20's mutation score).

The HTTP-level behaviour (every line JSON, secrets redacted everywhere) is in
test_runtime.py; here are the parts: the redactors, the logger, and the takeover of a
server process's own output (stdlib logging, warnings, stdout/stderr, thread crashes).
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import warnings
from typing import Any

import pytest

from pytest_theory.processors.runtime import logs
from pytest_theory.processors.runtime.logs import (
    REDACTED,
    NdjsonLogger,
    Redactor,
    take_over_process_output,
)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# -- Redactor ---------------------------------------------------------------------------


def test_short_and_non_text_secrets_are_not_redacted() -> None:
    redactor = Redactor(["abc", "", 12345, None, "abcd"])  # type: ignore[list-item]
    assert bool(redactor) and redactor.longest == 4
    assert redactor.text("abc abcd 12345") == f"abc {REDACTED} 12345"
    assert not Redactor(["abc"]) and Redactor().longest == 0
    assert Redactor().text("abcd") == "abcd"


def test_a_secret_containing_another_is_replaced_whole() -> None:
    redactor = Redactor(["abcd", "xxabcdxx"])
    assert redactor.text("xxabcdxx abcd") == f"{REDACTED} {REDACTED}"
    assert redactor.longest == 8


def test_a_secret_is_redacted_in_its_json_escaped_form_too() -> None:
    secret = 'sk"quote\\back'
    redactor = Redactor([secret])
    escaped = json.dumps(secret)[1:-1]
    assert redactor.text(f"raw {secret} json {escaped}") == f"raw {REDACTED} json {REDACTED}"
    assert redactor.data(f"b {secret} b".encode()) == f"b {REDACTED} b".encode()


def test_redacting_json_like_values() -> None:
    redactor = Redactor(["sk-secret"])
    value = {"k sk-secret": ["a sk-secret", ("sk-secret", 3)], "n": 1.5, "t": None, 7: True}
    assert redactor.obj(value) == {
        f"k {REDACTED}": [f"a {REDACTED}", [REDACTED, 3]],
        "n": 1.5,
        "t": None,
        "7": True,
    }
    assert redactor.obj("sk-secret") == REDACTED
    untouched = {"k": ("sk-secret",)}
    assert Redactor().obj(untouched) is untouched


def test_a_stream_releases_exactly_the_redacted_text() -> None:
    stream = Redactor(["sk-0123"]).stream()
    pieces = ["he", "llo sk", "-01", "23 bye", " now"]
    released = [stream.feed(p) for p in pieces]
    released.append(stream.flush())
    assert "".join(released) == f"hello {REDACTED} bye now"
    assert all(len(r) <= len("".join(released)) for r in released)
    assert stream.flush() == ""
    plain = Redactor().stream()
    assert [plain.feed("a"), plain.feed("b"), plain.flush()] == ["a", "b", ""]


def test_stream_hold_back_is_one_less_than_the_longest_secret() -> None:
    stream = Redactor(["abcd"]).stream()  # hold 3
    assert stream.feed("12345") == "12"
    assert stream.feed("6") == "3"
    assert stream.flush() == "456"


# -- the logger -------------------------------------------------------------------------


def test_a_log_line_is_one_json_object_with_its_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "utc_timestamp", lambda: "2031-05-06T07:08:09.123Z")
    stream = io.StringIO()
    logger = NdjsonLogger("svc", stream=stream, redactor=Redactor(["sk-secret"]))
    logger.log("run.start", execution_id="e-1", detail={"key": "sk-secret"}, when=object)
    logger.log("run.oops", "error", line="a\u2028b")
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 2
    first, second = lines(stream)
    assert first == {
        "ts": "2031-05-06T07:08:09.123Z",
        "level": "info",
        "event": "run.start",
        "service": "svc",
        "execution_id": "e-1",
        "detail": {"key": REDACTED},
        "when": str(object),
    }
    assert list(first)[:4] == ["ts", "level", "event", "service"]
    assert (second["level"], second["line"]) == ("error", "a\u2028b")
    assert "\u2028" not in text, "non-ASCII is escaped, so no reader splits the line"


def test_a_secret_in_a_field_name_or_escaped_is_redacted() -> None:
    stream = io.StringIO()
    NdjsonLogger("s", stream=stream, redactor=Redactor(['sk"x1'])).log("e", **{'sk"x1': 'sk"x1'})
    assert 'sk"x1' not in stream.getvalue() and 'sk\\"x1' not in stream.getvalue()
    assert lines(stream)[0][REDACTED] == REDACTED


def test_the_default_stream_is_the_process_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    captured = io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", captured)
    NdjsonLogger("s").log("e")
    assert lines(captured)[0]["event"] == "e"
    monkeypatch.setattr(sys, "__stderr__", None)
    NdjsonLogger("s").log("e")  # no stderr at all (pythonw): nothing to write, no failure


# -- a server process's own output ------------------------------------------------------


def take_over(stream: io.StringIO) -> None:
    take_over_process_output(NdjsonLogger("svc", stream=stream))


def test_stdlib_logging_becomes_ndjson(taken_over: io.StringIO) -> None:
    take_over(taken_over)
    logging.getLogger("some.lib").info("hello %s", "there")
    logging.getLogger("some.lib").debug("too fine")  # the root level is INFO
    logging.getLogger("uvicorn.error").warning("careful")
    try:
        raise KeyError("k")
    except KeyError:
        logging.getLogger("some.lib").exception("failed")
    logging.getLogger("some.lib").critical("very bad")
    records = [
        (r["event"], r["level"], r.get("message"), r.get("exc_type")) for r in lines(taken_over)
    ]
    assert records == [
        ("log.some.lib", "info", "hello there", None),
        ("log.uvicorn.error", "warn", "careful", None),
        ("log.some.lib", "error", "failed", "KeyError"),
        ("log.some.lib", "error", "very bad", None),
    ]
    assert all(r["service"] == "svc" for r in lines(taken_over))
    assert [r["logger"] for r in lines(taken_over)][:2] == ["some.lib", "uvicorn.error"]
    assert logging.getLogger().level == logging.INFO


def test_uvicorns_access_lines_become_http_access_events(taken_over: io.StringIO) -> None:
    before = logging.getLogger("uvicorn.error")
    before.handlers, before.propagate = [logging.NullHandler()], False
    take_over(taken_over)
    access = logging.getLogger("uvicorn.access")
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "POST", "/run", "1.1", 200)
    access.info("odd %s", "shape")
    first, second = lines(taken_over)
    assert {k: first[k] for k in ("event", "level", "method", "path", "status")} == {
        "event": "http.access",
        "level": "debug",
        "method": "POST",
        "path": "/run",
        "status": 200,
    }
    assert "127.0.0.1:5" not in json.dumps(first)
    assert (second["event"], second["message"]) == ("log.uvicorn.access", "odd shape")
    assert access.propagate is False and logging.getLogger("uvicorn").propagate is False
    assert logging.getLogger("uvicorn.error").propagate is True
    assert logging.getLogger("uvicorn.error").handlers == []


def test_prints_warnings_and_thread_crashes_become_ndjson(taken_over: io.StringIO) -> None:
    take_over(taken_over)
    assert sys.stdout.write("one\ntw") == len("one\ntw")
    sys.stdout.write("o\n\n   \n")
    sys.stderr.write("left over")
    sys.stderr.flush()
    sys.stderr.write("after\n")
    sys.stdout.flush()  # nothing buffered: no line
    assert sys.stdout.writable()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    thread = threading.Thread(target=lambda: 1 / 0)
    thread.start()
    thread.join(10)
    records = lines(taken_over)
    printed = [
        (r["event"], r["level"], r["message"])
        for r in records
        if r["event"] in ("stdout", "stderr")
    ]
    assert printed == [
        ("stdout", "warn", "one"),
        ("stdout", "warn", "two"),
        ("stderr", "warn", "left over"),
        ("stderr", "warn", "after"),
    ]
    (warning,) = [r for r in records if r["event"] == "log.py.warnings"]
    assert "deprecated thing" in warning["message"] and warning["level"] == "warn"
    assert (records[-1]["event"], records[-1]["level"], records[-1]["exc_type"]) == (
        "thread.exception",
        "error",
        "ZeroDivisionError",
    )


def test_a_root_level_already_finer_than_info_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.setLevel(logging.DEBUG)
    try:
        take_over_process_output(NdjsonLogger("svc", stream=io.StringIO()))
        assert root.level == logging.DEBUG
    finally:
        logging.captureWarnings(False)
        root.handlers, _ = saved[0], root.setLevel(saved[1])
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers = []
            logging.getLogger(name).propagate = True


def test_a_record_the_bridge_cannot_write_is_reported_by_logging_not_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    bridge = logs._LoggingBridge(NdjsonLogger("svc", stream=Broken()))
    record = logging.LogRecord("some.lib", logging.INFO, __file__, 1, "hello", None, None)
    bridge.emit(record)  # logging's own handleError reports it on stderr
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "Message: 'hello'" in err


def test_secrets_are_ordered_by_length_not_by_text() -> None:
    redactor = Redactor(["zz12", "aazz12bb"])  # the shorter one sorts after the longer
    assert redactor.longest == 8
    assert redactor.text("aazz12bb zz12") == f"{REDACTED} {REDACTED}"
