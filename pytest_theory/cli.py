"""``theory``: the processor author's command (``theory-images`` is the same command).

theory new   ns/name@1 [DIR]       scaffold a processor (and, in a new repository, an ini file
                                   with theory_registry, a test, a CI workflow, a .gitignore)
theory list  [--as-options]        the refs of your processors
theory lock  [REF ...|--all]       resolve requirements.in into requirements.lock (pins kept)
theory build [REF ...|--all]       build images (a lookup when nothing changed)
theory push  [REF ...|--all]       build, then push to the image registry (registry.yaml unchanged)
theory pin   [REF ...|--all]       build, push, record the pushed digests in registry.yaml
theory check [REF ...|--all]       exit 1 when a lock or a pin is stale, a pin does not resolve,
                                   or is not what this source pushed (--offline: the source only)
theory prune [REF ...|--all]       remove image tags of older sources (not the current or pinned)
theory base                        make the local base image (debootstrap, cached)
theory report merge DIR... --out D merge the --theory-report cells of many jobs into one matrix;
                                   exit 1 on a failed cell (same as ``theory-report``)

Your processors are the folders under your registry roots: ``--registry PATH``, or
``theory_registry`` in your pytest ini file (pytest.ini, pyproject.toml, tox.ini, setup.cfg),
found from the current folder up. Without either, a checkout of pytest-theory acts on its own
processors/. Nothing is ever written into installed files.

Pins go to --repository, else $THEORY_IMAGE_REPOSITORY, else the ini setting
theory_image_repository, else the loopback registry localhost:5055/pytest-theory
(scripts/registry start). A GHCR-style prefix gives ghcr.io/owner/repo/<ns>-<name>.
"""

from __future__ import annotations

import argparse
import configparser
import os
import re
import shlex
import site
import sys
import sysconfig
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMMANDS = ("new", "list", "base", "lock", "build", "push", "pin", "check", "prune")
#: pytest's config files, in the order pytest looks for them in each folder.
INI_FILES = (
    "pytest.toml",
    ".pytest.toml",
    "pytest.ini",
    ".pytest.ini",
    "pyproject.toml",
    "tox.ini",
    "setup.cfg",
)
NO_ROOT = (
    "no registry root: set `theory_registry = processors` in your pytest ini file "
    "(pytest.ini, pyproject.toml, ...) or pass --registry PATH"
)


class CliError(Exception):
    """A usage problem: printed as one line, exit status 2."""


# -- the user's registry roots ---------------------------------------------------------------


@dataclass(frozen=True)
class IniFile:
    path: Path
    #: theory_registry, resolved against the file's folder; None when the file does not set it.
    roots: list[Path] | None


def _ini_section(path: Path) -> dict[str, Any] | None:
    """The pytest settings in ``path``, or None when it is not a pytest config file."""
    if path.suffix == ".toml":
        data = tomllib.loads(path.read_text("utf-8"))
        if path.name == "pyproject.toml":
            tool = data.get("tool", {}).get("pytest", {})
            section = tool.get("ini_options", tool if tool else None)
            return dict(section) if section is not None else None
        return dict(data.get("pytest", {}))
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    name = "tool:pytest" if path.name == "setup.cfg" else "pytest"
    if parser.has_section(name):
        return dict(parser[name])
    return {} if path.name in ("pytest.ini", ".pytest.ini") else None


def find_ini(start: Path) -> IniFile | None:
    """pytest's config file for ``start`` (the first one found from there up), as pytest finds it."""
    for folder in [start.resolve(), *start.resolve().parents]:
        for name in INI_FILES:
            path = folder / name
            if not path.is_file():
                continue
            section = _ini_section(path)
            if section is None:
                continue
            value = section.get("theory_registry")
            if value is None:
                return IniFile(path, None)
            items = value if isinstance(value, list) else shlex.split(str(value))
            return IniFile(path, [(folder / item).resolve() for item in items])
    return None


def installed_prefixes() -> list[Path]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    paths.update(site.getsitepackages())
    if site.ENABLE_USER_SITE and site.USER_SITE:
        paths.add(site.USER_SITE)
    return [Path(p).resolve() for p in paths]


