from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.rules import RULES
from tests.conftest import FIXTURES

BROKEN = FIXTURES / "broken"
#: Each broken processor, the one rule it breaks and the checks of that rule that fail.
BREAKS = {
    "stdout_logs": ("logs", "test_stdout_stays_empty"),
    "unsorted_index": ("index", "test_index_is_sorted_canonical_json_of_the_outputs"),
    "outside_write": ("confinement", "test_a_run_writes_only_under_its_prefix"),
    "missing_receipt": ("receipts", "test_both_receipts_are_written_and_not_listed"),
    "nondeterministic_mock": ("determinism", "test_mock_outputs_do_not_depend_on_the_execution"),
    "bare_422": (
        "errors",
        "test_err_payload_413_over_the_body_limit test_err_payload_415_for_a_wrong_content_type "
        "test_err_payload_for_bodies_that_are_not_payloads "
        "test_error_envelopes_are_canonical_and_carry_meta "
        "test_fuzzed_run_payloads_get_envelopes_never_5xx",
    ),
    "stream_without_done": (
        "stream",
        "test_fuzzed_stream_payloads_end_in_done test_stream_ends_in_one_done_equal_to_run "
        "test_stream_errors_end_in_done_too",
    ),
    "leaked_secret": ("secrets", "test_secret_values_appear_nowhere"),
    "no_digest_on_errors": (
        "errors",
        "test_error_envelopes_are_canonical_and_carry_meta "
        "test_fuzzed_run_payloads_get_envelopes_never_5xx",
    ),
    "django_in_image": (
        "image",
        "test_django_cannot_be_imported_in_the_image test_processor_code_imports_no_django",
    ),
    "no_settle_log": ("logs", "test_runs_log_start_settle_and_refusals"),
}
#: One-line edits of the template's Dockerfile, each breaking one check of the `image` rule.
DOCKERFILE_BREAKS = {
    "test_dockerfile_takes_the_base_image_as_an_argument": (
        "ARG BASE_IMAGE=python:3.11-slim",
        "ARG BASE_IMAGE",
    ),
    "test_image_has_a_healthcheck_on_healthz": ("8000/healthz'", "8000/openapi.json'"),
    "test_image_runs_uvicorn": ('CMD ["uvicorn",', 'CMD ["python", "-m", "uvicorn",'),
}
SUMMARY = re.compile(
    r"^(?P<target>\S+): (?P<passed>\d+)/(?P<rules>\d+) rules passed \((?P<checks>\d+) checks\)"
    r"(?:, (?P<not_run>\d+) checks not run: (?P<reasons>.*?))?"
    r"(?:; rules not run: (?P<rules_not_run>[^;\n]*))?"
    r"(?:; failed: (?P<failed>.*?))?(?:; boot failed: (?P<boot>.*))?$",
    re.M,
)
#: Fewer generated cases than the default: these runs prove the suite, not the processors.
QUICK = [
    "--theory-fuzz-examples",
    "15",
    "--theory-property-examples",
    "5",
    "-p",
    "no:cacheprovider",
]


def make_broken(root: Path, name: str) -> str:
    """``broken/<name>@1`` under ``root``: the template with ``<name>.py`` as its app/http.py."""
    folder = root / f"broken_{name}"
    shutil.copytree(BROKEN / "template", folder, ignore=shutil.ignore_patterns("__pycache__"))
    registry = folder / "registry.yaml"
    registry.write_text(registry.read_text().replace("NAME", name))
    if (BROKEN / f"{name}.py").exists():
        shutil.copy(BROKEN / f"{name}.py", folder / "app" / "http.py")
    if (BROKEN / f"{name}.lock").exists():
        shutil.copy(BROKEN / f"{name}.lock", folder / "requirements.lock")
    return f"broken/{name}@1"


