"""The example schemathesis test against a processor written without pytest-theory:
it passes while the processor keeps SPEC.md and the HTTP rules, and fails when it breaks one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.schemathesis.conftest import make_foreign, write_example

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.usefixtures("no_leaks")]

#: Each break and what schemathesis' default checks say about it.
BREAKS = {
    "bare_422": "Received: 422",  # status_code_conformance: 422 is no SPEC §4 status
    "no_allow": "405 without required `Allow` header",  # RFC 9110
}


def test_the_example_fails_a_foreign_processor_only_where_it_breaks(
    pytester: pytest.Pytester, tmp_path: Path, docker_client: object
) -> None:
    root = tmp_path / "registry"
    root.mkdir()
    keeps = make_foreign(root, "keeps")
    broken = {make_foreign(root, name, name): message for name, message in BREAKS.items()}
    write_example(pytester, [keeps, *broken])
    result = pytester.runpytest_subprocess(
        "test_schemathesis.py", "--theory-registry", str(root), "-p", "no:cacheprovider", "-v"
    )
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output[-3000:]
    # One subtest per operation: a failing operation is a SUBFAILED line, with its section.
    failed = set(re.findall(r"^SUBFAILED \S*test_api\[(.+?)-local\]", output, flags=re.M))
    assert failed == set(broken), output[-3000:]
    header = r"^_{3,} (.*) _{3,}$"
    sections = zip(
        re.findall(header, output, flags=re.M),
        re.split(header, output, flags=re.M)[2::2],
        strict=True,
    )
    reported = {
        (ref, message)
        for title, body in sections
        for ref, message in broken.items()
        if f"[{ref}-local]" in title and message in body
    }
    assert reported == set(broken.items()), output[-4000:]
