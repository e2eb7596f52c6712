"""pytest-theory's hooks (the ``pytest11`` entry point).

``pytest --theory-ref llm/litellm@1`` collects the built-in contract suite
(``pytest_theory/suite/test_contract.py``) for that processor. Given on the
command line with no test paths, only the suite runs; with test paths, or with
``theory_refs`` in the ini file, the suite runs beside your tests.
"""

from __future__ import annotations

import json
import signal
import threading
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.contracts.modes import is_ci
from pytest_theory.driver import DRIVERS
from pytest_theory.options import TheoryOptions, add_options
from pytest_theory.rules import RULES, rule_of
from pytest_theory.session import NOT_RUN, BootFailed, Target, TheorySession

pytest_plugins = ["pytest_theory.fixtures"]

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
    config.addinivalue_line(
        "markers",
        "theory_variants(*names): the variants (canary, bare, fault) a test asks "
        "theory_variant for; they boot in the background beside the default processor",
    )
    options = TheoryOptions.from_config(config)
    if options.mode == "real" and is_ci():
        raise pytest.UsageError("ERR_CI_SAFETY: --theory-mode real is refused when CI=true")
    config.pluginmanager.register(RuleSummary(), "theory-rule-summary")
    config.pluginmanager.register(VariantPlanner(), "theory-variant-planner")
    if options.refs:
        # Unknown refs and broken registry files are a usage error now, not at collection.
        TheorySession.of(config).refs()
        suite = str(SUITE)
        if (
            options.refs_from_command_line
            and config.args_source is not pytest.Config.ArgsSource.ARGS
        ):
            config.args = [suite]  # `pytest --theory-ref X` alone: just the contract suite
        elif suite not in config.args:
            config.args.append(suite)
    _stop_on_sigterm()


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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "theory_target" not in metafunc.fixturenames:
        return
    session = TheorySession.of(metafunc.config)
    marker = metafunc.definition.get_closest_marker("theory")
    refs = _as_tuple(marker.kwargs.get("ref")) if marker else ()
    adapters = _as_tuple(marker.kwargs.get("adapter")) if marker else ()
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
    """Group each processor's checks for ``--dist loadgroup``: one worker, one set of containers."""
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
            marker = item.get_closest_marker("theory_variants")
            if target is not None and marker:
                wanted[target].update(marker.args)
        TheorySession.of(config).variants_wanted = dict(wanted)
        if wanted:
            items.sort(key=lambda item: item.get_closest_marker("theory_variants") is not None)


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
        report.sections.append(("theory rule", f"{rule}: {RULES[rule]}"))
    for driver in item.stash.get(DRIVERS, []):
        if driver.last_payload is not None:
            payload = driver.last_payload
            text = payload if isinstance(payload, str) else json.dumps(payload, indent=2)[:4000]
            report.sections.append(("theory payload (last sent)", text))
        try:
            tail = [line for line in driver.handle.stderr().split("\n") if line][-LOG_TAIL_LINES:]
        except Exception:  # the processor is gone: nothing to show
            tail = []
        if tail:
            report.sections.append(
                (f"processor stderr (last {LOG_TAIL_LINES} lines)", "\n".join(tail))
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
        target = str(target)
        if "theory_boot" in properties:
            self.boot[target] = str(properties["theory_boot"])
        elif "theory_not_run" in properties:
            self.not_run[target].append(str(properties["theory_not_run"]))
        elif report.when == "call" or report.failed:
            outcome = "failed" if report.failed else report.outcome
            self.results[target][str(rule)].append((outcome, str(properties["theory_check"])))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.results or self.not_run or self.boot:
            terminalreporter.write_sep("=", "pytest-theory: contract rules per processor")
            for line in summarize(self.results, self.not_run, self.boot):
                terminalreporter.write_line(line)


#: (outcome, check name) of one check.
Outcome = tuple[str, str]


def summarize(
    results: dict[str, dict[str, list[Outcome]]],
    not_run: dict[str, list[str]] | None = None,
    boot: dict[str, str] | None = None,
) -> list[str]:
    """One line per processor: rules passed and failed (a rule fails when any of its checks
    does, named with its failing checks), the checks not run and why, a boot failure."""
    not_run, boot = not_run or {}, boot or {}
    lines = []
    for target in sorted({*results, *not_run, *boot}):
        by_rule = results.get(target, {})
        failed = {
            rule: sorted({check for outcome, check in outcomes if outcome == "failed"})
            for rule, outcomes in by_rule.items()
            if any(outcome == "failed" for outcome, _ in outcomes)
        }
        passed = [r for r, outcomes in by_rule.items() if r not in failed and outcomes]
        checks = sum(len(outcomes) for outcomes in by_rule.values())
        ran = len(passed) + len(failed)
        line = f"{target}: {len(passed)}/{ran} rules passed ({checks} checks)"
        skipped = not_run.get(target, [])
        if skipped:
            reasons = ", ".join(
                f"{reason} ({skipped.count(reason)})" for reason in sorted(set(skipped))
            )
            line += f", {len(skipped)} checks not run: {reasons}"
        if failed:
            line += "; failed: " + ", ".join(
                f"{rule} ({' '.join(checks)})" for rule, checks in sorted(failed.items())
            )
        if target in boot:
            line += f"; boot failed: {boot[target]}"
        lines.append(line)
    return lines
