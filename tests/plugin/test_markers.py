"""The plugin's declared surface: marker arguments checked, the README's rules table from RULES."""

from __future__ import annotations

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
