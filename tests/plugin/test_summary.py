"""The summary line and the SPEC-only helpers, without a processor."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_theory.asserts import assert_ndjson_logs, log_line_problems
from pytest_theory.plugin import summarize
from tests.plugin.conftest import summaries


def test_the_summary_counts_checks_not_run_and_names_failing_checks() -> None:
    results = {
        "x/y@1-local": {
            "index": [("passed", "test_a"), ("failed", "test_index")],
            "logs": [("passed", "test_b")],
            "errors": [("passed", "test_c")],
        }
    }
    not_run = {"x/y@1-local": ["fault-injection not declared"] * 3}
    (line,) = summarize(results, not_run)
    assert line == (
        "x/y@1-local: 2/3 rules passed (4 checks), 3 checks not run: "
        "fault-injection not declared (3); failed: index (test_index)"
    )
    parsed = summaries(line)["x/y@1-local"]
    assert parsed["failed_checks"] == {"index": {"test_index"}}
    assert parsed["not_run"] == {"fault-injection not declared": 3}


def test_no_rule_is_absent_and_a_failed_rule_names_its_checks_not_run() -> None:
    """A rule none of whose checks ran still counts, named as not run; a failing check does
    not hide the siblings of its rule that did not run (SPEC §9's hooks, say)."""
    fault = "test_err_for_provider_timeout_and_internal_failures"
    results = {
        "x/y@1-local": {
            "errors": [("failed", "test_err_mode"), ("passed", "test_c")]
            + [("not run", fault)] * 3,
            "image": [("passed", "test_d"), ("not run", "test_health")],
            "digest-drift": [("not run", "test_drift")],
        }
    }
    not_run = {"x/y@1-local": ["fault-injection not declared"] * 3 + ["unknown digest", "h"]}
    (line,) = summarize(results, not_run)
    assert line == (
        "x/y@1-local: 1/3 rules passed (3 checks), 5 checks not run: fault-injection not "
        "declared (3), h (1), unknown digest (1); rules not run: digest-drift; "
        f"failed: errors (test_err_mode | not run: {fault})"
    )
    parsed = summaries(line)["x/y@1-local"]
    assert (parsed["passed"], parsed["rules"], parsed["rules_not_run"]) == (1, 3, {"digest-drift"})
    assert parsed["failed_checks"] == {"errors": {"test_err_mode"}}
    assert parsed["failed_not_run"] == {"errors": {fault}}


def test_a_boot_failure_is_named_once() -> None:
    (line,) = summarize(
        {"x/y@1-local": {"registry": [("passed", "test_r")]}},
        {"x/y@1-local": ["x/y@1-local did not boot (ERR_HEALTH)"] * 40},
        {"x/y@1-local": "x/y@1-local (default) did not boot: ERR_HEALTH: exited"},
    )
    parsed = summaries(line)["x/y@1-local"]
    assert (parsed["passed"], parsed["rules"]) == (1, 1)
    assert parsed["not_run"] == {"x/y@1-local did not boot (ERR_HEALTH)": 40}
    assert parsed["boot"] == "x/y@1-local (default) did not boot: ERR_HEALTH: exited"


def test_ts_is_an_rfc3339_string_or_a_number() -> None:
    """SPEC §5: `ts` (an RFC 3339 string, or Unix seconds as a number)."""
    line = {"level": "info", "event": "e", "service": "s"}
    for ts in (1796186474.93, 1796186474, "2026-12-02T04:47:22Z", "2026-12-02T04:47:22.5+01:00"):
        assert log_line_problems({**line, "ts": ts}) == [], ts
    for ts in ("yesterday", "2026-12-02 04:47", True, None):
        assert log_line_problems({**line, "ts": ts}) != [], ts
    assert assert_ndjson_logs(json.dumps({**line, "ts": 1.5}) + "\n")


def test_no_check_requires_the_projects_own_spellings() -> None:
    """The suite names no hash-scheme spelling and no seed formula (SPEC does not define them)."""
    suite = Path(__file__).resolve().parents[2] / "pytest_theory"
    text = (suite / "asserts.py").read_text() + (suite / "suite" / "test_contract.py").read_text()
    assert "HASH_SCHEMA" not in text and "seed_for" not in text
