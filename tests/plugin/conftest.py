from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES

BROKEN = FIXTURES / "broken"
#: Each broken processor and the one rule it breaks.
BREAKS = {
    "stdout_logs": "logs",
    "unsorted_index": "index",
    "outside_write": "confinement",
    "missing_receipt": "receipts",
    "nondeterministic_mock": "determinism",
    "bare_422": "errors",
    "stream_without_done": "stream",
    "leaked_secret": "secrets",
    "no_digest_on_errors": "errors",
    "django_in_image": "image",
    "no_settle_log": "logs",
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
    r"^(?P<target>\S+): (?P<passed>\d+)/(?P<ran>\d+) rules passed \((?P<checks>\d+) checks\)"
    r"(?:, (?P<not_run>\d+) checks not run: (?P<reasons>.*?))?"
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
    """The plugin's summary lines, by target: counts, failed rules (and their failing checks),
    checks not run by reason, and the boot failure."""
    found = {}
    for m in SUMMARY.finditer(output):
        failed = {
            rule: set(checks.split())
            for rule, checks in re.findall(r"(\S+) \(([^)]*)\)", m["failed"] or "")
        }
        reasons = re.findall(r"(.+?) \((\d+)\)(?:, |$)", m["reasons"] or "")
        found[m["target"]] = {
            "passed": int(m["passed"]),
            "ran": int(m["ran"]),
            "checks": int(m["checks"]),
            "failed": set(failed),
            "failed_checks": failed,
            "not_run": {reason: int(count) for reason, count in reasons},
            "boot": m["boot"],
        }
    return found


@pytest.fixture
def broken_root(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    root.mkdir()
    return root


FOREIGN = FIXTURES / "foreign"
#: Foreign processors (plain FastAPI apps written from SPEC.md, tests/fixtures/foreign): each
#: is the template with one edit, ``(file, old, new)``, breaking one sentence of SPEC.md; and
#: the rule and the check(s) of that sentence (space-separated).
FOREIGN_BREAKS: dict[str, tuple[tuple[str, str, str], str, str]] = {
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


def make_foreign(root: Path, name: str) -> str:
    """``foreign/<name>@1`` under ``root``: the template, its shared lock, and its edits."""
    folder = root / f"foreign_{name}"
    shutil.copytree(FOREIGN / "template", folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(FOREIGN / "requirements.lock", folder / "requirements.lock")
    edits = FOREIGN_GOOD[name] if name in FOREIGN_GOOD else [FOREIGN_BREAKS[name][0]]
    for file, old, new in [("registry.yaml", "NAME", name), *edits]:
        path = folder / file
        assert path.read_text().count(old) == 1, f"{name}: {old!r} is not once in {file}"
        path.write_text(path.read_text().replace(old, new))
    return f"foreign/{name}@1"