def is_installed(path: Path) -> bool:
    """Whether ``path`` lies in an installed package (site-packages), which we never write."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(prefix) for prefix in installed_prefixes())


@dataclass(frozen=True)
class Roots:
    paths: list[Path]
    from_ini: bool  # messages then need no --registry


def user_roots(explicit: Sequence[str], start: Path) -> Roots:
    from pytest_theory.registry import builtin_root

    if explicit:
        return Roots([Path(p).resolve() for p in explicit], False)
    ini = find_ini(start)
    if ini is not None and ini.roots:
        return Roots(ini.roots, True)
    if not is_installed(builtin_root()):
        return Roots([builtin_root()], True)  # a checkout of pytest-theory: its own processors
    raise CliError(NO_ROOT)


def refuse_installed(path: Path, command: str) -> None:
    if is_installed(path):
        raise CliError(
            f"{path} is an installed file of pytest-theory: `theory {command}` writes only into "
            "your own registry roots (theory_registry in your ini file, or --registry PATH)"
        )


# -- commands ------------------------------------------------------------------------------


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("refs", nargs="*", help="processor refs (default: all of yours)")
    parser.add_argument("--all", action="store_true", help="every processor of your roots")
    parser.add_argument("--registry", action="append", default=[], help="registry root")
    parser.add_argument(
        "--force",
        action="store_true",
        help="build: from nothing, even when the tag exists, without the layer cache",
    )
    parser.add_argument(
        "--repository",
        default=None,
        metavar="PREFIX",
        help="push, pin: to PREFIX/<ns>-<name> (e.g. ghcr.io/owner/repo)",
    )
    parser.add_argument(
        "--offline", action="store_true", help="check: the source only, without the registry"
    )
    parser.add_argument("--dry-run", action="store_true", help="prune: say what, remove nothing")
    parser.add_argument(
        "--as-options", action="store_true", help="list: as --theory-ref options for pytest"
    )
    return parser


def _specs(args: argparse.Namespace, roots: Roots) -> list[Any]:
    from pytest_theory.registry import Registry

    if args.all or not args.refs:
        mine = Registry.discover(roots.paths, builtin=False)
        return [mine[ref] for ref in mine]
    everything = Registry.discover(roots.paths)
    return [everything.get_spec(ref) for ref in args.refs]


def _registry_hint(spec: Any, roots: Roots) -> Path | None:
    """The ``--registry`` a message's command needs: none when the ini file names the root."""
    return None if roots.from_ini else spec.directory.parent


def cmd_new(args: argparse.Namespace) -> int:
    from pytest_theory import scaffold
    from pytest_theory.registry import parse_ref

    if not args.refs or len(args.refs) > 2:
        raise CliError("usage: theory new ns/name@1 [DIR]")
    ref = parse_ref(args.refs[0])
    directory = Path(args.refs[1] if len(args.refs) == 2 else ".").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    ini = find_ini(directory)
    if args.registry:
        root = Path(args.registry[0]).resolve()
    elif ini is not None and ini.roots:
        root = ini.roots[0]
    else:
        root = directory / "processors"
    refuse_installed(root, "new")
    folder = scaffold.new_processor(ref, root)
    print(f"created {folder}")
    written = scaffold.new_repository_files(ref, directory, root, with_ini=ini is None)
    for path in written.created:
        print(f"created {path}")
    for path in written.kept:
        print(f"kept    {path} (already there)")
    if ini is not None and ini.roots is None and not args.registry:
        relative = os.path.relpath(root, ini.path.parent)
        print(f"add to {ini.path}: theory_registry = {relative}")
    print(f"next: pytest --theory-ref {ref}")
    return 0


def cmd_list(args: argparse.Namespace, roots: Roots) -> int:
    for spec in _specs(args, roots):
        print(f"--theory-ref {spec.ref}" if args.as_options else spec.ref)
    return 0


def cmd_lock(args: argparse.Namespace, roots: Roots) -> int:
    from pytest_theory.images import locks
    from pytest_theory.images.context import runtime_lock
    from pytest_theory.registry import builtin_root

    folders: list[tuple[str, Path]] = []
    if (args.all or not args.refs) and builtin_root() in roots.paths:
        folders.append(("processors/runtime", runtime_lock().parent))  # this checkout's own
    folders += [(str(spec.ref), spec.build_context) for spec in _specs(args, roots)]
    for label, folder in folders:
        requirements_in = folder / locks.IN_NAME
        if not requirements_in.exists():
            print(f"{label}: no requirements.in")
            continue
        refuse_installed(requirements_in, "lock")
        done = locks.relock(requirements_in)
        notes = [f"{len(done.pins)} packages"]
        notes += [f"moved {m}" for m in done.moved]
        notes += [f"added {a}" for a in done.added] + [f"removed {r}" for r in done.removed]
        print(f"{label}: " + "; ".join(notes))
    return 0


