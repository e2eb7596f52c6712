"""pytest-theory: contract tests for containerized HTTP processors.

Public surface (``__all__``): the assertion helpers (rewritten by pytest, so
failures show expected against received), ``Run`` and ``Driver`` (what the
fixtures hand you), ``Target``, ``ProcessorSpec``/``Registry``/``Ref`` and
``RULES``/``SPEC_PATH`` (the rules and the SPEC.md they cite, shipped in the
package). The fixtures (``theory_run``, ``theory_stream``, ... see
``pytest --fixtures``) come with the plugin; the command line is ``theory``.
Names are imported on first use, so loading the plugin stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

pytest.register_assert_rewrite("pytest_theory.asserts")

#: public name -> the module that defines it
_PUBLIC = {
    "assert_canonical_error": "pytest_theory.asserts",
    "assert_envelope": "pytest_theory.asserts",
    "assert_error": "pytest_theory.asserts",
    "assert_index": "pytest_theory.asserts",
    "assert_ndjson_logs": "pytest_theory.asserts",
    "assert_no_secret": "pytest_theory.asserts",
    "assert_outputs": "pytest_theory.asserts",
    "assert_receipts": "pytest_theory.asserts",
    "assert_stream": "pytest_theory.asserts",
    "assert_success": "pytest_theory.asserts",
    "Driver": "pytest_theory.driver",
    "Run": "pytest_theory.driver",
    "Target": "pytest_theory.session",
    "ProcessorSpec": "pytest_theory.registry",
    "Ref": "pytest_theory.registry",
    "Registry": "pytest_theory.registry",
    "RULES": "pytest_theory.rules",
    "SPEC_PATH": "pytest_theory.rules",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'pytest_theory' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
