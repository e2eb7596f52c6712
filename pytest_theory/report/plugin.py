"""``--theory-report DIR`` and ``--theory-reuse``: the hooks that write a run's evidence.

Loaded beside the main plugin (``pytest_plugins`` in ``pytest_theory.plugin``);
it does nothing unless a report folder is given. Outcomes are read off the test
reports' ``user_properties`` (``theory_target``, ``theory_rule``), so they
count under xdist too: workers run the checks, the controller writes the files.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_theory.options import TheoryOptions
from pytest_theory.report import attest, matrix
from pytest_theory.report.cells import (
    CellChecks,
    CellError,
    CellKey,
    Check,
    cell_path,
    make_cell,
    read_cell,
    reusable,
    reused,
    write_cell,
)
from pytest_theory.report.sources import (
    harness,
    image_name,
    known_digest,
    registry_yaml,
    source_hash,
    spec_md,
)
from pytest_theory.rules import RULES
from pytest_theory.session import Target, TheorySession

DIGEST_PROPERTY = "theory_image_digest"


def pytest_configure(config: pytest.Config) -> None:
    options = TheoryOptions.from_config(config)
    if options.report is not None:
        config.pluginmanager.register(ReportPlugin(config, options), "theory-report")


def check_id(nodeid: str, target: str) -> str:
    """``test_contract.py::test_x[param]``: the node id without the folder or the target's id,
    so the same check has the same id for every processor and adapter."""
    parts = nodeid.split("::")
    parts[0] = Path(parts[0]).name
    name, _, params = parts[-1].partition("[")
    params = params.removesuffix("]")
    if params == target:
        params = ""
    elif params.startswith(target + "-"):
        params = params[len(target) + 1 :]
    elif params.endswith("-" + target):
        params = params[: -len(target) - 1]
    else:
        params = params.replace(f"-{target}-", "-")
    parts[-1] = f"{name}[{params}]" if params else name
    return "::".join(parts)


def _outcome(report: pytest.TestReport) -> Check | None:
    """The check's outcome in this phase, or None when a passing setup/teardown says nothing."""
    if report.when != "call" and report.passed:
        return None
    if report.skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        return Check("", "", "not-run", reason.removeprefix("Skipped: "))
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(report.longrepr)
        where = "" if report.when == "call" else f"in {report.when}: "
        return Check("", "", "failed", where + message)
    return Check("", "", "passed")


def _target_of(item: pytest.Item) -> Target | None:
    callspec = getattr(item, "callspec", None)
    target = callspec.params.get("theory_target") if callspec else None
    return target if isinstance(target, Target) else None


def _parse_target(text: str) -> Target:
    ref, _, adapter = text.rpartition("-")
    return Target(ref, adapter)


