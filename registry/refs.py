"""Processor refs: ``ns/name@version``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pytest_theory.contracts.errors import ContractError, ErrorCode

REF_RE = re.compile(
    r"^(?P<ns>[a-z][a-z0-9_-]*)/(?P<name>[a-z][a-z0-9_-]*)@(?P<version>[1-9][0-9]*)$"
)


class RegistryError(ContractError):
    """A registry file or ref that cannot be used; the message names the file and field."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.ERR_REGISTRY, message)


@dataclass(frozen=True, order=True)
class Ref:
    ns: str
    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.ns}/{self.name}@{self.version}"

    @property
    def dirname(self) -> str:
        """The processor's folder name, ``<ns>_<name>``."""
        return f"{self.ns}_{self.name}"

    @property
    def slug(self) -> str:
        """A name safe for images, containers and apps: ``ns-name-v1``."""
        return f"{self.ns}-{self.name}-v{self.version}".replace("_", "-")


def parse_ref(value: object) -> Ref:
    """Parse ``ns/name@version``; ``RegistryError`` when it is not one."""
    match = REF_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise RegistryError(
            f"{value!r} is not a processor ref (ns/name@version, ns and name match "
            "[a-z][a-z0-9_-]*, version a positive integer)"
        )
    return Ref(match["ns"], match["name"], int(match["version"]))
