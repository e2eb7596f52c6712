"""pytest-theory: contract tests for containerized HTTP processors.

Public surface: the fixtures in ``pytest_theory.fixtures``, the assertion
helpers in ``pytest_theory.asserts`` (rewritten by pytest, so failures show
expected against received), and ``Run``/``Driver`` from ``pytest_theory.driver``.
"""

import pytest

pytest.register_assert_rewrite("pytest_theory.asserts")
