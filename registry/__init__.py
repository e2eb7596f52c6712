"""Finding, loading and validating processors' ``registry.yaml`` files."""

from pytest_theory.registry.discovery import (
    ROOTS_ENV,
    Registry,
    builtin_root,
    contracts_root,
    default_roots,
    runtime_root,
)
from pytest_theory.registry.refs import Ref, RegistryError, parse_ref
from pytest_theory.registry.spec import (
    ProcessorSpec,
    host_platform,
    load_spec,
    validate_registry_data,
)

__all__ = [
    "ROOTS_ENV",
    "ProcessorSpec",
    "Ref",
    "Registry",
    "RegistryError",
    "builtin_root",
    "contracts_root",
    "default_roots",
    "host_platform",
    "load_spec",
    "parse_ref",
    "runtime_root",
    "validate_registry_data",
]
