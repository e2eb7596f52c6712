"""Finding processors: ``<root>/*/registry.yaml`` for the built-in root and any the user names."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from pytest_theory.registry.refs import Ref, RegistryError, parse_ref
from pytest_theory.registry.spec import REGISTRY_FILENAME, ProcessorSpec, load_spec

#: Extra roots, ``os.pathsep``-separated, for callers that cannot pass them.
ROOTS_ENV = "THEORY_REGISTRY_PATH"


def _package_dir(name: str) -> Path:
    """Where an installed package's sources are, without importing it."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, name
    return Path(spec.origin).resolve().parent


def builtin_root() -> Path:
    """The ``processors/`` folder shipped with this distribution."""
    return _package_dir("pytest_theory.processors")


def runtime_root() -> Path:
    """The processor runtime's sources (``processors/runtime``), which images carry."""
    return builtin_root() / "runtime"


def contracts_root() -> Path:
    """The ``contracts`` package's sources, which images carry beside the runtime."""
    return _package_dir("pytest_theory.contracts")


def default_roots() -> list[Path]:
    extra = [Path(p) for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p]
    return [builtin_root(), *extra]


def iter_registry_files(roots: Iterable[str | Path]) -> Iterator[Path]:
    """Every ``registry.yaml`` one folder below a root (or the root itself, for one processor)."""
    for root in roots:
        root = Path(root).resolve()
        if (root / REGISTRY_FILENAME).is_file():
            yield root / REGISTRY_FILENAME
        elif root.is_dir():
            yield from sorted(root.glob(f"*/{REGISTRY_FILENAME}"))
        else:
            raise RegistryError(f"{root}: registry root not found")


class Registry(Mapping[str, ProcessorSpec]):
    """Every processor found under the roots, by ref string."""

    def __init__(self, specs: Iterable[ProcessorSpec]):
        self._specs: dict[str, ProcessorSpec] = {}
        for spec in specs:
            key = str(spec.ref)
            if key in self._specs:
                raise RegistryError(
                    f"{spec.path}: ref {key} is already declared by {self._specs[key].path}"
                )
            self._specs[key] = spec

    @classmethod
    def discover(
        cls, roots: Iterable[str | Path] | None = None, *, builtin: bool = True
    ) -> Registry:
        """Load every processor under ``roots`` (and the built-in root unless ``builtin=False``)."""
        chosen = list(roots or [])
        if builtin:
            chosen = [*default_roots(), *chosen]
        seen: set[Path] = set()
        specs = []
        for path in iter_registry_files(chosen):
            if path not in seen:
                seen.add(path)
                specs.append(load_spec(path))
        return cls(specs)

    def __getitem__(self, ref: str) -> ProcessorSpec:
        return self._specs[ref]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._specs))

    def __len__(self) -> int:
        return len(self._specs)

    def get_spec(self, ref: str | Ref) -> ProcessorSpec:
        """The spec for ``ref``; a ``RegistryError`` that lists what exists when it is unknown."""
        key = str(parse_ref(str(ref)))
        try:
            return self._specs[key]
        except KeyError:
            known = ", ".join(self) or "none"
            raise RegistryError(f"unknown processor ref {key} (known: {known})") from None
