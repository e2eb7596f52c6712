"""The assertion helpers as a user imports them."""

from __future__ import annotations

import json
import sys

import pytest

import pytest_theory.asserts as asserts
from pytest_theory.driver import Run

ERROR = {"status": "error", "execution_id": "e-1", "error": {"code": "ERR_MODE", "message": "m"}}


def test_every_helper_is_public() -> None:
    helpers = {name for name in dir(asserts) if name.startswith("assert_")}
    assert helpers == set(asserts.__all__)


def test_the_helpers_are_rewritten_by_pytest() -> None:
    """A failing helper shows the values it compared, not a bare AssertionError."""
    loader = getattr(sys.modules["pytest_theory.asserts"], "__loader__", None)
    assert type(loader).__name__ == "AssertionRewritingHook"
    refused = Run({"execution_id": "e-1"}, 400, json.dumps(ERROR), world=None)
    with pytest.raises(AssertionError) as failure:
        asserts.assert_error(refused, "ERR_INPUTS")
    assert "(400, 'ERR_MODE') == (400, 'ERR_INPUTS')" in str(failure.value)