class ReportPlugin:
    def __init__(self, config: pytest.Config, options: TheoryOptions):
        assert options.report is not None
        self.config = config
        self.options = options
        self.report_dir: Path = options.report
        self.checks: dict[str, CellChecks] = {}
        self.digests: dict[str, str] = {}
        self._digest_noted: set[Target] = set()
        #: target -> (stored cell, its path), for cells not run because reused.
        self.reused: dict[Target, tuple[dict[str, Any], Path]] = {}
        self.written: list[Path] = []
        self._inputs: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def session(self) -> TheorySession:
        return TheorySession.of(self.config)

    # -- what a verdict depends on ---------------------------------------------------------

    def _unrun_cell(self, target: Target) -> dict[str, Any]:
        """The cell ``target`` would be, before running it: its key, image and inputs."""
        key = (target.ref, target.adapter)
        if key not in self._inputs:
            spec = self.session.spec(target)
            source = source_hash(spec)
            self._inputs[key] = {
                "image": {
                    "name": image_name(spec, self.options.build, source),
                    "digest": known_digest(spec, target.adapter, self.options.build),
                },
                "source_hash": source,
                "harness": harness(),
                "spec_md": spec_md(),
                "registry_yaml": registry_yaml(spec),
                "options": {
                    "build": self.options.build,
                    "fuzz_examples": self.options.fuzz_examples,
                    "property_examples": self.options.property_examples,
                },
            }
        return self._inputs[key]

    def _stored_match(
        self, target: Target, wanted: set[str] | None
    ) -> tuple[dict[str, Any], Path] | None:
        """A stored cell that may stand for ``target``'s run, holding every check in ``wanted``."""
        path = cell_path(self.report_dir, CellKey(target.ref, target.adapter, self.options.mode))
        if not path.is_file():
            return None
        try:
            stored = read_cell(path)
        except CellError:
            return None
        if not reusable(stored, self._unrun_cell(target)):
            return None
        if wanted is not None and not wanted <= {c["id"] for c in stored["checks"]}:
            return None  # the stored run ran fewer checks (-k, a newer suite): run it
        return stored, path

    # -- hooks -------------------------------------------------------------------------------

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """With --theory-reuse, deselect every check of a cell a stored report stands for:
        nothing of it runs, so no image is built and no container starts."""
        if not self.options.reuse:
            return
        wanted: dict[Target, set[str]] = {}
        for item in items:
            target = _target_of(item)
            if target is not None and item.get_closest_marker("theory_rule"):
                wanted.setdefault(target, set()).add(check_id(item.nodeid, str(target)))
        for target, ids in wanted.items():
            found = self._stored_match(target, ids)
            if found is not None:
                self.reused[target] = found
        if self.reused:
            keep = [i for i in items if _target_of(i) not in self.reused]
            config.hook.pytest_deselected(items=[i for i in items if _target_of(i) in self.reused])
            items[:] = keep

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, Any]:
        report: pytest.TestReport = yield
        target = _target_of(item)
        handle = getattr(item, "funcargs", {}).get("theory_processor")
        if target is not None and handle is not None and target not in self._digest_noted:
            self._digest_noted.add(target)  # once per target and process is enough
            report.user_properties.append((DIGEST_PROPERTY, handle.image_digest))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        target, rule = properties.get("theory_target"), properties.get("theory_rule")
        if properties.get(DIGEST_PROPERTY) and target:
            self.digests[str(target)] = str(properties[DIGEST_PROPERTY])
        if not (target and rule):
            return
        check = _outcome(report)
        if check is not None:
            check.id, check.rule = check_id(report.nodeid, str(target)), str(rule)
            self.checks.setdefault(str(target), CellChecks()).add(check)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return  # the controller writes the report
        cells = [self._fresh_cell(_parse_target(t), found) for t, found in self.checks.items()]
        if self.options.reuse and self.config.pluginmanager.has_plugin("dsession"):
            # Under xdist this process did not collect: find the reused cells again.
            for target in self.session.targets():
                if str(target) not in self.checks and target not in self.reused:
                    match = self._stored_match(target, None)
                    if match is not None:
                        self.reused[target] = match
        cells += [reused(stored, path) for stored, path in self.reused.values()]
        for cell in cells:
            path = write_cell(self.report_dir, cell)
            self.written.append(path)
            if cell["image"]["digest"]:
                attest.write(self.report_dir, CellKey.of(cell).slug, cell)
        if cells:
            matrix.write(self.report_dir, cells)
        if self.reused and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK  # every cell was reused: nothing to run

    def _fresh_cell(self, target: Target, found: CellChecks) -> dict[str, Any]:
        inputs = dict(self._unrun_cell(target))
        image = dict(inputs.pop("image"))
        observed = self.digests.get(str(target))
        if observed:
            image["digest"] = observed
        return make_cell(
            CellKey(target.ref, target.adapter, self.options.mode),
            checks=found.checks.values(),
            rules=RULES,
            image=image,
            inputs=inputs,
            pytest_version=pytest.__version__,
        )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):
            return
        write = terminalreporter.write_line
        for target, (stored, path) in sorted(self.reused.items()):
            origin = stored["reused_from"] or {
                "report": str(path),
                "finished": stored["run"]["finished"],
            }
            write(
                f"pytest-theory: {target} reused ({stored['result']}) from {origin['report']} "
                f"of {origin['finished']}: not run"
            )
        if self.written:
            write(
                f"pytest-theory: report of {len(self.written)} cell(s) in {self.report_dir} "
                f"(matrix.md, cells/, attestations/)"
            )
