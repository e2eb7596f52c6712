"""Mode resolution and the CI-safety rule (SPEC section 1).

The mode is exactly ``mock`` or ``real``, taken from the payload and from nowhere
else. The one environment rule: with ``CI`` set to a true value, ``real`` is
refused with ``ERR_CI_SAFETY``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum

from pytest_theory.contracts.errors import ContractError, ErrorCode

_TRUE = frozenset({"true", "1", "yes"})


class Mode(StrEnum):
    MOCK = "mock"
    REAL = "real"


def is_ci(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``CI`` is ``true`` (or ``1``/``yes``, any case), as CI services set it."""
    env = os.environ if environ is None else environ
    return env.get("CI", "").strip().lower() in _TRUE


def parse_mode(mode: object) -> Mode:
    """``Mode`` for exactly ``"mock"`` or ``"real"``; ``ERR_MODE`` for anything else."""
    if isinstance(mode, str) and mode in Mode._value2member_map_:
        return Mode(mode)
    raise ContractError(ErrorCode.ERR_MODE, "mode must be 'mock' or 'real'")


def check_ci_safety(mode: Mode, environ: Mapping[str, str] | None = None) -> None:
    """Refuse ``real`` under CI with ``ERR_CI_SAFETY``."""
    if mode is Mode.REAL and is_ci(environ):
        raise ContractError(ErrorCode.ERR_CI_SAFETY, "mode 'real' is refused when CI=true")


def resolve_mode(mode: object, environ: Mapping[str, str] | None = None) -> Mode:
    """Parse ``mode`` and apply the CI-safety rule: the one function every layer calls."""
    parsed = parse_mode(mode)
    check_ci_safety(parsed, environ)
    return parsed
