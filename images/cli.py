"""``theory-images``: make the base image, lock, build, pin and check processor images.

theory-images base                   make the local base image (debootstrap, cached)
theory-images lock  [REF ...|--all]  resolve requirements.in into requirements.lock
theory-images build [REF ...|--all]  build images (a lookup when nothing changed)
theory-images pin   [REF ...|--all]  build, then record digests in registry.yaml
theory-images check [REF ...|--all]  exit 1 when a pin is stale
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import docker

from pytest_theory.images import base, pins, wheels
from pytest_theory.images.build import build_image
from pytest_theory.images.context import runtime_lock
from pytest_theory.registry import ProcessorSpec, Registry, RegistryError


def _specs(args: argparse.Namespace) -> list[ProcessorSpec]:
    registry = Registry.discover(args.registry)
    if args.all or not args.refs:
        return [registry[ref] for ref in registry]
    return [registry.get_spec(ref) for ref in args.refs]


def _lock(requirements_in: Path) -> str:
    """Resolve ``requirements.in`` into the ``requirements.lock`` beside it."""
    if not requirements_in.exists():
        return "no requirements.in"
    locked = wheels.resolve_lock(requirements_in)
    wheels.write_lock(requirements_in.with_name("requirements.lock"), locked)
    return f"{len(locked)} packages"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="theory-images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["base", "lock", "build", "pin", "check"])
    parser.add_argument("refs", nargs="*", help="processor refs (default: all)")
    parser.add_argument("--all", action="store_true", help="every processor found")
    parser.add_argument("--registry", action="append", default=[], help="extra registry root")
    parser.add_argument(
        "--force",
        action="store_true",
        help="build from nothing: even when the tag exists, without the layer cache",
    )
    args = parser.parse_intermixed_args(argv)
    try:
        if args.command == "base":
            started = time.monotonic()
            tag = base.ensure_base_image()
            print(f"{tag}  ({time.monotonic() - started:.1f}s)\n  {base.describe(tag)}")
            return 0
        failed = 0
        if args.command == "lock" and (args.all or not args.refs):
            # The runtime's own lock: what a processor with no extra dependency installs.
            print(f"processors/runtime: {_lock(runtime_lock().with_name('requirements.in'))}")
        for spec in _specs(args):
            started = time.monotonic()
            if args.command == "lock":
                print(f"{spec.ref}: {_lock(spec.build_context / 'requirements.in')}")
            elif args.command == "check":
                status = pins.pin_status(spec)
                failed += not status.current
                print(f"{spec.ref}: {status.reason}")
            else:
                image = build_image(spec, docker.from_env(), force=args.force)
                note = "built" if image.built else "unchanged"
                if args.command == "pin":
                    pins.write_pin(spec, image)
                    note += ", pinned"
                print(
                    f"{spec.ref}: {image.reference} {image.digest} "
                    f"({note}, {time.monotonic() - started:.1f}s)"
                )
                if image.base:
                    print(f"  {image.base}")
        return 1 if failed else 0
    except (RegistryError, RuntimeError, docker.errors.DockerException) as exc:
        print(f"theory-images: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
