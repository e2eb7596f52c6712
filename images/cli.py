"""``theory-images``: make the base image, lock, build, pin and check processor images.

theory-images base                   make the local base image (debootstrap, cached)
theory-images lock  [REF ...|--all]  resolve requirements.in into requirements.lock
theory-images build [REF ...|--all]  build images (a lookup when nothing changed)
theory-images push  [REF ...|--all]  build, then push to the registry (registry.yaml unchanged)
theory-images pin   [REF ...|--all]  build, push, record the pushed digests in registry.yaml
theory-images check [REF ...|--all]  exit 1 when a pin is stale, does not resolve, or is not
                                     what this source pushed (--offline: the source only)

Pins go to --repository, else $THEORY_IMAGE_REPOSITORY, else the ini setting
theory_image_repository, else the loopback registry localhost:5055/pytest-theory
(scripts/registry start). A GHCR-style prefix gives ghcr.io/owner/repo/<ns>-<name>.
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


def check(spec: ProcessorSpec, client: docker.DockerClient | None) -> pins.PinStatus:
    """One processor's pin: offline (``client`` None) or through the registry too."""
    return pins.pin_status(spec) if client is None else pins.verify_pin(spec, client)


def describe(status: pins.PinStatus) -> str:
    return f"{status.ref}: {status.reason}" + (f" [{status.code}]" if status.code else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="theory-images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["base", "lock", "build", "push", "pin", "check"])
    parser.add_argument("refs", nargs="*", help="processor refs (default: all)")
    parser.add_argument("--all", action="store_true", help="every processor found")
    parser.add_argument("--registry", action="append", default=[], help="extra registry root")
    parser.add_argument(
        "--force",
        action="store_true",
        help="build from nothing: even when the tag exists, without the layer cache",
    )
    parser.add_argument(
        "--repository",
        default=None,
        metavar="PREFIX",
        help="push and pin to PREFIX/<ns>-<name> (e.g. ghcr.io/owner/repo)",
    )
    parser.add_argument(
        "--offline", action="store_true", help="check: the source only, without the registry"
    )
    args = parser.parse_intermixed_args(argv)
    try:
        if args.command == "base":
            started = time.monotonic()
            print(f"{base.ensure_base_image()}  ({time.monotonic() - started:.1f}s)")
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
                status = check(spec, None if args.offline else docker.from_env())
                failed += not status.current
                print(describe(status))
            elif args.command == "pin":
                done = pins.pin_processor(
                    spec, docker.from_env(), prefix=args.repository, force=args.force
                )
                note = "built" if done.image.built else "unchanged"
                print(f"{spec.ref}: {done.pin} ({note}, pinned, {time.monotonic() - started:.1f}s)")
            else:
                client = docker.from_env()
                image = build_image(spec, client, force=args.force)
                note = "built" if image.built else "unchanged"
                reference = f"{image.reference} {image.digest}"
                if args.command == "push":
                    reference = pins.push_image(spec, image, client, prefix=args.repository)
                    note += ", pushed"
                print(f"{spec.ref}: {reference} ({note}, {time.monotonic() - started:.1f}s)")
        return 1 if failed else 0
    except (RegistryError, RuntimeError, ValueError, docker.errors.DockerException) as exc:
        print(f"theory-images: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
