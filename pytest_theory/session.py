"""One pytest session's processors: adapters, worlds and booted processors, reused and then removed.

A target is a (ref, adapter) pair. Each target gets its own world folder and,
per environment variant, one booted processor for the whole session:

``default``  what the adapter passes: IMAGE_DIGEST, the declared secrets present, CI
``canary``   every declared secret set to a canary value, and CI=true (so real is refused)
``bare``     IMAGE_DIGEST only: no secret, no CI (for ERR_MISSING_SECRET)
``fault``    the runtime's fault injection on, a 2 s timeout, and CI=true
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters import get_adapter
from adapters.base import AdapterError, ProcessorHandle
from pytest_theory.options import TheoryOptions
from registry import ProcessorSpec, Registry, RegistryError

CANARY = "theory-canary-5e3b9d0c7a"
#: Where the session lives on ``config.stash``.
SESSION = pytest.StashKey["TheorySession"]()
VARIANTS = ("default", "canary", "bare", "fault")
FAULT_TIMEOUT_S = "2"


@dataclass(frozen=True, order=True)
class Target:
    ref: str
    adapter: str

    def __str__(self) -> str:
        return f"{self.ref}-{self.adapter}"

    @property
    def slug(self) -> str:
        return str(self).replace("/", "-").replace("@", "-v")


class TheorySession:
    def __init__(self, options: TheoryOptions):
        self.options = options
        #: Set by the ``theory_session`` fixture (a session temp folder) unless --theory-world is given.
        self.base_dir: Path | None = options.world
        self._registry: Registry | None = None
        self._adapters: dict[str, Any] = {}
        self._handles: dict[tuple[Target, str], ProcessorHandle] = {}
        self._failures: dict[tuple[Target, str], AdapterError] = {}
        self._lock = threading.RLock()

    # -- registry and targets --------------------------------------------------------

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            try:
                self._registry = Registry.discover(self.options.registry_roots)
            except RegistryError as exc:
                raise pytest.UsageError(f"pytest-theory: {exc.message}") from None
        return self._registry

    def refs(self, requested: tuple[str, ...] | None = None) -> list[str]:
        """The refs asked for, with ``all`` expanded; unknown refs are a usage error."""
        refs: list[str] = []
        for ref in requested if requested is not None else self.options.refs:
            if ref == "all":
                refs.extend(self.registry)
            else:
                try:
                    refs.append(str(self.registry.get_spec(ref).ref))
                except RegistryError as exc:
                    raise pytest.UsageError(f"--theory-ref {ref}: {exc.message}") from None
        return list(dict.fromkeys(refs))

    def targets(self) -> list[Target]:
        return [Target(ref, adapter) for ref in self.refs() for adapter in self.options.adapters]

    def spec(self, target: Target) -> ProcessorSpec:
        return self.registry.get_spec(target.ref)

    def world(self, target: Target) -> Path:
        """The world folder of ``target``: its ``artifacts/`` is what the processor sees."""
        if self.base_dir is None:
            raise RuntimeError("the theory_session fixture gives the session its world folder")
        root = self.base_dir / target.slug
        (root / "artifacts").mkdir(parents=True, exist_ok=True)
        return root

    # -- adapters and processors ---------------------------------------------------------

    def adapter(self, name: str) -> Any:
        with self._lock:
            if name not in self._adapters:
                options: dict[str, Any] = {}
                if name == "local":
                    options = {"build": self.options.build}
                self._adapters[name] = get_adapter(name, **options)
            return self._adapters[name]

    def processor(self, target: Target, variant: str = "default") -> ProcessorHandle:
        """The booted processor for ``target`` in ``variant``; booted once per session.

        A processor that cannot be booted fails every check that needs it with the
        adapter's error (ERR_HEALTH with its log tail, ERR_IMAGE_UNAVAILABLE, ...).
        """
        key = (target, variant)
        with self._lock:
            if key in self._failures:
                raise self._failures[key]
            if key not in self._handles:
                try:
                    self._handles[key] = self._boot(target, variant)
                except AdapterError as exc:
                    self._failures[key] = exc
                    raise
            return self._handles[key]

    def _boot(self, target: Target, variant: str) -> ProcessorHandle:
        spec = self.spec(target)
        adapter = self.adapter(target.adapter)
        world = self.world(target)
        if variant == "default":
            handle: ProcessorHandle = adapter.acquire(
                spec, world_root=world, secrets_present=spec.secrets_declared
            )
            return handle
        if target.adapter == "modal":
            pytest.skip("needs a processor the harness starts itself (local or inprocess)")
        digest = self.processor(target).image_digest
        environment = {"IMAGE_DIGEST": digest}
        if variant == "canary":
            environment.update({name: CANARY for name in spec.secrets_declared}, CI="true")
        elif variant == "fault":
            environment.update(
                CI="true", THEORY_FAULT_INJECTION="1", THEORY_TIMEOUT_S=FAULT_TIMEOUT_S
            )
        handle = adapter.acquire(spec, environment=environment, world_root=world)
        return handle

    def close(self) -> None:
        with self._lock:
            adapters, self._adapters, self._handles = list(self._adapters.values()), {}, {}
        for adapter in adapters:
            if not self.options.keep:
                adapter.close()
            elif hasattr(adapter, "detach"):
                adapter.detach()  # kept for debugging: not even the exit hook removes them
