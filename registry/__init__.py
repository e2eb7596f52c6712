"""Finding, loading and validating processors' ``registry.yaml`` files."""

from registry.discovery import ROOTS_ENV, Registry, builtin_root, default_roots
from registry.refs import Ref, RegistryError, parse_ref
from registry.spec import ProcessorSpec, host_platform, load_spec, validate_registry_data

__all__ = [
    "ROOTS_ENV",
    "ProcessorSpec",
    "Ref",
    "Registry",
    "RegistryError",
    "builtin_root",
    "default_roots",
    "host_platform",
    "load_spec",
    "parse_ref",
    "validate_registry_data",
]
