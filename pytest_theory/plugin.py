"""pytest-theory's hooks (the ``pytest11`` entry point).

``pytest --theory-ref llm/litellm@1`` collects the built-in contract suite
(``pytest_theory/suite/test_contract.py``) for that processor. Given on the
command line with no test paths, only the suite runs; with test paths, or with
``theory_refs`` in the ini file, the suite runs beside your tests.
"""

from __future__ import annotations

import json
import re
import signal
import tempfile
import threading
from collections import defaultdict
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_theory import ids
from pytest_theory.adapters import ADAPTERS
from pytest_theory.contracts.modes import is_ci
from pytest_theory.driver import DRIVERS, Driver
from pytest_theory.options import TheoryOptions, add_options
from pytest_theory.replay import lines_of, reproduction
from pytest_theory.rules import rule_of, rule_text
from pytest_theory.session import (
    NOT_RUN,
    SESSION,
    VARIANT_FIXTURES,
    BootFailed,
    Target,
    TheorySession,
)

pytest_plugins = ["pytest_theory.fixtures", "pytest_theory.report.plugin"]

#: Collected as a folder: a file outside the rootdir given as an argument gets an empty node id
#: path in pytest 9; its folder gives ``test_contract.py::...``.
SUITE = Path(__file__).resolve().parent / "suite"
LOG_TAIL_LINES = 20


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "theory(ref=None, adapter=None): run this test against these "
        "processors (refs and adapters, a string or a list)",
    )
    config.addinivalue_line("markers", "theory_rule(rule): the contract rule a check belongs to")
    options = TheoryOptions.from_config(config)
    if options.mode == "real" and is_ci():
        raise pytest.UsageError("ERR_CI_SAFETY: --theory-mode real is refused when CI=true")
    config.pluginmanager.register(ids, "theory-ids")
    ids.point_at_installed_suite(config)
    config.pluginmanager.register(RuleSummary(), "theory-rule-summary")
    config.pluginmanager.register(VariantPlanner(), "theory-variant-planner")
    if options.refs:
        # Unknown refs, broken registry files and processors an adapter cannot run are a
        # usage error now, once, not a failure of every check; so is a stale
        # requirements.lock, before any build.
        session = TheorySession.of(config)
        refusals = session.refusals()
        if refusals:
            raise pytest.UsageError("pytest-theory: " + "\n".join(refusals))
        check_locks(session, config)
        suite = str(SUITE)
        if (
            options.refs_from_command_line
            and config.args_source is not pytest.Config.ArgsSource.ARGS
        ):
            config.args = [suite]  # `pytest --theory-ref X` alone: just the contract suite
        elif not any(ids.names_suite(arg) for arg in config.args):
            config.args.append(suite)
    if not hasattr(config, "workerinput"):
        show_build_progress(config)
    _stop_on_sigterm()


def check_locks(session: TheorySession, config: pytest.Config) -> None:
    """Every stale lock of the processors asked for, as one usage error naming the fixes."""
    from pytest_theory.images.locks import StaleLock, check_lock

    ini_roots = {Path(p).resolve() for p in config.getini("theory_registry")}
    problems = []
    for ref in session.refs():
        spec = session.registry.get_spec(ref)
        root = spec.directory.parent.resolve()
        try:
            check_lock(spec.build_context, ref, None if root in ini_roots else root)
        except StaleLock as exc:
            problems.append(str(exc))
    if problems:
        raise pytest.UsageError("\n".join(problems))


