"""Command-line options and their ini settings (every option can live in pytest.ini/pyproject.toml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ADAPTERS = ("local", "inprocess", "modal")
MODES = ("mock", "real")
BUILD_MODES = ("auto", "always", "never")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("theory", "pytest-theory: contract tests for processors")
    group.addoption(
        "--theory-ref",
        action="append",
        default=[],
        metavar="REF",
        help="processor ref to check (ns/name@version); repeatable; 'all' for every one",
    )
    group.addoption(
        "--theory-adapter",
        action="append",
        default=[],
        choices=ADAPTERS,
        help="adapter(s) to drive the processor through (default: local)",
    )
    group.addoption(
        "--theory-mode",
        choices=MODES,
        default=None,
        help="mode for success runs (default: mock); real is refused under CI=true",
    )
    group.addoption(
        "--theory-registry",
        action="append",
        default=[],
        metavar="PATH",
        help="extra registry root (a folder of <ns>_<name>/registry.yaml); repeatable",
    )
    group.addoption(
        "--theory-build",
        choices=BUILD_MODES,
        default=None,
        help="auto: build images once per content hash (default); always; never: pins only",
    )
    group.addoption(
        "--theory-no-build",
        dest="theory_build",
        action="store_const",
        const="never",
        help="same as --theory-build=never: run the registry's pinned images",
    )
    group.addoption(
        "--theory-keep",
        action="store_true",
        default=None,
        help="leave containers running after the session (for debugging; reaped next run)",
    )
    group.addoption(
        "--theory-fuzz-examples",
        type=int,
        default=None,
        metavar="N",
        help="schemathesis examples per endpoint (default: 50)",
    )
    group.addoption(
        "--theory-property-examples",
        type=int,
        default=None,
        metavar="N",
        help="hypothesis examples of generated inputs (default: 20)",
    )
    group.addoption(
        "--theory-world",
        default=None,
        metavar="PATH",
        help="folder for the artifact world (default: a temporary folder)",
    )
    parser.addini(
        "theory_refs",
        "processor refs to check (one per line, or 'all')",
        type="linelist",
        default=[],
    )
    parser.addini(
        "theory_adapter", "adapter(s) to use (local, inprocess, modal)", type="args", default=[]
    )
    parser.addini("theory_mode", "mode for success runs (mock or real)", default="mock")
    parser.addini("theory_registry", "extra registry roots", type="paths", default=[])
    parser.addini("theory_build", "auto, always or never", default="auto")
    parser.addini(
        "theory_image_repository",
        "where `theory-images pin` pushes, e.g. ghcr.io/owner/repo (read by theory-images)",
        default="",
    )
    parser.addini(
        "theory_keep", "leave containers running after the session", type="bool", default=False
    )
    parser.addini("theory_fuzz_examples", "schemathesis examples per endpoint", default="50")
    parser.addini(
        "theory_property_examples", "hypothesis examples of generated inputs", default="20"
    )


@dataclass(frozen=True)
class TheoryOptions:
    refs: tuple[str, ...]
    refs_from_command_line: bool
    adapters: tuple[str, ...]
    mode: str
    registry_roots: tuple[Path, ...]
    build: str
    keep: bool
    fuzz_examples: int
    property_examples: int
    world: Path | None

    @classmethod
    def from_config(cls, config: pytest.Config) -> TheoryOptions:
        def pick(option: str, ini: str) -> Any:
            value = config.getoption(option)
            return value if value not in (None, []) else config.getini(ini)

        cli_refs = tuple(config.getoption("theory_ref"))
        adapters: tuple[str, ...] = tuple(pick("theory_adapter", "theory_adapter")) or ("local",)
        for name in adapters:
            if name not in ADAPTERS:
                raise pytest.UsageError(
                    f"theory_adapter: {name!r} is not one of {', '.join(ADAPTERS)}"
                )
        mode = str(pick("theory_mode", "theory_mode"))
        if mode not in MODES:
            raise pytest.UsageError(f"theory_mode: {mode!r} is not mock or real")
        build = str(pick("theory_build", "theory_build"))
        if build not in BUILD_MODES:
            raise pytest.UsageError(
                f"theory_build: {build!r} is not one of {', '.join(BUILD_MODES)}"
            )
        roots = [Path(p) for p in config.getoption("theory_registry")] + list(
            config.getini("theory_registry")
        )
        world = config.getoption("theory_world")
        return cls(
            refs=cli_refs or tuple(config.getini("theory_refs")),
            refs_from_command_line=bool(cli_refs),
            adapters=adapters,
            mode=mode,
            registry_roots=tuple(roots),
            build=build,
            keep=bool(pick("theory_keep", "theory_keep")),
            fuzz_examples=int(pick("theory_fuzz_examples", "theory_fuzz_examples")),
            property_examples=int(pick("theory_property_examples", "theory_property_examples")),
            world=Path(world) if world else None,
        )
