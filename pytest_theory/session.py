"""One pytest session's processors: adapters, worlds and booted processors, reused and then removed.

A target is a (ref, adapter) pair. Each target gets its own world folder and,
per environment variant, one booted processor for the whole session:

``default``  what the adapter passes: IMAGE_DIGEST, the declared secrets present, CI
``canary``   every declared secret set to a canary value, and CI=true (so real is refused)
``bare``     IMAGE_DIGEST only: no secret, no CI (for ERR_MISSING_SECRET)
``fault``    SPEC §9's fault injection on, a 0.5 s timeout, and CI=true (only for a
           processor whose registry declares ``capabilities: [fault-injection]``)

Boot once, fail once: a processor that cannot be built or never becomes healthy
fails the first check that needs it with the build or boot log (``BootFailed``);
every other check of that target is reported as not run, for that reason.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytest_theory.adapters import get_adapter
from pytest_theory.adapters.base import Adapter, AdapterError, ProcessorHandle
from pytest_theory.contracts.errors import ContractError
from pytest_theory.driver import example_inputs
from pytest_theory.options import TheoryOptions
from pytest_theory.registry import ProcessorSpec, Registry, RegistryError

if TYPE_CHECKING:
    from pytest_theory.fuzz import CaseCache  # schemathesis is slow to import; typing only

CANARY = "theory-canary-5e3b9d0c7a"
#: Where the session lives on ``config.stash``.
SESSION = pytest.StashKey["TheorySession"]()
VARIANTS = ("default", "canary", "bare", "fault")
#: The variant fixtures (pytest_theory.fixtures) and the variant each boots. The plugin reads
#: a check's fixture names to boot the variants it needs in the background, beside the
#: default. Here, not in fixtures.py: the plugin must not import that module before pytest
#: registers it (its asserts would go unrewritten).
VARIANT_FIXTURES = {"theory_canary": "canary", "theory_bare": "bare", "theory_fault": "fault"}
FAULT_TIMEOUT_S = "0.5"
FAULT_INJECTION = "fault-injection"
#: How a check that cannot run says why (a skip; the summary counts it as not run).
NOT_RUN = "not run: "


class BootFailed(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """The one error of a target whose processor could not be built or booted."""


def not_run(reason: str) -> NoReturn:
    """Report the calling check as not run, with ``reason``; never a failure."""
    pytest.skip(NOT_RUN + reason)


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
    def __init__(self, options: TheoryOptions, cache: CaseCache | None = None):
        self.options = options
        #: Where generated fuzz and property cases are kept between runs (pytest's cache).
        self.cache = cache
        #: Set by the ``theory_session`` fixture (a session temp folder) unless --theory-world is given.
        self.base_dir: Path | None = options.world
        #: Variants the selected tests will ask for, booted in the background once the
        #: target's default processor is up (set by the plugin after collection).
        self.variants_wanted: dict[Target, set[str]] = {}
        self._registry: Registry | None = None
        self._adapters: dict[str, Adapter] = {}
        self._boots: dict[tuple[Target, str], Future[ProcessorHandle]] = {}
        self._background: ThreadPoolExecutor | None = None
        self._closed = False
        self._lock = threading.RLock()
        #: ``(target, variant, base_url)`` of each container ``--theory-keep`` left running.
        self.kept: list[tuple[Target, str, str]] = []
        #: Targets whose boot failed, and the one-line reason their other checks did not run.
        self.boot_failures: dict[Target, str] = {}

    @classmethod
    def of(cls, config: pytest.Config) -> TheorySession:
        """The one session of ``config``, made on first use."""
        session = config.stash.get(SESSION, None)
        if session is None:
            session = config.stash[SESSION] = cls(
                TheoryOptions.from_config(config), cache=getattr(config, "cache", None)
            )
        return session

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
                    raise pytest.UsageError(
                        f"--theory-ref {ref}: {exc.message}; processors outside this package "
                        "are found through --theory-registry PATH or theory_registry in the "
                        "ini file"
                    ) from None
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

    def refusals(self) -> list[str]:
        """Why any target cannot run in its adapter's lane (said once, at session start)."""
        found = []
        for target in self.targets():
            reason = self.adapter(target.adapter).refusal(self.spec(target))
            if reason:
                found.append(f"{target}: {reason}")
        return found

    def adapter(self, name: str) -> Adapter:
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
        future, mine = self._claim(target, variant)
        if mine:
            self._fulfil(future, target, variant)
        return future.result()

    def boot(self, target: Target, variant: str = "default") -> ProcessorHandle:
        """``processor()``, for a check: the first boot failure of a target is its one error
        (``BootFailed``, with the build or boot log); later ones report the check not run."""
        try:
            handle = self.processor(target, variant)
        except AdapterError as exc:
            reason = f"{target} did not boot ({exc.code.value})"
            with self._lock:
                first = target not in self.boot_failures
                self.boot_failures.setdefault(target, reason)
            if not first:
                not_run(self.boot_failures[target])
            log = "\n".join(exc.logs_tail)
            raise BootFailed(
                f"{target} ({variant}) did not boot: {exc.code.value}: {exc.message}\n{log}",
                pytrace=False,
            ) from None
        example_inputs(self.spec(target), self.cache)  # generated once, kept in pytest's cache
        return handle

    def _claim(self, target: Target, variant: str) -> tuple[Future[ProcessorHandle], bool]:
        """The boot of ``(target, variant)``, and whether the caller must carry it out."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the session is closed: it boots no more processors")
            future = self._boots.get((target, variant))
            if future is not None:
                return future, False
            future = self._boots[(target, variant)] = Future()
            return future, True

    def _fulfil(self, future: Future[ProcessorHandle], target: Target, variant: str) -> None:
        if variant == "default":
            self._boot_in_background(target, self.variants_wanted.get(target, set()))
        try:
            future.set_result(self._boot(target, variant))
        except BaseException as exc:  # pytest's skip too: every asker gets the same outcome
            future.set_exception(exc)

    def _boot_in_background(self, target: Target, variants: set[str]) -> None:
        """Start ``variants`` beside the default processor, so their starts overlap.

        The image is resolved (and built if need be) here first, once, not by each boot.
        """
        if not variants or not self.adapter(target.adapter).sets_environment:
            return  # the variants are processors the harness starts itself
        try:
            self.adapter(target.adapter).digest_for(self.spec(target))
        except ContractError:
            return  # the default's boot reports it
        # A variant the processor can't have (no hook, no secret) is decided by _boot, once:
        # its future holds that "not run" for every check that asks.
        for variant in sorted(variants):
            future, mine = self._claim(target, variant)
            if mine:
                with self._lock:
                    if self._background is None:
                        self._background = ThreadPoolExecutor(
                            len(VARIANTS) - 1, thread_name_prefix="theory-boot"
                        )
                self._background.submit(self._fulfil, future, target, variant)

    def settle(self) -> None:
        """Wait for the background boots under way: a check that counts containers needs them done."""
        with self._lock:
            pending = list(self._boots.values())
        wait(pending)

    def _boot(self, target: Target, variant: str) -> ProcessorHandle:
        spec = self.spec(target)
        adapter = self.adapter(target.adapter)
        world = self.world(target)
        if variant == "default":
            environment = adapter.default_environment(spec, spec.secrets_declared)
            return adapter.acquire(spec, environment=environment, world_root=world)
        if not adapter.sets_environment:
            not_run(
                f"needs a processor the harness starts itself; {target.adapter} processors "
                "keep the environment they were deployed with"
            )
        if variant == "fault" and not spec.declares(FAULT_INJECTION):
            not_run(f"{FAULT_INJECTION} not declared")
        if variant == "bare" and not spec.secrets_required:
            not_run("the registry requires no secret")  # ERR_MISSING_SECRET: nothing to provoke
        environment = {"IMAGE_DIGEST": adapter.digest_for(spec)}
        if variant == "canary":
            environment.update({name: CANARY for name in spec.secrets_declared}, CI="true")
        elif variant == "fault":
            environment.update(
                CI="true", THEORY_FAULT_INJECTION="1", THEORY_TIMEOUT_S=FAULT_TIMEOUT_S
            )
        return adapter.acquire(spec, environment=environment, world_root=world)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self._background is not None:
            # Boots under way finish first, so no container starts after its adapter closed.
            self._background.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            adapters, self._adapters = list(self._adapters.values()), {}
            boots, self._boots = dict(self._boots), {}
        for future in boots.values():
            if not future.done():  # queued and cancelled: whoever waits must not wait forever
                future.set_exception(
                    RuntimeError("the session closed before this processor booted")
                )
        for adapter in adapters:
            adapter.close(keep=self.options.keep)  # kept: for debugging, reaped by the next run
        if self.options.keep:
            self.kept = [
                (target, variant, future.result().base_url)
                for (target, variant), future in sorted(boots.items())
                if target.adapter == "local" and future.exception() is None
            ]