def cmd_check(args: argparse.Namespace, roots: Roots) -> int:
    import docker

    from pytest_theory.images import locks, pins

    client = None if args.offline else docker.from_env()
    failed = 0
    for spec in _specs(args, roots):
        lock = locks.stale_reason(spec.build_context)
        status = pins.pin_status(spec) if client is None else pins.verify_pin(spec, client)
        failed += bool(lock) or not status.current
        print(f"{spec.ref}: {status.reason}" + (f" [{status.code}]" if status.code else ""))
        if lock:
            hint = _registry_hint(spec, roots)
            print(f"{spec.ref}: {lock}; run `{locks.lock_command(str(spec.ref), hint)}`")
    return 1 if failed else 0


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_build(args: argparse.Namespace, roots: Roots) -> int:
    import docker

    from pytest_theory.images import build, locks, pins

    specs = _specs(args, roots)
    # Every stale lock is told before anything is built, each with its command.
    stale = [
        f"{spec.ref}: {reason}; run "
        f"`{locks.lock_command(str(spec.ref), _registry_hint(spec, roots))}`"
        for spec in specs
        if (reason := locks.stale_reason(spec.build_context))
    ]
    if stale:
        raise CliError("\n".join(stale))
    if args.command == "pin":
        for spec in specs:
            refuse_installed(spec.path, "pin")
    client = docker.from_env()
    build.PROGRESS.append(_progress)
    try:
        for spec in specs:
            started = time.monotonic()
            if args.command == "pin":
                done = pins.pin_processor(spec, client, prefix=args.repository, force=args.force)
                note = "built" if done.image.built else "unchanged"
                print(f"{spec.ref}: {done.pin} ({note}, pinned, {time.monotonic() - started:.1f}s)")
                continue
            image = build.build_image(spec, client, force=args.force)
            note = "built" if image.built else "unchanged"
            reference = f"{image.reference} {image.digest}"
            if args.command == "push":
                reference = pins.push_image(spec, image, client, prefix=args.repository)
                note += ", pushed"
            print(f"{spec.ref}: {reference} ({note}, {time.monotonic() - started:.1f}s)")
            if image.base:
                print(f"  {image.base}")
    finally:
        build.PROGRESS.remove(_progress)
    return 0


def _is_pinned(image: Any, pinned: set[str]) -> bool:
    """An image a pin names: by its id (a local pin) or by a registry digest it carries."""
    from pytest_theory.contracts.digests import normalize_digest

    repo_digests = [d.rpartition("@")[2] for d in image.attrs.get("RepoDigests") or []]
    return any(normalize_digest(d) in pinned for d in [image.id, *repo_digests])


def cmd_prune(args: argparse.Namespace, roots: Roots) -> int:
    import docker
    from docker.errors import APIError

    from pytest_theory.contracts.digests import normalize_digest
    from pytest_theory.images.build import content_tag, repository

    client = docker.from_env()
    for spec in _specs(args, roots):
        current = content_tag(spec)
        pinned = {normalize_digest(pin) for pin in spec.pins.values()}

        pattern = re.compile(rf"^{re.escape(repository(spec))}:v{spec.ref.version}-[0-9a-f]{{16}}$")
        removed, kept = 0, 0
        for image in client.images.list(name=repository(spec)):
            for tag in image.tags:
                if not pattern.match(tag) or tag == current or _is_pinned(image, pinned):
                    continue
                if args.dry_run:
                    print(f"{spec.ref}: would remove {tag}")
                    removed += 1
                    continue
                try:
                    client.images.remove(tag)
                    print(f"{spec.ref}: removed {tag}")
                    removed += 1
                except APIError as exc:  # a container still uses it
                    print(f"{spec.ref}: kept {tag} ({exc.explanation})")
                    kept += 1
        print(f"{spec.ref}: {removed} old tag(s) {'to remove' if args.dry_run else 'removed'}")
    return 0


def cmd_base(args: argparse.Namespace) -> int:
    from pytest_theory.images import base

    started = time.monotonic()
    tag = base.ensure_base_image()
    print(f"{tag}  ({time.monotonic() - started:.1f}s)\n  {base.describe(tag)}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "theory") -> int:
    import docker

    from pytest_theory.registry import RegistryError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:  # the report commands keep their own parser
        from pytest_theory.report.cli import main as report_main

        return report_main(argv[1:])
    args = _parser(prog).parse_intermixed_args(argv)
    try:
        if args.command == "new":
            return cmd_new(args)
        if args.command == "base":
            return cmd_base(args)
        roots = user_roots(args.registry, Path.cwd())
        handler = {
            "list": cmd_list,
            "lock": cmd_lock,
            "build": cmd_build,
            "push": cmd_build,
            "pin": cmd_build,
            "check": cmd_check,
            "prune": cmd_prune,
        }[args.command]
        return handler(args, roots)
    except RegistryError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, ValueError, docker.errors.DockerException) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


def images_main(argv: Sequence[str] | None = None) -> int:
    """``theory-images``: the same command by its old name (it lives here, not in images/,
    because images may not import the plugin's side)."""
    return main(argv, prog="theory-images")


if __name__ == "__main__":
    sys.exit(main())
