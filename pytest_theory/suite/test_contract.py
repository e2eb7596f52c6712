"""The contract suite: every rule of SPEC.md, checked against a real processor.

Collected by ``pytest --theory-ref REF``; parametrised over refs and adapters.
Each check is one small function with one job, marked with the rule it belongs
to and quoting that rule.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pytest_theory.adapters.base import ProcessorHandle
from pytest_theory.asserts import (
    assert_canonical_error,
    assert_error,
    assert_index,
    assert_ndjson_logs,
    assert_no_secret,
    assert_outputs,
    assert_receipts,
    assert_stream,
    assert_success,
    outputs_of,
)
from pytest_theory.contracts import problems
from pytest_theory.contracts.errors import status_for
from pytest_theory.contracts.hashing import inputs_hash
from pytest_theory.contracts.schemas import inputs_validator
from pytest_theory.contracts.worldpath import FACETS, determinism_receipt_path, is_under
from pytest_theory.driver import Driver, Run, observed, parse_sse, records
from pytest_theory.fuzz import (
    FuzzCase,
    cached_cases,
    fuzz_endpoint,
)
from pytest_theory.registry import ProcessorSpec, load_spec
from pytest_theory.rules import rule
from pytest_theory.session import CANARY, TheorySession, not_run

OVERSIZED_BODY_BYTES = 8 * 1024 * 1024
HEALTH_WAIT_S = 120.0  # bound on Docker's first verdict on the HEALTHCHECK
#: Time budget of the property check per schema: drawing inputs, then sending them.
PROPERTY_BUDGET_S = 60.0


def needs_world(driver: Driver) -> None:
    if driver.world is None:
        not_run("the processor's world is not visible from here")


def needs_mock(session: TheorySession) -> None:
    if session.options.mode != "mock":
        not_run("determinism is a rule of mock mode")


def succeeded(run: Run) -> Run:
    """``run``, if it succeeded; else the check cannot judge it (success-envelope does)."""
    if run.status != 200 or not isinstance(run.envelope, dict):
        not_run(f"a valid payload got no success (HTTP {run.status}); success-envelope judges it")
    return run


def without_timing(envelope: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(envelope))
    out.get("meta", {}).pop("duration_ms", None)
    return out


# -- registry and image -------------------------------------------------------------------


@rule("registry")
def test_registry_file_validates(theory_spec: ProcessorSpec) -> None:
    """The registry file itself validates against a JSON Schema in contracts/."""
    assert problems("registry", theory_spec.data) == []
    assert load_spec(theory_spec.path).ref == theory_spec.ref


@rule("image")
def test_dockerfile_takes_the_base_image_as_an_argument(theory_spec: ProcessorSpec) -> None:
    """The Dockerfile takes ARG BASE_IMAGE=python:3.11-slim."""
    lines = [line.strip() for line in theory_spec.dockerfile.read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "ARG BASE_IMAGE=python:3.11-slim", instructions[0]
    assert any(re.match(r"FROM \$\{?BASE_IMAGE\}?", line) for line in instructions)


@rule("image")
def test_image_has_a_healthcheck_on_healthz(theory_processor: ProcessorHandle) -> None:
    """The Dockerfile ... has a HEALTHCHECK on /healthz."""
    config = observed(theory_processor.image_config(), "the image's configuration")
    assert "/healthz" in config.healthcheck


@rule("image")
def test_image_runs_uvicorn(theory_processor: ProcessorHandle) -> None:
    """The Dockerfile ... runs `uvicorn app.http:app --host 0.0.0.0 --port 8000`."""
    cmd = observed(theory_processor.image_config(), "the image's configuration").cmd
    assert cmd == ["uvicorn", "app.http:app", "--host", "0.0.0.0", "--port", "8000"]


@rule("image")
def test_docker_reports_the_container_healthy(theory_processor: ProcessorHandle) -> None:
    """The Dockerfile has a HEALTHCHECK on /healthz: Docker runs it and reports `healthy`."""
    health = observed(theory_processor.docker_health(HEALTH_WAIT_S), "Docker's health verdict")
    status, probes = health
    assert status == "healthy", (
        f"Docker health status: expected 'healthy', received {status!r}; last probes: {probes}"
    )


@rule("image")
def test_processor_code_imports_no_django(theory_spec: ProcessorSpec) -> None:
    """No Django inside a processor: its code imports none."""
    found = []
    for path in theory_spec.directory.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            line = getattr(node, "lineno", 0)
            found += [f"{path.name}:{line}" for n in names if n.split(".")[0] == "django"]
    assert found == [], f"Django imported at {found}"


@rule("image")
def test_django_cannot_be_imported_in_the_image(theory_processor: ProcessorHandle) -> None:
    """`import django` fails inside the image."""
    exit_code = observed(
        theory_processor.exec(["python", "-c", "import django"]), "a command inside the image"
    )
    assert exit_code != 0, "`import django` succeeded inside the image"


# -- HTTP endpoints -------------------------------------------------------------------------


@rule("healthz")
def test_healthz_answers_ok(theory_driver: Driver) -> None:
    """GET /healthz -> 200 {"ok": true}."""
    response = theory_driver.get("/healthz")
    body = response.json()
    # `true` itself: in Python 1 == True, so {"ok": 1} would compare equal.
    assert (response.status_code, body) == (200, {"ok": True}) and body["ok"] is True, (
        f'expected HTTP 200 {{"ok": true}}, received HTTP {response.status_code} {response.text}'
    )


@rule("openapi")
def test_openapi_describes_the_three_endpoints(theory_driver: Driver) -> None:
    """GET /openapi.json: an OpenAPI 3 document describing the three endpoints."""
    document = theory_driver.get("/openapi.json").json()
    assert str(document.get("openapi", "")).startswith("3.")
    paths = document.get("paths", {})
    assert "get" in paths.get("/healthz", {}) and "post" in paths.get("/run", {})
    assert "post" in paths.get("/run-stream", {})


@rule("success-envelope")
def test_run_answers_one_success_envelope(theory_driver: Driver) -> None:
    """Success (HTTP 200): one envelope; meta.image_digest comes from IMAGE_DIGEST."""
    assert_success(theory_driver.run(), image_digest=theory_driver.handle.image_digest or None)


@rule("outputs")
def test_outputs_are_declared_and_match_their_bytes(
    theory_driver: Driver, theory_spec: ProcessorSpec
) -> None:
    """P/outputs/** holds the artifacts; cid is BLAKE3 of the bytes; every output is declared."""
    needs_world(theory_driver)
    assert_outputs(succeeded(theory_driver.run()), theory_spec)


@rule("index")
def test_index_is_sorted_canonical_json_of_the_outputs(theory_driver: Driver) -> None:
    """P/outputs.json: entries sorted by path, bytes exactly json.dumps(sort_keys, compact), UTF-8."""
    needs_world(theory_driver)
    assert_index(succeeded(theory_driver.run()))


@rule("receipts")
def test_both_receipts_are_written_and_not_listed(
    theory_driver: Driver, theory_spec: ProcessorSpec
) -> None:
    """receipt.json and determinism.json with their fields; receipts are never listed as outputs."""
    needs_world(theory_driver)
    run = succeeded(theory_driver.run())
    assert_receipts(run, theory_spec, image_digest=theory_driver.handle.image_digest or None)


@rule("determinism")
def test_mock_outputs_do_not_depend_on_the_execution(
    theory_driver: Driver, theory_session: TheorySession
) -> None:
    """§3 In mock mode the same inputs give byte-identical outputs (same cids) whatever the
    execution id, time or machine: two runs now, and the earliest run of the same inputs in
    this world (this session's first, or an earlier session's with --theory-world), however
    long ago; never a sleep to make time pass."""
    needs_mock(theory_session)
    first = succeeded(theory_driver.run())
    second = succeeded(theory_driver.run())
    outputs = [_output_bytes(run) for run in (first, second)]
    earliest = _earliest_run_of_the_same_inputs(first, {first.prefix, second.prefix})
    if earliest is not None:
        prefix, age_s = earliest
        then = {p: first.read(prefix + p) if first.exists(prefix + p) else None for p in outputs[0]}
        differ = sorted(p for p in outputs[0] if then[p] != outputs[0][p])
        assert not differ, (
            f"the same inputs gave different outputs at {differ} than {age_s:.1f}s before "
            f"(the run under {prefix})"
        )
    differ = sorted(p for p in {*outputs[0], *outputs[1]} if outputs[0].get(p) != outputs[1].get(p))
    assert not differ, f"the same inputs gave different outputs at {differ}"


def _output_bytes(run: Run) -> dict[str, Any]:
    """Each output's bytes by its path under P (its cid where the world is not visible)."""
    found: dict[str, Any] = {}
    for entry in outputs_of(run):
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str):
            continue
        relative = path.removeprefix(run.prefix)
        if run.world is not None:
            found[relative] = run.read(path) if run.exists(path) else None
        else:
            found[relative] = entry.get("cid")
    return found


def _earliest_run_of_the_same_inputs(run: Run, exclude: set[str]) -> tuple[str, float] | None:
    """The prefix of the earliest other mock run of ``run``'s inputs by the same image in the
    world, and how long ago it was written: found by the receipts SPEC §3 defines (their
    ``processor_ref``, ``image_digest``, ``inputs_hash`` and ``mode``)."""
    fields = ("processor_ref", "image_digest", "inputs_hash", "mode")
    try:
        wanted = tuple(run.receipt.get(name) for name in fields)
    except (LookupError, OSError, ValueError, AttributeError):
        return None  # no world, or no readable receipt: the receipts rule judges that
    if wanted[2:] != (inputs_hash(run.payload["inputs"]), "mock"):
        return None
    found = []
    for path in run.host_path("/artifacts").rglob("receipt.json"):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            receipt = json.loads(path.read_bytes())
            prefix = "/" + str(path.parent.relative_to(run.host_path("/"))) + "/"
            if tuple(receipt.get(name) for name in fields) == wanted and prefix not in exclude:
                found.append((path.stat().st_mtime, prefix))
    if not found:
        return None
    written, prefix = min(found)
    return prefix, time.time() - written


def _world_state(driver: Driver) -> dict[str, tuple[int, int, int]]:
    """Every file in the world: (size, modification time, inode), so a rewrite of the same
    size is seen too (SPEC's "nothing else anywhere")."""
    if driver.world is None:
        return {}
    state = {}
    for path in driver.world.rglob("*"):
        if path.is_file():
            stat = path.stat()
            state["/" + str(path.relative_to(driver.world))] = (
                stat.st_size,
                stat.st_mtime_ns,
                stat.st_ino,
            )
    return state


def _written_by_a_run(driver: Driver) -> tuple[Run, set[str]]:
    """A successful run with the example inputs, and every file of the world it added or
    changed (``not_run`` without a visible world or a success)."""
    needs_world(driver)
    before = _world_state(driver)
    run = succeeded(driver.run())
    return run, {p for p, state in _world_state(driver).items() if before.get(p) != state}


@rule("confinement")
def test_a_run_writes_only_under_its_prefix(theory_driver: Driver) -> None:
    """P/outputs/** ... and nothing else anywhere (besides the determinism receipt)."""
    run, added = _written_by_a_run(theory_driver)
    allowed = {
        p
        for p in added
        if is_under(p, run.prefix) or p == determinism_receipt_path(run.execution_id)
    }
    assert sorted(added - allowed) == [], f"written outside the prefix {run.prefix}"
    assert not [p for p in added if ".tmp" in p], "a temporary file was left behind"


@rule("confinement")
def test_under_its_prefix_a_run_writes_its_outputs_index_and_receipt_only(
    theory_driver: Driver,
) -> None:
    """§3 What a run writes (all under P): P/outputs/**, P/outputs.json and P/receipt.json;
    "P/outputs/** — the artifacts, and nothing else anywhere". (Files outside P are the
    check above's.)"""
    run, added = _written_by_a_run(theory_driver)
    prefix = run.prefix
    listed = {prefix + "outputs.json", prefix + "receipt.json"}
    unlisted = sorted(
        p
        for p in added
        if is_under(p, prefix) and p not in listed and not is_under(p, prefix + "outputs/")
    )
    assert unlisted == [], f"written under {prefix} besides outputs/, outputs.json, receipt.json"


@rule("confinement")
def test_a_refused_run_writes_nothing(theory_driver: Driver, theory_spec: ProcessorSpec) -> None:
    """§3 A failed run leaves no half-written file: runs refused with ERR_MODE, ERR_WRITE_PREFIX
    and ERR_INPUTS (the last step before a run starts) write nothing."""
    needs_world(theory_driver)
    before = _world_state(theory_driver)
    refusals = [
        (theory_driver.run(theory_driver.payload(mode="smoke")), "ERR_MODE"),
        (
            theory_driver.run(theory_driver.payload(write_prefix="/artifacts/no-placeholder/")),
            "ERR_WRITE_PREFIX",
        ),
    ]
    refused_inputs = _refusable_inputs(theory_spec)
    if refused_inputs is not None:
        refusals.append(
            (theory_driver.run(theory_driver.payload(inputs=refused_inputs)), "ERR_INPUTS")
        )
    after = _world_state(theory_driver)
    for run, code in refusals:  # else there is no refused run to judge: the errors rule's breach
        received = (run.envelope.get("error") or {}) if isinstance(run.envelope, dict) else {}
        if (run.status, received.get("code")) != (status_for(code), code):
            not_run(f"a run was not refused with {code} (HTTP {run.status}); errors judges it")
    changed = sorted(p for p in {*before, *after} if before.get(p) != after.get(p))
    assert changed == [], f"refused runs changed {changed}"


# -- errors ------------------------------------------------------------------------------


@rule("errors")
@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"schema": "v1"}', b'{"execution_id": 5}'],
    ids=["not-json", "not-an-object", "missing-fields", "wrong-type"],
)
def test_err_payload_for_bodies_that_are_not_payloads(theory_driver: Driver, body: bytes) -> None:
    """ERR_PAYLOAD 400: body not JSON, not an object, a field missing or of the wrong type."""
    assert_error(
        theory_driver.run(content=body, headers={"content-type": "application/json"}), "ERR_PAYLOAD"
    )


@rule("errors")
def test_err_payload_415_for_a_wrong_content_type(theory_driver: Driver) -> None:
    """ERR_PAYLOAD with 415 for a wrong Content-Type."""
    body = json.dumps(theory_driver.payload()).encode()
    assert_error(
        theory_driver.run(content=body, headers={"content-type": "text/plain"}), "ERR_PAYLOAD", 415
    )


@rule("errors")
def test_err_payload_413_over_the_body_limit(theory_driver: Driver) -> None:
    """ERR_PAYLOAD with 413 over the body limit."""
    body = b'{"pad": "' + b"x" * OVERSIZED_BODY_BYTES + b'"}'
    assert_error(
        theory_driver.run(content=body, headers={"content-type": "application/json"}),
        "ERR_PAYLOAD",
        413,
    )


def _refusable_inputs(spec: ProcessorSpec) -> dict[str, Any] | None:
    """Inputs the registry schema refuses, if any of a few candidates is."""
    validator = inputs_validator(spec.inputs_schema)
    for candidate in (
        {},
        {"schema": "v0"},
        {"schema": "v1", "params": 7},
        {"theory_unexpected": True},
    ):
        if not validator.is_valid(candidate):
            return candidate
    return None


def _refused_inputs(spec: ProcessorSpec) -> dict[str, Any]:
    refused = _refusable_inputs(spec)
    if refused is None:
        not_run("the registry inputs schema accepts every object")
    return refused


@rule("errors")
def test_err_inputs_when_the_registry_schema_refuses_them(
    theory_driver: Driver, theory_spec: ProcessorSpec
) -> None:
    """ERR_INPUTS 400: inputs fails the registry schema."""
    assert_error(
        theory_driver.run(theory_driver.payload(inputs=_refused_inputs(theory_spec))), "ERR_INPUTS"
    )


@rule("errors")
@pytest.mark.parametrize(
    "prefix",
    [
        "/artifacts/outputs/",
        "/artifacts/{execution_id}",
        "/plan/{execution_id}/",
        "/artifacts/../{execution_id}/",
        "/artifacts/%2e%2e/{execution_id}/",
    ],
    ids=["no-placeholder", "no-trailing-slash", "not-artifacts", "traversal", "encoded-traversal"],
)
def test_err_write_prefix(theory_driver: Driver, prefix: str) -> None:
    """ERR_WRITE_PREFIX 400: not a valid /artifacts/ world path, no {execution_id}, no trailing /."""
    assert_error(theory_driver.run(theory_driver.payload(write_prefix=prefix)), "ERR_WRITE_PREFIX")


@rule("errors")
def test_err_mode_for_anything_but_mock_or_real(theory_driver: Driver) -> None:
    """ERR_MODE 400: mode not mock/real."""
    assert_error(theory_driver.run(theory_driver.payload(mode="smoke")), "ERR_MODE")


@rule("errors")
def test_err_missing_secret_in_real_mode(theory_bare: Driver) -> None:
    """ERR_MISSING_SECRET 500: real mode and a required secret is absent."""
    assert_error(theory_bare.run(theory_bare.payload(mode="real")), "ERR_MISSING_SECRET")


@rule("errors")
@pytest.mark.parametrize(
    ("fault", "code"),
    [("provider", "ERR_PROVIDER"), ("timeout", "ERR_TIMEOUT"), ("internal", "ERR_INTERNAL")],
)
def test_err_for_provider_timeout_and_internal_failures(
    theory_fault: Driver, fault: str, code: str
) -> None:
    """ERR_PROVIDER 502, ERR_TIMEOUT 504 (runtime.timeout_s), ERR_INTERNAL 500, never a framework page.

    §9: provoked through the declared test hook (THEORY_FAULT_INJECTION=1, meta.fault); a
    processor that does not declare `capabilities: [fault-injection]` is not judged here.
    """
    faulty = theory_fault
    assert_error(
        faulty.run(faulty.payload(mode="mock", meta={"trace_id": "fault", "fault": fault})), code
    )


@rule("errors")
def test_error_envelopes_are_canonical_and_carry_meta(theory_driver: Driver) -> None:
    """Error envelopes carry meta.image_digest (from IMAGE_DIGEST) and meta.env_fingerprint."""
    digest = theory_driver.handle.image_digest or None
    for run in (
        theory_driver.run(content=b"{", headers={"content-type": "application/json"}),
        theory_driver.run(theory_driver.payload(mode="smoke")),
        theory_driver.run(theory_driver.payload(write_prefix="/artifacts/x/")),
    ):
        assert_canonical_error(run, image_digest=digest)


@rule("errors")
def test_error_messages_hold_no_payload_body(
    theory_driver: Driver, theory_spec: ProcessorSpec
) -> None:
    """§4 Messages never contain secret values, tracebacks or payload bodies: refused bodies
    carrying a marker value (not JSON, fields missing, inputs the schema refuses) get error
    messages without it."""
    marker = f"theory-body-{uuid.uuid4().hex[:12]}"
    json_body = {"content-type": "application/json"}
    runs = [
        theory_driver.run(content=f'{{"note": "{marker}", '.encode(), headers=json_body),
        theory_driver.run(content=json.dumps({"note": marker}).encode(), headers=json_body),
    ]
    refused = _refusable_inputs(theory_spec)
    if refused is not None and not inputs_validator(theory_spec.inputs_schema).is_valid(
        {**refused, "theory_note": marker}
    ):
        runs.append(
            theory_driver.run(theory_driver.payload(inputs={**refused, "theory_note": marker}))
        )
    for run in runs:
        error = run.envelope.get("error") if isinstance(run.envelope, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        assert not (isinstance(message, str) and marker in message), (
            f"an error message holds the payload body: {message!r}"
        )


@rule("errors")
def test_fuzzed_run_payloads_get_envelopes_never_5xx(
    theory_driver: Driver, theory_session: TheorySession
) -> None:
    """Fuzzing /openapi.json's /run: every answer a valid envelope with its status, no 5xx (mock)."""
    sent = fuzz_endpoint(
        theory_driver,
        "POST",
        "/run",
        theory_session.options.fuzz_examples,
        _check_run_answer,
        theory_session.cache,
    )
    assert sent >= 1


def _check_run_answer(case: FuzzCase, response: Any) -> None:
    """/run: never a 5xx; an error is a canonical error envelope whose status goes with its
    code; a success is HTTP 200 (its own fields are the success-envelope rule's)."""
    assert response.status_code < 500, f"HTTP {response.status_code}: {response.text[:300]}"
    run = Run(case.body, response.status_code, response.text, None)
    if isinstance(run.envelope, dict) and run.envelope.get("status") == "success":
        assert response.status_code == 200, f"a success answered HTTP {response.status_code}"
    else:
        assert_canonical_error(run)


def _check_stream_answer(case: FuzzCase, response: Any) -> None:
    """/run-stream: events ending in exactly one `done` whose data is an envelope."""
    events = parse_sse(response.text)
    assert_stream(
        Run(case.body, response.status_code, response.text, None, dict(response.headers), events)
    )


# -- streaming ---------------------------------------------------------------------------


@rule("stream")
def test_stream_ends_in_one_done_equal_to_run(
    theory_driver: Driver, theory_spec: ProcessorSpec
) -> None:
    """Zero or more progress/log/token events with JSON data, then exactly one `done` whose data
    is the envelope /run would have returned."""
    streamed = theory_driver.stream()
    assert_stream(streamed)
    ran = theory_driver.run()

    def shape(run: Run) -> Any:
        """The envelope with what differs between two executions taken out."""
        envelope = without_timing(run.envelope)
        envelope["execution_id"] = "X"
        index_path = envelope.get("index_path")
        if isinstance(index_path, str):
            envelope["index_path"] = index_path.replace(run.prefix, "P/")
        envelope["outputs"] = sorted(
            (
                {k: str(o.get(k)).replace(run.prefix, "P/") for k in ("path", "mime")}
                for o in outputs_of(run)
                if isinstance(o, dict)
            ),
            key=lambda o: o["path"],
        )
        return envelope

    assert shape(streamed) == shape(ran), "the done envelope is not the one /run returns"


@rule("stream")
def test_stream_errors_end_in_done_too(theory_driver: Driver) -> None:
    """Errors, including bad payloads, also end in `done` with an error envelope."""
    for run in (
        theory_driver.stream(content=b"nope", headers={"content-type": "application/json"}),
        theory_driver.stream(theory_driver.payload(mode="smoke")),
    ):
        envelope = assert_stream(run)
        assert envelope["status"] == "error"


@rule("stream")
def test_fuzzed_stream_payloads_end_in_done(
    theory_driver: Driver, theory_session: TheorySession
) -> None:
    """Fuzzing /run-stream: always a stream that ends in exactly one `done` carrying an envelope."""
    document = theory_driver.handle.client.get("/openapi.json").json()
    if "post" not in (document.get("paths") or {}).get("/run-stream", {}):
        not_run("/openapi.json does not describe POST /run-stream (the openapi rule's breach)")
    sent = fuzz_endpoint(
        theory_driver,
        "POST",
        "/run-stream",
        theory_session.options.fuzz_examples,
        _check_stream_answer,
        theory_session.cache,
    )
    assert sent >= 1


# -- logs and secrets ------------------------------------------------------------------------


@rule("logs")
def test_stdout_stays_empty(theory_driver: Driver) -> None:
    """Stdout stays empty (server access logs included)."""
    theory_driver.run()
    theory_driver.run(content=b"{", headers={"content-type": "application/json"})
    theory_driver.stream()
    stdout = observed(theory_driver.handle.stdout(), "the processor's stdout")
    assert stdout == "", f"stdout is not empty: {stdout[:500]!r}"


@rule("logs")
def test_stderr_is_ndjson(theory_driver: Driver) -> None:
    """Processors log NDJSON to stderr only: every line a JSON object with ts, level, event, service."""
    theory_driver.run()
    theory_driver.run(content=b"{", headers={"content-type": "application/json"})
    assert assert_ndjson_logs(observed(theory_driver.handle.stderr(), "the processor's stderr"))


@rule("logs")
def test_runs_log_start_settle_and_refusals(theory_driver: Driver) -> None:
    """Every run logs http.run.start and http.run.settle (with status and elapsed_ms), tagged with
    execution_id and trace_id; a refused request logs http.run.error with a reason."""
    ok = theory_driver.run()
    refused = theory_driver.run(theory_driver.payload(mode="smoke"))
    logged = records(theory_driver.settled_stderr([ok, refused]))

    def of(run: Run) -> dict[str, dict[str, Any]]:
        return {r["event"]: r for r in logged if r.get("execution_id") == run.execution_id}

    mine = of(ok)
    assert {"http.run.start", "http.run.settle"} <= set(mine), (
        f"expected http.run.start and http.run.settle for the run, received {sorted(mine)}"
    )
    settle = mine["http.run.settle"]
    trace_id = ok.payload["meta"]["trace_id"]
    assert settle.get("trace_id") == trace_id, (
        f"http.run.settle trace_id: expected {trace_id!r}, received {settle.get('trace_id')!r}"
    )
    assert "status" in settle and "elapsed_ms" in settle, (
        f"http.run.settle: expected status and elapsed_ms, received {settle}"
    )
    error = of(refused).get("http.run.error")
    assert error is not None and error.get("reason"), (
        "no http.run.error with a reason for a refusal"
    )


@rule("secrets")
def test_secret_values_appear_nowhere(theory_canary: Driver, theory_spec: ProcessorSpec) -> None:
    """Secret values are redacted everywhere: logs, outputs, receipts, envelopes (a canary is set)."""
    if not theory_spec.secrets_declared:
        not_run("the registry declares no secret")
    canary = theory_canary
    runs = [
        canary.run(),
        canary.run(canary.payload(mode="real")),
        canary.stream(),
        canary.run(canary.payload(inputs={"theory": "refused"})),
    ]
    stderr = canary.settled_stderr(runs)
    texts = [run.text for run in runs] + [stderr, canary.handle.stdout() or ""]
    if canary.world is not None:
        for run in runs:
            texts += [
                p.read_text(errors="replace")
                for p in canary.world.joinpath(run.prefix.lstrip("/")).rglob("*")
                if p.is_file()
            ]
    assert_no_secret(CANARY, texts)


@rule("secrets")
def test_a_secret_split_across_streamed_tokens_is_redacted(
    theory_session: TheorySession,
    theory_target: Any,
    theory_spec: ProcessorSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Secret values are redacted everywhere: logs, outputs, receipts, envelopes (real mode, CI
    unset, a local provider streaming the key back in 3-character tokens)."""
    from pytest_theory import provider

    urls = [n for n in theory_spec.secrets_declared if n.endswith("_BASE_URL")]
    if not theory_spec.secrets_required or not urls:
        not_run("no way to point the processor at a local provider (a *_BASE_URL secret)")
    adapter = theory_session.adapter(theory_target.adapter)
    if not adapter.sets_environment:
        not_run("needs a processor the harness starts itself, with the provider's address")
    host = provider.address_for_processors()
    key = f"sk-{CANARY}-split"
    monkeypatch.delenv("CI", raising=False)
    with provider.serving(host) as port:
        environment = {"IMAGE_DIGEST": adapter.digest_for(theory_spec)}
        environment[urls[0]] = f"http://{host}:{port}/v1"
        environment.update({name: key for name in theory_spec.secrets_required})
        world = theory_session.world(theory_target)
        handle = adapter.acquire(
            theory_spec, environment=environment, world_root=world, opts={"reuse": False}
        )
        try:
            driver = Driver(handle, theory_spec, mode="real", world=world)
            run = driver.stream()
            texts = [run.text, handle.stderr() or ""]
        finally:
            adapter.release(handle, broken=True)
    if (run.envelope or {}).get("status") != "success":
        code = ((run.envelope or {}).get("error") or {}).get("code", f"HTTP {run.status}")
        not_run(f"no real run completed against the local provider ({code})")
    assert_no_secret(key, texts)


# -- adapters: CI safety, digest drift, concurrency -------------------------------------------


@rule("ci-safety")
def test_the_processor_refuses_real_under_ci(theory_canary: Driver) -> None:
    """With CI=true, real is refused with ERR_CI_SAFETY ... by the processor itself."""
    canary = theory_canary  # CI=true in its environment
    assert_error(canary.run(canary.payload(mode="real")), "ERR_CI_SAFETY")


@rule("ci-safety")
def test_the_adapter_refuses_real_under_ci_before_starting_anything(
    theory_session: TheorySession, theory_driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CI=true, real is refused with ERR_CI_SAFETY by the adapters before any container starts."""
    monkeypatch.setenv("CI", "true")
    theory_session.settle()  # a variant booting in the background is not this check's doing
    assert theory_driver.adapter is not None
    boots = theory_driver.adapter.boots
    envelope = theory_driver.invoke(mode="real")
    code = (envelope.get("error") or {}).get("code")
    assert code == "ERR_CI_SAFETY", f"expected ERR_CI_SAFETY, received {envelope}"
    assert theory_driver.adapter.boots == boots, "a processor was started"


@rule("digest-drift")
def test_a_drifted_digest_is_reported(theory_driver: Driver) -> None:
    """A digest other than the expected one is ERR_IMAGE_DIGEST_MISMATCH; repo@sha256:x equals sha256:x."""
    actual = theory_driver.handle.image_digest
    if not actual:
        not_run("the image's digest is not known here")
    same = theory_driver.invoke(
        adapter_opts={"expected_digest": f"registry.example/any/repo@{actual}"},
    )
    same_code = (same.get("error") or {}).get("code")
    assert same_code != "ERR_IMAGE_DIGEST_MISMATCH", f"the same digest was called drift: {same}"
    drifted = theory_driver.invoke(
        adapter_opts={"expected_digest": "sha256:" + "0" * 64},
    )
    code = (drifted.get("error") or {}).get("code")
    assert code == "ERR_IMAGE_DIGEST_MISMATCH", (
        f"expected ERR_IMAGE_DIGEST_MISMATCH, received {drifted}"
    )


@rule("concurrency")
def test_concurrent_runs_with_separate_prefixes_all_succeed(theory_driver: Driver) -> None:
    """Ten concurrent runs, each with its own prefix, all succeed, each writing its own index."""
    with ThreadPoolExecutor(10) as pool:
        runs = list(pool.map(lambda _: theory_driver.run(), range(10)))
    statuses = [(run.status, (run.envelope or {}).get("status")) for run in runs]
    assert statuses == [(200, "success")] * 10, f"expected 10 successes, received {statuses}"
    if theory_driver.world is not None:
        missing = [run.prefix for run in runs if not run.exists(run.prefix + "outputs.json")]
        assert missing == [], f"runs without their own outputs.json: {missing}"


@rule("properties")
def test_generated_inputs_get_envelopes_never_5xx(
    theory_driver: Driver, theory_spec: ProcessorSpec, theory_session: TheorySession
) -> None:
    """§2 `inputs` is validated against the processor's registry `inputs` schema: inputs
    generated from it get an envelope every time, never a 5xx, and never ERR_INPUTS (§4: that
    is for inputs that fail the schema) unless they name a world path, whose file may not be
    there (hypothesis-jsonschema, derandomized, within a time budget per schema)."""
    schema = theory_spec.inputs_schema
    examples = theory_session.options.property_examples
    cases = cached_cases(
        theory_session.cache,
        "inputs-budget",
        [schema, examples, PROPERTY_BUDGET_S],
        lambda: _draw_within(schema, examples, PROPERTY_BUDGET_S),
    )
    deadline = time.monotonic() + PROPERTY_BUDGET_S
    sent, validator = 0, inputs_validator(schema)
    for inputs in cases:
        if time.monotonic() > deadline:
            break
        result = theory_driver.run(theory_driver.payload(inputs=inputs, mode="mock"))
        sent += 1
        assert result.status < 500, (
            f"HTTP {result.status} for schema-valid inputs {inputs!r}: {result.text[:300]}"
        )
        status = (
            (result.envelope or {}).get("status") if isinstance(result.envelope, dict) else None
        )
        expected = "success" if result.status == 200 else "error"
        assert status == expected, (
            f"HTTP {result.status}: expected a {expected} envelope, received {result.text[:300]}"
        )
        # §4 ERR_INPUTS is for inputs that fail the registry schema; these pass it (judged here
        # by the contract's own validator, not only by how they were drawn).
        code = (result.envelope.get("error") or {}).get("code") if status == "error" else None
        judged = validator.is_valid(inputs) and not _names_a_world_path(inputs)
        assert code != "ERR_INPUTS" or not judged, (
            f"ERR_INPUTS for inputs the registry schema accepts: {inputs!r}: {result.text[:300]}"
        )
    if not sent:
        not_run(f"no inputs could be generated within {PROPERTY_BUDGET_S:g}s")


def _names_a_world_path(value: Any) -> bool:
    """Whether ``value`` holds a string that starts with a facet root (SPEC §1): such inputs
    depend on the world as well as on the schema (a file named may not be there), so their
    refusal is not judged by the schema alone."""
    if isinstance(value, str):
        return value.lower().startswith(FACETS)
    if isinstance(value, dict):
        return any(_names_a_world_path(v) for v in value.values())
    if isinstance(value, list):
        return any(_names_a_world_path(v) for v in value)
    return False


class _Enough(Exception):
    """The time budget for drawing inputs is spent."""


def _draw_within(schema: dict[str, Any], examples: int, budget_s: float) -> list[Any]:
    """Up to ``examples`` derandomized draws from ``schema``, no shrinking, within ``budget_s``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis_jsonschema import from_schema

    drawn: list[Any] = []
    deadline = time.monotonic() + budget_s

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(value=from_schema(schema))
    def collect(value: Any) -> None:
        if time.monotonic() > deadline:
            raise _Enough
        drawn.append(value)

    with contextlib.suppress(_Enough):
        collect()
    return drawn