def summaries(output: str) -> dict[str, dict[str, Any]]:
    """The plugin's summary lines, by target: counts, failed rules (their failing checks, and
    the checks of theirs not run), rules none of whose checks ran, checks not run by reason,
    and the boot failure."""
    found = {}
    for m in SUMMARY.finditer(output):
        failed_checks, failed_not_run = {}, {}
        for rule, text in re.findall(r"(\S+) \(([^)]*)\)", m["failed"] or ""):
            failing, _, siblings = text.partition(" | not run: ")
            failed_checks[rule] = set(failing.split())
            failed_not_run[rule] = set(siblings.split())
        reasons = re.findall(r"(.+?) \((\d+)\)(?:, |$)", m["reasons"] or "")
        found[m["target"]] = {
            "passed": int(m["passed"]),
            "rules": int(m["rules"]),
            "checks": int(m["checks"]),
            "failed": set(failed_checks),
            "failed_checks": failed_checks,
            "failed_not_run": failed_not_run,
            "rules_not_run": set((m["rules_not_run"] or "").split()),
            "not_run": {reason: int(count) for reason, count in reasons},
            "boot": m["boot"],
        }
    return found


#: Every rule of SPEC.md the suite checks: a processor's summary counts them all.
RULE_COUNT = len(RULES)
#: The split-secret check needs a *_BASE_URL secret to aim the processor at a local provider.
NO_PROVIDER = "no way to point the processor at a local provider (a *_BASE_URL secret)"
#: The checks not run for a corpus processor (no SPEC §9 hook, no provider address) ...
FAULTS_NOT_DECLARED = {"fault-injection not declared": 3, NO_PROVIDER: 1}
#: ... by rule: a failed rule names them beside its failing checks.
NOT_RUN_BY_RULE = {
    "errors": {"test_err_for_provider_timeout_and_internal_failures"},
    "secrets": {"test_a_secret_split_across_streamed_tokens_is_redacted"},
}


def verdict(summary: dict[str, Any]) -> tuple[Any, ...]:
    """A processor's whole summary: rules passed and counted, failing checks and the not-run
    siblings of each failed rule, rules none of whose checks ran, checks not run, boot failure."""
    keys = (
        "passed",
        "rules",
        "failed_checks",
        "failed_not_run",
        "rules_not_run",
        "not_run",
        "boot",
    )
    return tuple(summary[key] for key in keys)


def fails_exactly(
    rule: str | None,
    checks: str = "",
    not_run: dict[str, int] | None = None,
    siblings: set[str] | None = None,
    rules_not_run: set[str] | None = None,
) -> tuple[Any, ...]:
    """The verdict of a processor that breaks one sentence of ``rule``: in ``rule`` exactly
    ``checks`` (space-separated) fail, beside its ``siblings`` not run; every other rule
    passes but ``rules_not_run``, and none is absent. ``rule=None``: nothing fails."""
    not_run = FAULTS_NOT_DECLARED if not_run is None else not_run
    rules_not_run = rules_not_run or set()
    passed = RULE_COUNT - len(rules_not_run) - (rule is not None)
    if rule is None:
        return (passed, RULE_COUNT, {}, {}, rules_not_run, not_run, None)
    siblings = NOT_RUN_BY_RULE.get(rule, set()) if siblings is None else siblings
    failed = {rule: set(checks.split())}
    return (passed, RULE_COUNT, failed, {rule: siblings}, rules_not_run, not_run, None)