def show_build_progress(config: pytest.Config) -> None:
    """Image builds say what they do, live: a first build takes a minute."""
    from pytest_theory.images import build

    def progress(line: str) -> None:
        capture = config.pluginmanager.getplugin("capturemanager")
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if capture is None or reporter is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"pytest-theory: {line}")

    build.PROGRESS.append(progress)
    config.add_cleanup(lambda: build.PROGRESS.remove(progress))


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so fixtures tear down and containers are removed."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt("SIGTERM")

        signal.signal(signal.SIGTERM, interrupt)


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def validate_theory(marker: pytest.Mark) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The refs and adapters of ``@pytest.mark.theory(ref=..., adapter=...)``.

    Its arguments go through a signature (pytest-django's ``validate_django_db``), so a
    positional or misspelt argument, or an unknown adapter, is an error, never ignored.
    """

    def theory(
        *, ref: str | Sequence[str] | None = None, adapter: str | Sequence[str] | None = None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return _as_tuple(ref), _as_tuple(adapter)

    try:
        refs, adapters = theory(*marker.args, **marker.kwargs)
    except TypeError as exc:  # say it in the marker's words, not the inner function's
        reason = str(exc).split("() ", 1)[-1]
        raise TypeError(f"@pytest.mark.theory(ref=..., adapter=...): {reason}") from None
    unknown = [name for name in adapters if name not in ADAPTERS]
    if unknown:
        raise ValueError(
            f"@pytest.mark.theory: unknown adapter {unknown[0]!r} (choose from {', '.join(ADAPTERS)})"
        )
    return refs, adapters


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "theory_target" not in metafunc.fixturenames:
        return
    session = TheorySession.of(metafunc.config)
    marker = metafunc.definition.get_closest_marker("theory")
    refs, adapters = validate_theory(marker) if marker else ((), ())
    targets = [
        Target(ref, adapter)
        for ref in (session.refs(refs) if refs else session.refs())
        for adapter in (adapters or session.options.adapters)
    ]
    if not targets:
        reason = "no processor to test: pass --theory-ref REF or mark the test @pytest.mark.theory(ref=...)"
        metafunc.parametrize(
            "theory_target",
            [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
            indirect=True,
            scope="session",
            ids=["no-processor"],
        )
        return
    metafunc.parametrize(
        "theory_target", targets, ids=[str(t) for t in targets], indirect=True, scope="session"
    )


def _target_of(item: pytest.Item) -> Target | None:
    """The processor a collected test runs against, if it is parametrised over one."""
    callspec = getattr(item, "callspec", None)
    target = callspec.params.get("theory_target") if callspec else None
    return target if isinstance(target, Target) else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group each processor's checks for ``--dist loadgroup``: one worker, one set of containers.

    Only when xdist is there: without it the mark is unknown (``--strict-markers``).
    """
    if not config.pluginmanager.has_plugin("xdist"):
        return
    for item in items:
        target = _target_of(item)
        if target is not None:
            item.add_marker(pytest.mark.xdist_group(target.slug))


class VariantPlanner:
    """Notes which variants the selected checks need, so they boot beside the default
    processor; and runs the checks that need them last.

    A plugin object of its own: pytest takes only ``pytest_*`` names from a module, and
    this must run after deselection (trylast) while the grouping above runs first.
    """

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        # xdist sets option.loadgroup in its workers; under any other --dist a worker
        # gets only some of a processor's checks, so it boots what they ask for.
        if hasattr(config, "workerinput") and not config.getoption("loadgroup", False):
            return
        wanted: dict[Target, set[str]] = defaultdict(set)
        for item in items:
            target = _target_of(item)
            if target is not None:
                wanted[target].update(variants_of(item))
        TheorySession.of(config).variants_wanted = {t: v for t, v in wanted.items() if v}
        if any(wanted.values()):
            items.sort(key=lambda item: bool(variants_of(item)))


def variants_of(item: pytest.Item) -> set[str]:
    """The variants a check asks for, through the variant fixtures it (transitively) uses."""
    names = getattr(item, "fixturenames", ())
    return {variant for name, variant in VARIANT_FIXTURES.items() if name in names}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    report = yield
    target = _target_of(item)
    if target is not None:
        rule = rule_of(item)
        report.user_properties.append(("theory_target", str(target)))
        report.user_properties.append(("theory_check", getattr(item, "originalname", item.name)))
        if rule:
            report.user_properties.append(("theory_rule", rule))
        if call.excinfo is not None and call.excinfo.errisinstance(BootFailed):
            report.user_properties.append(("theory_boot", str(call.excinfo.value).split("\n")[0]))
        elif report.skipped:
            report.user_properties.append(("theory_not_run", _skip_reason(report)))
        if report.failed:
            _add_failure_sections(item, report, rule)
    return report


def _skip_reason(report: pytest.TestReport) -> str:
    """Why a check did not run: its skip message, without pytest's and our prefixes."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ").removeprefix(NOT_RUN).strip()


def _add_failure_sections(item: pytest.Item, report: pytest.TestReport, rule: str | None) -> None:
    if rule:
        report.sections.append(("theory rule", rule_text(rule)))
    drivers: list[Driver] = item.stash.get(DRIVERS, [])
    for number, driver in enumerate(drivers, 1):
        folder = _replay_folder(item) / str(number)
        if driver.recorder.exchanges:
            text = reproduction(
                driver.recorder.exchanges, driver.handle.launch(), driver.world, folder
            )
            report.sections.append((f"theory replay (bodies in {folder})", text))
        if driver.invoked:
            report.sections.append(
                ("theory invoke (through the adapter)", json.dumps(driver.invoked, indent=2)[:4000])
            )
        try:
            stderr = driver.handle.stderr() or ""
        except Exception:  # the processor is gone: nothing to show
            stderr = ""
        mine = lines_of(stderr, driver.execution_ids())[-LOG_TAIL_LINES:]
        if mine:
            report.sections.append(
                (f"processor stderr of this check's runs (last {LOG_TAIL_LINES})", "\n".join(mine))
            )


def _replay_folder(item: pytest.Item) -> Path:
    """Where a failing check's request bodies are written: this session's own folder (beside
    its worlds), never one a concurrent run of the same check would overwrite."""
    session = item.config.stash.get(SESSION, None)
    if session is not None and session.base_dir is not None:
        base = session.base_dir / "replay"
    else:
        base = Path(tempfile.mkdtemp(prefix="theory-replay-"))
    return base / re.sub(r"[^A-Za-z0-9_.-]+", "-", item.nodeid)[-150:]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """``--theory-keep``: where each kept container answers, and schemathesis' CLI line for it."""
    session = config.stash.get(SESSION, None)
    if session is None or not session.kept:
        return
    from pytest_theory.fuzz import SCHEMATHESIS_CONFIG  # schemathesis is slow to import

    terminalreporter.write_sep("=", "pytest-theory: containers kept (--theory-keep)")
    for target, variant, url in session.kept:
        terminalreporter.write_line(f"{target} ({variant}): {url}")
        if variant == "canary":  # started with CI=true: a fuzzed `mode: real` is refused
            terminalreporter.write_line(
                f"  st --config-file {SCHEMATHESIS_CONFIG} run {url}/openapi.json"
            )


class RuleSummary:
    """Collects each check's outcome by processor and rule, and prints one line per processor.

    Reads ``user_properties``, so outcomes from xdist workers count too.
    """

    def __init__(self) -> None:
        self.results: dict[str, dict[str, list[Outcome]]] = defaultdict(lambda: defaultdict(list))
        self.not_run: dict[str, list[str]] = defaultdict(list)
        self.boot: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        target, rule = properties.get("theory_target"), properties.get("theory_rule")
        if not (target and rule):
            return
        target, check = str(target), str(properties["theory_check"])
        if "theory_boot" in properties:
            self.boot[target] = str(properties["theory_boot"])
            self.results[target][str(rule)].append((NOT_RUN_OUTCOME, check))
        elif "theory_not_run" in properties:
            self.not_run[target].append(str(properties["theory_not_run"]))
            # Kept under its rule too: a rule whose every check was not run is still named,
            # and a failed rule names the siblings that did not run beside its failing checks.
            self.results[target][str(rule)].append((NOT_RUN_OUTCOME, check))
        elif report.when == "call" or report.failed:
            outcome = "failed" if report.failed else report.outcome
            self.results[target][str(rule)].append((outcome, check))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.results or self.not_run or self.boot:
            terminalreporter.write_sep("=", "pytest-theory: contract rules per processor")
            for line in summarize(self.results, self.not_run, self.boot):
                terminalreporter.write_line(line)


#: (outcome, check name) of one check: "passed", "failed" or ``NOT_RUN_OUTCOME``.
Outcome = tuple[str, str]
NOT_RUN_OUTCOME = "not run"


def summarize(
    results: dict[str, dict[str, list[Outcome]]],
    not_run: dict[str, list[str]] | None = None,
    boot: dict[str, str] | None = None,
) -> list[str]:
    """One line per processor: rules passed out of every rule with a check; the checks not
    run and why; the rules none of whose checks ran; each failed rule with its failing
    checks and the checks of it that did not run; a boot failure.

    A rule fails when any of its checks fails, passes when none fails and one passed, and
    is not run when none of its checks ran: never absent from the count.
    """
    not_run, boot = not_run or {}, boot or {}
    lines = []
    for target in sorted({*results, *not_run, *boot}):
        by_rule = results.get(target, {})

        def named(outcomes: list[Outcome], wanted: str) -> list[str]:
            return sorted({check for outcome, check in outcomes if outcome == wanted})

        failed = {rule: outcomes for rule, outcomes in by_rule.items() if named(outcomes, "failed")}
        passed = [r for r, o in by_rule.items() if r not in failed and named(o, "passed")]
        rules_not_run = sorted(set(by_rule) - set(failed) - set(passed))
        checks = sum(o != NOT_RUN_OUTCOME for outcomes in by_rule.values() for o, _ in outcomes)
        line = f"{target}: {len(passed)}/{len(by_rule)} rules passed ({checks} checks)"
        skipped = not_run.get(target, [])
        if skipped:
            reasons = ", ".join(
                f"{reason} ({skipped.count(reason)})" for reason in sorted(set(skipped))
            )
            line += f", {len(skipped)} checks not run: {reasons}"
        if rules_not_run:
            line += "; rules not run: " + " ".join(rules_not_run)
        if failed:
            described = []
            for rule, outcomes in sorted(failed.items()):
                text = " ".join(named(outcomes, "failed"))
                siblings = named(outcomes, NOT_RUN_OUTCOME)
                if siblings:
                    text += " | not run: " + " ".join(siblings)
                described.append(f"{rule} ({text})")
            line += "; failed: " + ", ".join(described)
        if target in boot:
            line += f"; boot failed: {boot[target]}"
        lines.append(line)
    return lines
