"""``--theory-report``, ``--theory-reuse`` and ``theory-report merge``, run as users run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_theory.contracts import problems
from pytest_theory.registry import Registry
from pytest_theory.report import attest
from pytest_theory.report.cli import main as report_main
from pytest_theory.report.matrix import parse_markdown
from pytest_theory.report.plugin import check_id
from pytest_theory.report.sources import known_digest
from tests.plugin.conftest import QUICK, make_broken
from tests.report.conftest import cells_of, junit_outcomes

docker = pytest.mark.docker


def assert_valid_report(report: Path) -> dict[str, dict[str, object]]:
    """Every cell validates, and so does its attestation, which says what the cell says."""
    cells = cells_of(report)
    assert cells
    for slug, cell in cells.items():
        assert problems("report_cell", cell) == []
        statement = json.loads((report / "attestations" / f"{slug}.intoto.json").read_text())
        assert problems("intoto_test_result", statement) == []
        assert statement["predicate"]["result"] == cell["result"]
        assert attest.subject_digests(statement) == {cell["image"]["digest"]}
        names = {d["name"] for d in statement["predicate"]["configuration"]}
        assert names == {"SPEC.md", "registry.yaml", "pytest-theory"}
    return cells


def test_check_ids_leave_out_the_target() -> None:
    target = "llm/litellm@1-local"
    assert check_id(f"test_contract.py::test_x[{target}]", target) == "test_contract.py::test_x"
    assert check_id(f"a/b/test_contract.py::test_x[{target}-/x/]", target) == (
        "test_contract.py::test_x[/x/]"
    )
    assert check_id(f"test_contract.py::test_x[415-{target}]", target) == (
        "test_contract.py::test_x[415]"
    )


@docker
@pytest.mark.usefixtures("no_leaks")
def test_a_run_over_two_processors_and_two_adapters_writes_a_report_junit_agrees_with(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = pytester.runpytest_subprocess(
        "--theory-ref", "all", "--theory-adapter", "local", "--theory-adapter", "inprocess",
        "--theory-report", "report", "--junitxml", "junit.xml", *QUICK,
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    report = pytester.path / "report"
    cells = assert_valid_report(report)
    assert {(c["ref"], c["adapter"]) for c in cells.values()} == {
        (ref, adapter)
        for ref in ("llm/litellm@1", "replicate/generic@1")
        for adapter in ("local", "inprocess")
    }
    junit = junit_outcomes(pytester.path / "junit.xml")
    table = (report / "matrix.md").read_text()
    assert parse_markdown(table) == junit  # every (processor, rule, adapter) cell, and no other
    for cell in cells.values():
        for rule, found in cell["rules"].items():
            assert found["outcome"] == junit[(cell["ref"], rule, cell["adapter"])]
        assert cell["image"]["digest"] == known_digest(
            Registry.discover().get_spec(cell["ref"]), cell["adapter"]
        )
    # No cell failed; a cell is WARNED exactly when some check did not run (inprocess cannot
    # look inside the image; replicate's provider is no OpenAI-compatible one to fake).
    for cell in cells.values():
        not_run = any(c["outcome"] == "not-run" for c in cell["checks"])
        assert cell["result"] == ("WARNED" if not_run else "PASSED"), cell["ref"]
    results = {(c["ref"], c["adapter"]): c["result"] for c in cells.values()}
    assert results[("llm/litellm@1", "local")] == "PASSED"
    assert results[("llm/litellm@1", "inprocess")] == "WARNED"
    skipped = [c for cell in cells.values() for c in cell["checks"] if c["outcome"] == "not-run"]
    assert skipped and all(c["reason"] for c in skipped)
    assert table in summary.read_text()


@docker
@pytest.mark.usefixtures("no_leaks")
def test_a_broken_processor_is_attested_failed_naming_the_check(
    pytester: pytest.Pytester, broken_root: Path
) -> None:
    ref = make_broken(broken_root, "unsorted_index")
    result = pytester.runpytest_subprocess(
        "--theory-ref", ref, "--theory-registry", str(broken_root), "-k", "index or healthz",
        "--theory-report", "report", *QUICK,
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = pytester.path / "report"
    (cell,) = assert_valid_report(report).values()
    assert cell["result"] == "FAILED" and cell["rules"]["index"]["outcome"] == "failed"
    assert cell["rules"]["healthz"]["outcome"] == "passed"
    (failed,) = [c for c in cell["checks"] if c["outcome"] == "failed"]
    assert "not sorted by path" in failed["message"]
    statement = json.loads(next((report / "attestations").glob("*.intoto.json")).read_text())
    assert statement["predicate"]["failedTests"] == [
        "test_contract.py::test_index_is_sorted_canonical_json_of_the_outputs"
    ]
    assert report_main(["merge", str(report), "--out", str(pytester.path / "merged")]) == 1


def test_two_jobs_merge_into_one_matrix(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two pytest processes, one processor each (as shards of a CI matrix), then one merge."""
    for job, ref in (("job-1", "llm/litellm@1"), ("job-2", "replicate/generic@1")):
        result = pytester.runpytest_subprocess(
            "--theory-ref", ref, "--theory-adapter", "inprocess", "--theory-report", job, *QUICK
        )
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    merged = pytester.path / "merged"
    code = report_main(["merge", str(pytester.path / "job-1"), str(pytester.path / "job-2"),
                        "--out", str(merged)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    cells = assert_valid_report(merged)
    assert {c["ref"] for c in cells.values()} == {"llm/litellm@1", "replicate/generic@1"}
    rows = {row for row, _, _ in parse_markdown((merged / "matrix.md").read_text())}
    assert rows == {"llm/litellm@1", "replicate/generic@1"}
    assert (merged / "matrix.md").read_text() in capsys.readouterr().out

    # One failed check in one job's cell fails the merge, naming the cell and the check.
    path = next((pytester.path / "job-2" / "cells").glob("*.json"))
    cell = json.loads(path.read_text())
    cell["checks"][0].update(outcome="failed", message="broken on purpose")
    cell.update(result="FAILED")
    path.write_text(json.dumps(cell))
    code = report_main(["merge", str(pytester.path / "job-1"), str(pytester.path / "job-2"),
                        "--out", str(merged)])  # fmt: skip
    assert code == 1
    assert f"FAILED replicate/generic@1 (inprocess, mock): {cell['checks'][0]['id']}" in (
        capsys.readouterr().err
    )


def test_merge_refuses_what_is_not_a_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "job" / "cells").mkdir(parents=True)
    (tmp_path / "job" / "cells" / "x.json").write_text('{"schema": "nope"}')
    assert report_main(["merge", str(tmp_path / "job"), "--out", str(tmp_path / "out")]) == 2
    assert "not a report cell" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_author_command_mounts_report_merge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_theory.cli import main as theory_main

    (tmp_path / "job" / "cells").mkdir(parents=True)
    (tmp_path / "job" / "cells" / "x.json").write_text('{"schema": "nope"}')
    argv = ["report", "merge", str(tmp_path / "job"), "--out", str(tmp_path / "out")]
    assert theory_main(argv) == 2
    assert "not a report cell" in capsys.readouterr().err


def test_reuse_needs_a_report_folder(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--theory-ref", "llm/litellm@1", "--theory-reuse")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--theory-reuse reads the stored cells of --theory-report DIR" in result.stderr.str()


@docker
@pytest.mark.usefixtures("no_leaks")
def test_reuse_skips_an_unchanged_cell_and_reruns_a_changed_one(
    pytester: pytest.Pytester, broken_root: Path, counts_file: Path
) -> None:
    ref = make_broken(broken_root, "echo")
    run = [
        "--theory-ref",
        ref,
        "--theory-registry",
        str(broken_root),
        "--theory-report",
        "r",
        *QUICK,
    ]

    first = pytester.runpytest_subprocess(*run)
    assert first.ret == pytest.ExitCode.OK, first.stdout.str()[-3000:]
    assert json.loads(counts_file.read_text())["containers"] >= 1
    stored = next((pytester.path / "r" / "cells").glob("*.json"))
    stored_result = json.loads(stored.read_text())["result"]
    assert stored_result in ("PASSED", "WARNED")  # WARNED: some checks not run, none failed

    second = pytester.runpytest_subprocess(*run, "--theory-reuse")
    assert second.ret == pytest.ExitCode.OK, second.stdout.str()[-3000:]
    assert json.loads(counts_file.read_text()) == {"containers": 0, "builds": 0}
    second.stdout.fnmatch_lines(
        [f"pytest-theory: {ref}-local reused ({stored_result}) from {stored} of *"]
    )
    cell = json.loads(stored.read_text())
    assert cell["reused_from"]["report"] == str(stored)
    assert problems("report_cell", cell) == []

    # One byte of the processor's code: a new image, so the cell runs again.
    http = broken_root / "broken_echo" / "app" / "http.py"
    http.write_bytes(http.read_bytes() + b"#")
    third = pytester.runpytest_subprocess(*run, "--theory-reuse", "-k", "healthz")
    assert third.ret == pytest.ExitCode.OK, third.stdout.str()[-3000:]
    assert "reused" not in third.stdout.str()
    assert json.loads(counts_file.read_text())["containers"] >= 1  # built once per content
    rerun = json.loads(stored.read_text())
    assert rerun["reused_from"] is None and rerun["result"] in ("PASSED", "WARNED")
    assert rerun["image"]["digest"] != cell["image"]["digest"]
    assert rerun["source_hash"] != cell["source_hash"]