@pytest.fixture
def broken_root(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    root.mkdir()
    return root


FOREIGN = FIXTURES / "foreign"
#: Foreign processors (plain FastAPI apps written from SPEC.md, tests/fixtures/foreign): each
#: is the template with one edit, ``(file, old, new)``, breaking one sentence of SPEC.md; and
#: the rule and the check(s) of that sentence (space-separated).
Edit = tuple[str, str, str]
FOREIGN_BREAKS: dict[str, tuple[Edit | list[Edit], str, str]] = {
    # §5 every run logs http.run.start and http.run.settle (with status and elapsed_ms)
    "settle_without_elapsed_ms": (
        (
            "app/http.py",
            'log("info", "http.run.settle", status=envelope["status"], elapsed_ms=elapsed_ms, **tags)',
            'log("info", "http.run.settle", status=envelope["status"], **tags)',
        ),
        "logs",
        "test_runs_log_start_settle_and_refusals",
    ),
    # §2 /openapi.json describes the three endpoints
    "openapi_hides_healthz": (
        ("app/http.py", '@app.get("/healthz")', '@app.get("/healthz", include_in_schema=False)'),
        "openapi",
        "test_openapi_describes_the_three_endpoints",
    ),
    # §4 every envelope carries meta.env_fingerprint
    "success_without_fingerprint": (
        (
            "app/http.py",
            '"meta": {**meta(), "duration_ms": duration_ms},',
            '"meta": {"image_digest": digest, "duration_ms": duration_ms},',
        ),
        "success-envelope",
        "test_run_answers_one_success_envelope",
    ),
    # §3 Output entry: {"path", "cid", "size_bytes", "mime"}
    "entries_without_cid": (
        (
            "app/http.py",
            '{"path": path, "cid": cid(data), "size_bytes"',
            '{"path": path, "size_bytes"',
        ),
        "outputs",
        "test_outputs_are_declared_and_match_their_bytes",
    ),
    # §3 the index's bytes are exactly json.dumps(obj, sort_keys=True, separators=(",", ":"))
    "index_pretty_printed": (
        (
            "app/http.py",
            'canonical({"outputs": entries})',
            'json.dumps({"outputs": entries}, indent=2).encode()',
        ),
        "index",
        "test_index_is_sorted_canonical_json_of_the_outputs",
    ),
    # §3 receipt.json fields: ... usage (object) ...
    "receipt_without_usage": (
        ("app/http.py", '        "usage": {},\n', ""),
        "receipts",
        "test_both_receipts_are_written_and_not_listed",
    ),
    # §3 in mock mode the same inputs give byte-identical outputs whatever the execution id
    "output_names_the_execution": (
        (
            "app/http.py",
            "f\"echo: {payload['inputs']['params']['text']}\\n\"",
            "f\"echo: {payload['inputs']['params']['text']} ({execution_id})\\n\"",
        ),
        "determinism",
        "test_mock_outputs_do_not_depend_on_the_execution",
    ),
    # §3 P/outputs/** holds the artifacts, and nothing else anywhere (the same bytes every run)
    "same_stray_file_every_run": (
        (
            "app/http.py",
            '    write_atomic(host(prefix + "receipt.json"), canonical(receipt))\n',
            '    write_atomic(host(prefix + "receipt.json"), canonical(receipt))\n'
            '    (ARTIFACTS / "stray.txt").write_bytes(b"same bytes every run")\n',
        ),
        "confinement",
        "test_a_run_writes_only_under_its_prefix",
    ),
    # §3 under P a run writes P/outputs/**, P/outputs.json and P/receipt.json only
    "scratch_file_beside_the_outputs": (
        (
            "app/http.py",
            '    write_atomic(host(prefix + "receipt.json"), canonical(receipt))\n',
            '    write_atomic(host(prefix + "receipt.json"), canonical(receipt))\n'
            '    write_atomic(host(prefix + "scratch.txt"), b"working notes")\n',
        ),
        "confinement",
        "test_under_its_prefix_a_run_writes_its_outputs_index_and_receipt_only",
    ),
    # §4 ERR_INPUTS is HTTP 400
    "inputs_refused_with_422": (
        ("app/http.py", '"ERR_INPUTS": 400,', '"ERR_INPUTS": 422,'),
        "errors",
        "test_err_inputs_when_the_registry_schema_refuses_them",
    ),
    # §4 ERR_MISSING_SECRET: real mode and a required secret is absent
    "missing_secret_as_provider_error": (
        (
            "app/http.py",
            'raise Refused("ERR_MISSING_SECRET", "a required secret is not set")',
            'raise Refused("ERR_PROVIDER", "a required secret is not set")',
        ),
        "errors",
        "test_err_missing_secret_in_real_mode",
    ),
    # §2 /run-stream events carry JSON data
    "progress_data_not_json": (
        (
            "app/http.py",
            'json.dumps({"stage": "done", "status": status})',
            'f"stage done, status {status}"',
        ),
        "stream",
        # every check of the rule reads the events
        "test_stream_ends_in_one_done_equal_to_run test_stream_errors_end_in_done_too "
        "test_fuzzed_stream_payloads_end_in_done",
    ),
    # §5 level is debug|info|warn|error
    "refusals_logged_as_warning": (
        (
            "app/http.py",
            'log("warn", "http.run.error", reason=refused.code, **tags)',
            'log("warning", "http.run.error", reason=refused.code, **tags)',
        ),
        "logs",
        "test_stderr_is_ndjson",
    ),
    # §5 secret values are redacted everywhere: logs, outputs, receipts, envelopes
    "receipt_names_the_secret": (
        (
            "app/http.py",
            '"processor_info": f"foreign echo {REF}",',
            '"processor_info": f"foreign echo {REF} {os.environ.get(\'FOREIGN_API_KEY\')}",',
        ),
        "secrets",
        "test_secret_values_appear_nowhere",
    ),
    # §1 with CI=true, real is refused with ERR_CI_SAFETY ... by the processor itself
    "real_allowed_under_ci": (
        ("app/http.py", 'os.environ.get("CI") == "true"', 'os.environ.get("CI") == "never"'),
        "ci-safety",
        "test_the_processor_refuses_real_under_ci",
    ),
    # §6 a HEALTHCHECK on /healthz (whose command is not in the image: Docker says unhealthy)
    "healthcheck_command_missing": (
        (
            "Dockerfile",
            'CMD ["python", "-c", "import urllib.request; '
            "urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)\"]",
            'CMD ["curl", "-fsS", "http://127.0.0.1:8000/healthz"]',
        ),
        "image",
        "test_docker_reports_the_container_healthy",
    ),
    # §2 GET /healthz answers 200 {"ok": true} (here {"ok": 1}: the adapters' wait and
    # Docker's HEALTHCHECK let it through, the healthz check does not)
    "healthz_ok_is_a_number": (
        ("app/http.py", '    return {"ok": True}\n', '    return {"ok": 1}\n'),
        "healthz",
        "test_healthz_answers_ok",
    ),
    # §2 `inputs` is validated against the processor's registry `inputs` schema (§4: ERR_INPUTS
    # when it fails it): blank text, which the schema accepts, is refused
    "blank_text_refused": (
        (
            "app/http.py",
            '        raise Refused("ERR_INPUTS", f"inputs fail the registry schema at {where}")\n',
            '        raise Refused("ERR_INPUTS", f"inputs fail the registry schema at {where}")\n'
            '    if not payload["inputs"]["params"]["text"].strip():\n'
            '        raise Refused("ERR_INPUTS", "text must not be blank")\n',
        ),
        "properties",
        "test_generated_inputs_get_envelopes_never_5xx",
    ),
    # Concurrent runs with separate prefixes all succeed: this one refuses a run while another
    # is in progress (its runs take 0.2 s, so the check's ten concurrent runs meet)
    "one_run_at_a_time": (
        [
            (
                "app/http.py",
                "EXECUTION_ID = re.compile(",
                "RUNNING: set[str] = set()\nEXECUTION_ID = re.compile(",
            ),
            (
                "app/http.py",
                '    fault = payload["meta"].get("fault")\n',
                '    fault = payload["meta"].get("fault")\n'
                "    if RUNNING:\n"
                '        raise Refused("ERR_INTERNAL", "another run is in progress")\n'
                "    RUNNING.add(execution_id)\n"
                "    await asyncio.sleep(0.2)  # fault: a run takes a moment\n"
                "    RUNNING.discard(execution_id)\n",
            ),
        ],
        "concurrency",
        "test_concurrent_runs_with_separate_prefixes_all_succeed",
    ),
    # §4 Messages never contain secret values, tracebacks or payload bodies
    "message_quotes_the_body": (
        (
            "app/http.py",
            'raise Refused("ERR_PAYLOAD", "the body is not JSON") from None',
            'raise Refused("ERR_PAYLOAD", f"not JSON: {body[:200].decode(errors=\'replace\')}") from None',
        ),
        "errors",
        "test_error_messages_hold_no_payload_body",
    ),
    # §3 A failed run leaves no half-written file: the request is kept under P while a run is
    # checked and removed when it succeeds, but left behind when its inputs are refused (the
    # last check before a run starts; mode and prefix refusals come before the write)
    "request_left_when_inputs_refused": (
        [
            (
                "app/http.py",
                '    prefix = expand_prefix(payload["write_prefix"], payload["execution_id"])\n',
                '    prefix = expand_prefix(payload["write_prefix"], payload["execution_id"])\n'
                '    write_atomic(host(prefix + "request.json"), canonical(payload))\n',
            ),
            (
                "app/http.py",
                '    write_atomic(host(prefix + "receipt.json"), canonical(receipt))\n',
                '    write_atomic(host(prefix + "receipt.json"), canonical(receipt))\n'
                '    host(prefix + "request.json").unlink()\n',
            ),
        ],
        "confinement",
        "test_a_refused_run_writes_nothing",
    ),
}
#: Copies that keep every rule: the edits that make them (none for the conforming one).
FOREIGN_GOOD: dict[str, list[tuple[str, str, str]]] = {
    "conforming": [],
    # declares SPEC §9's hook and implements it
    "with_faults": [
        ("app/http.py", "FAULT_HOOK = False", "FAULT_HOOK = True"),
        ("registry.yaml", "outputs:\n", "capabilities: [fault-injection]\noutputs:\n"),
    ],
    # no inputs.examples: a payload is generated from the schema, once
    "without_examples": [
        ("registry.yaml", "  examples: [{schema: v1, params: {text: hello}}]\n", ""),
    ],
    # never boots: the app fails at import
    "never_boots": [("app/http.py", 'REF = REGISTRY["ref"]', 'REF = REGISTRY["no-such-key"]')],
}


#: Breaks judged before any check runs, each ``(edit, rule, what the verdict says)``: the
#: registry file is validated when the session starts (a usage error naming the file), and
#: the adapters wait for ``200 {"ok": true}`` from /healthz before a processor counts as booted
#: (one error with the boot log; every check that needs the processor is not run).
FOREIGN_EARLY_BREAKS: dict[str, tuple[Edit, str, str]] = {
    # §7 The registry file itself validates against a JSON Schema in contracts/ (an output
    # entry needs its mime)
    "output_without_mime": (
        (
            "registry.yaml",
            "{path: text/echo.txt, mime: text/plain, description",
            "{path: text/echo.txt, description",
        ),
        "registry",
        "outputs[0]: 'mime' is a required property",
    ),
    # §2 GET /healthz answers 200 {"ok": true}
    "healthz_not_ok": (
        ("app/http.py", '    return {"ok": True}\n', '    return {"ok": "yes"}\n'),
        "healthz",
        "not healthy within",
    ),
}


def make_foreign(root: Path, name: str, edits: list[Edit] | None = None) -> str:
    """``foreign/<name>@1`` under ``root``: the template, its shared lock, and its edits
    (``edits``, else those the corpus names ``name`` by)."""
    folder = root / f"foreign_{name}"
    shutil.copytree(FOREIGN / "template", folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(FOREIGN / "requirements.lock", folder / "requirements.lock")
    if edits is None:
        breaks = {**FOREIGN_BREAKS, **FOREIGN_EARLY_BREAKS}
        found = FOREIGN_GOOD[name] if name in FOREIGN_GOOD else breaks[name][0]
        edits = found if isinstance(found, list) else [found]
    for file, old, new in [("registry.yaml", "NAME", name), *edits]:
        path = folder / file
        assert path.read_text().count(old) == 1, f"{name}: {old!r} is not once in {file}"
        path.write_text(path.read_text().replace(old, new))
    return f"foreign/{name}@1"
