"""Fixtures for processor tests, the built-in contract suite's and your own.

Every fixture below is parametrised over the processors of ``--theory-ref``
(or of ``@pytest.mark.theory(ref=..., adapter=...)`` on the test) and the
adapters of ``--theory-adapter``. Processors boot once per session and are
removed at its end, also after a failure or Ctrl-C.

``theory_processor``   the booted processor: ``.base_url``, ``.client``, ``.stderr()``, ``.image_digest``
``theory_run``         ``theory_run(**payload_overrides)`` -> ``Run`` of ``POST /run``
``theory_stream``      ``theory_stream(**payload_overrides)`` -> ``Run`` of ``POST /run-stream``
``theory_driver``      the ``Driver`` behind them (payloads, raw bodies, world snapshots)
``theory_canary``      a ``Driver`` on the canary variant: every declared secret a canary value, CI=true
``theory_bare``        a ``Driver`` on the bare variant: no secret, no CI (not run if none is required)
``theory_fault``       a ``Driver`` on the fault variant: SPEC §9's hook on (not run unless declared)
``theory_world``       the processor's world folder (``artifacts/`` is its ``/artifacts``)
``theory_schema``      the processor as a schemathesis schema, for ``schemathesis.pytest.from_fixture``
``theory_spec``, ``theory_ref``, ``theory_registry``, ``theory_adapter``, ``theory_target``
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.adapters.base import Adapter, ProcessorHandle
from pytest_theory.driver import DRIVERS, Driver, Run
from pytest_theory.registry import ProcessorSpec, Registry
from pytest_theory.session import VARIANT_FIXTURES, Target, TheorySession


@pytest.fixture(scope="session")
def theory_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TheorySession]:
    """The session's processors; every container it started is removed at teardown."""
    session = TheorySession.of(request.config)
    if session.base_dir is None:
        session.base_dir = tmp_path_factory.mktemp("theory")
    yield session
    session.close()


@pytest.fixture(scope="session")
def theory_target(request: pytest.FixtureRequest) -> Target:
    """The (ref, adapter) this test runs against (parametrised by the plugin)."""
    target: Target = request.param
    return target


@pytest.fixture(scope="session")
def theory_ref(theory_target: Target) -> str:
    """The processor ref this test runs against, ``ns/name@version``."""
    return theory_target.ref


@pytest.fixture(scope="session")
def theory_registry(theory_session: TheorySession) -> Registry:
    """Every processor found: the built-in ones and those of ``theory_registry``/``--theory-registry``."""
    return theory_session.registry


@pytest.fixture(scope="session")
def theory_spec(theory_session: TheorySession, theory_target: Target) -> ProcessorSpec:
    """The processor's ``registry.yaml``, loaded and validated (``.inputs``, ``.outputs``, ...)."""
    return theory_session.spec(theory_target)


@pytest.fixture(scope="session")
def theory_adapter(theory_session: TheorySession, theory_target: Target) -> Adapter:
    """The adapter (``local``, ``inprocess`` or ``modal``) this test reaches the processor through."""
    return theory_session.adapter(theory_target.adapter)


@pytest.fixture(scope="session")
def theory_world(theory_session: TheorySession, theory_target: Target) -> Path:
    """The processor's world folder: its ``artifacts/`` is what the processor sees as /artifacts."""
    return theory_session.world(theory_target)


def _boot(session: TheorySession, target: Target, variant: str) -> ProcessorHandle:
    # One error per target that does not boot; its other checks are reported not run.
    return session.boot(target, variant)


@pytest.fixture  # booted once by the session; function scope so a boot failure errors once
def theory_processor(theory_session: TheorySession, theory_target: Target) -> ProcessorHandle:
    """The booted processor (the session's default variant)."""
    return _boot(theory_session, theory_target, "default")


def _driver(
    request: pytest.FixtureRequest, session: TheorySession, target: Target, handle: ProcessorHandle
) -> Driver:
    world = session.world(target) if handle.world_root is not None else None
    driver = Driver(
        handle,
        session.spec(target),
        mode=session.options.mode,
        world=world,
        adapter=session.adapter(target.adapter),
        adapter_opts={"world_root": str(session.world(target)), "build": session.options.build},
    )
    request.node.stash.setdefault(DRIVERS, []).append(driver)
    return driver


