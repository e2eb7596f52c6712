"""The plugin's declared surface: marker arguments checked, the README's rules table from RULES."""

from __future__ import annotations

import json

import pytest

from pytest_theory.plugin import validate_theory
from pytest_theory.rules import markdown_table
from tests.conftest import REPO


def test_the_theory_marker_takes_refs_and_adapters() -> None:
    mark = pytest.mark.theory(ref="llm/litellm@1", adapter=["local", "inprocess"]).mark
    assert validate_theory(mark) == (("llm/litellm@1",), ("local", "inprocess"))
    assert validate_theory(pytest.mark.theory.mark) == ((), ())


@pytest.mark.parametrize(
    ("mark", "error", "says"),
    [
        (pytest.mark.theory("llm/litellm@1").mark, TypeError, "positional"),
        (pytest.mark.theory(refs="llm/litellm@1").mark, TypeError, "'refs'"),
        (pytest.mark.theory(adapter="docker").mark, ValueError, "unknown adapter 'docker'"),
    ],
    ids=["positional", "misspelt", "unknown-adapter"],
)
def test_a_wrong_marker_argument_is_an_error_never_ignored(
    mark: pytest.Mark, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=r"@pytest\.mark\.theory") as raised:
        validate_theory(mark)
    assert says in str(raised.value)


def test_the_readme_rules_table_is_the_one_rules_writes() -> None:
    """``python -m pytest_theory.rules`` writes it; paste its output when a rule changes."""
    assert markdown_table() in (REPO / "README.md").read_text()


def test_the_variants_a_check_needs_are_read_from_its_fixtures(pytester: pytest.Pytester) -> None:
    """A check asks for a variant by its fixture, also through a fixture of its own: that
    variant boots beside the default, and the checks that need variants run last."""
    pytester.makeconftest(
        """
        import json
        import pytest
        from pytest_theory.session import TheorySession

        @pytest.fixture
        def my_canary(theory_canary):
            return theory_canary

        def pytest_collection_finish(session):
            wanted = TheorySession.of(session.config).variants_wanted
            print("WANTED", json.dumps({str(t): sorted(v) for t, v in wanted.items()}))
            print("ORDER", json.dumps([item.originalname for item in session.items]))
        """
    )
    pytester.makepyfile(
        test_mine="""
        import pytest

        pytestmark = pytest.mark.theory(ref="llm/litellm@1", adapter="local")

        def test_fault(theory_fault): pass
        def test_canary_through_my_fixture(my_canary): pass
        def test_default_only(theory_driver): pass
        """
    )
    result = pytester.runpytest("--collect-only", "-q", "-s")
    lines = {
        line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in result.outlines if " " in line
    }
    assert json.loads(lines["WANTED"]) == {"llm/litellm@1-local": ["canary", "fault"]}
    assert json.loads(lines["ORDER"]) == [
        "test_default_only",
        "test_fault",
        "test_canary_through_my_fixture",
    ]