@pytest.fixture
def theory_driver(
    request: pytest.FixtureRequest,
    theory_session: TheorySession,
    theory_target: Target,
    theory_processor: ProcessorHandle,
) -> Driver:
    """The ``Driver`` on the booted processor: payloads, raw bodies, runs, world snapshots."""
    return _driver(request, theory_session, theory_target, theory_processor)


def _variant(request: pytest.FixtureRequest, session: TheorySession, target: Target) -> Driver:
    assert request.fixturename is not None  # a fixture's own request always names it
    variant = VARIANT_FIXTURES[request.fixturename]
    return _driver(request, session, target, _boot(session, target, variant))


@pytest.fixture
def theory_canary(
    request: pytest.FixtureRequest, theory_session: TheorySession, theory_target: Target
) -> Driver:
    """A ``Driver`` on the canary processor: each declared secret set to a canary value, and
    CI=true (so ``mode: real`` must be refused, SPEC §1)."""
    return _variant(request, theory_session, theory_target)


@pytest.fixture
def theory_bare(
    request: pytest.FixtureRequest, theory_session: TheorySession, theory_target: Target
) -> Driver:
    """A ``Driver`` on the bare processor: no secret and no CI, for ERR_MISSING_SECRET.
    Not run for a processor whose registry requires no secret."""
    return _variant(request, theory_session, theory_target)


@pytest.fixture
def theory_fault(
    request: pytest.FixtureRequest, theory_session: TheorySession, theory_target: Target
) -> Driver:
    """A ``Driver`` on the fault processor: SPEC §9's fault injection on, a 0.5 s timeout and
    CI=true. Not run unless the registry declares ``capabilities: [fault-injection]``."""
    return _variant(request, theory_session, theory_target)


@pytest.fixture
def theory_run(theory_driver: Driver) -> Callable[..., Run]:
    """``theory_run(**overrides)``: POST /run with a valid payload (overridden), as a ``Run``."""
    return lambda **overrides: theory_driver.run(theory_driver.payload(**overrides))


@pytest.fixture
def theory_stream(theory_driver: Driver) -> Callable[..., Run]:
    """``theory_stream(**overrides)``: POST /run-stream with a valid payload, as a ``Run``."""
    return lambda **overrides: theory_driver.stream(theory_driver.payload(**overrides))


@pytest.fixture(scope="session")
def theory_schema(theory_session: TheorySession, theory_target: Target) -> Any:
    """The processor under test as a schemathesis schema, bound to its base URL::

        schema = schemathesis.pytest.from_fixture("theory_schema")

        @schema.parametrize()
        @pytest.mark.theory(ref="llm/litellm@1")
        def test_api(case):
            case.call_and_validate()

    The schema is the processor's own ``/openapi.json`` read with the schemathesis
    configuration shipped with pytest-theory (``pytest_theory/schemathesis.toml``): it
    changes schemathesis' defaults only where SPEC.md decides otherwise, each change
    citing SPEC.md, so every default check applies. The contract suite's fuzzing reads
    the same schema and configuration (``pytest_theory.fuzz.processor_schema``).

    The processor is the target's ``canary`` variant, started with ``CI=true``: a
    generated ``mode: real`` is refused with ERR_CI_SAFETY (SPEC §1), so fuzzing never
    reaches a provider. schemathesis calls it over HTTP: ``local`` (skipped for
    ``inprocess``, which has no URL, and ``modal``, whose processors the harness does
    not start).
    """
    if theory_target.adapter == "inprocess":
        pytest.skip("schemathesis calls the processor over HTTP: use the local adapter")
    handle = _boot(theory_session, theory_target, "canary")
    from pytest_theory.fuzz import processor_schema  # schemathesis is slow to import

    document = handle.client.get("/openapi.json", timeout=30).json()
    return processor_schema(document, base_url=handle.base_url)
