"""The base image processor Dockerfiles are built on: ``python:3.11-slim`` when the engine has
it or can pull it, else a local stand-in that serves a Dockerfile the way it does.

SPEC.md's Dockerfile says ``ARG BASE_IMAGE=python:3.11-slim``. Where that image
cannot be had (machines without a route to a registry), the stand-in is built
here: Debian ``minbase`` with Python 3.11 (debootstrap, ``docker import``), plus a
virtual environment on the PATH so ``python`` and ``pip`` answer and installs are
allowed (no PEP 668 marker), as in ``python:3.11-slim``. The root filesystem is
cached as a tarball keyed by the recipe, so an emptied Docker engine re-imports it
in seconds instead of running debootstrap again.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, BuildError, DockerException, ImageNotFound

from pytest_theory.contracts.hashing import canonical_json, cid_of_bytes
from pytest_theory.images.cache import cache_dir, exclusive

RECIPE: dict[str, Any] = {
    "suite": "bookworm",
    "variant": "minbase",
    "include": ["python3", "python3-venv", "ca-certificates"],
    "mirror": os.environ.get("THEORY_DEBIAN_MIRROR", "http://deb.debian.org/debian"),
    "recipe": 1,
}
REPOSITORY = "pytest-theory/base"
#: What SPEC.md's Dockerfile names, used wherever the engine has it or can pull it.
OFFICIAL = "python:3.11-slim"
#: Set to 0 to never try pulling OFFICIAL (the stand-in is used when it is not here).
PULL_ENV = "THEORY_BASE_PULL"
STANDIN_REPOSITORY = "pytest-theory/python"
#: On the debootstrap root: `python` and `pip` on the PATH (a venv, so no PEP 668
#: EXTERNALLY-MANAGED marker applies), like python:3.11-slim's /usr/local/bin.
STANDIN_DOCKERFILE = """\
FROM {root}
RUN python3 -m venv /opt/python \\
 && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \\
 && /opt/python/bin/python -c "import sys; assert sys.version_info[:2] == (3, 11), sys.version"
ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LANG=C.UTF-8
"""
_pull_failed: dict[str, str] = {}
#: Trimmed from the root filesystem: caches and docs no processor needs.
PRUNE = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
)


class BaseImageError(RuntimeError):
    pass


def recipe_hash() -> str:
    """Names the bases an image may be built on (part of every image's content hash)."""
    return cid_of_bytes(canonical_json({**RECIPE, "standin": STANDIN_DOCKERFILE}))


def base_image_tag() -> str:
    """``pytest-theory/base:bookworm-<recipe hash>``: changes only when the recipe does."""
    return f"{REPOSITORY}:{RECIPE['suite']}-{cid_of_bytes(canonical_json(RECIPE))[3:15]}"


def standin_tag() -> str:
    return f"{STANDIN_REPOSITORY}:3.11-slim-standin-{recipe_hash()[3:15]}"


def official_base(client: docker.DockerClient) -> str | None:
    """``python:3.11-slim`` if the engine has it or can pull it (tried once per process)."""
    try:
        client.images.get(OFFICIAL)
        return OFFICIAL
    except ImageNotFound:
        pass
    except DockerException:
        return None
    if os.environ.get(PULL_ENV) == "0" or OFFICIAL in _pull_failed:
        return None
    try:
        client.images.pull(OFFICIAL)
        return OFFICIAL
    except DockerException as exc:
        _pull_failed[OFFICIAL] = str(getattr(exc, "explanation", None) or exc).splitlines()[0]
        return None


def describe(tag: str) -> str:
    """Which base a build used, for the build output."""
    if tag == OFFICIAL:
        return f"base {OFFICIAL}"
    why = _pull_failed.get(OFFICIAL, "not pulled")
    return f"base {tag}: a local stand-in for {OFFICIAL} ({OFFICIAL} is not here: {why})"


def ensure_base_image(client: docker.DockerClient | None = None) -> str:
    """The tag to build on: ``python:3.11-slim`` where possible, else the local stand-in."""
    client = client or docker.from_env()
    return official_base(client) or ensure_standin(client)


def ensure_standin(client: docker.DockerClient) -> str:
    """The stand-in for ``python:3.11-slim``, built on the debootstrap root once per recipe."""
    tag = standin_tag()
    with exclusive(tag):
        try:
            client.images.get(tag)
            return tag
        except ImageNotFound:
            pass
        root = ensure_root_image(client)
        dockerfile = io.BytesIO(STANDIN_DOCKERFILE.format(root=root).encode())
        try:
            client.images.build(fileobj=dockerfile, tag=tag, rm=True, forcerm=True)
        except (BuildError, APIError) as exc:
            raise BaseImageError(f"building the stand-in base {tag} failed: {exc}") from None
    return tag


def ensure_root_image(client: docker.DockerClient | None = None) -> str:
    """The debootstrap root's tag, importing the cached root filesystem or running debootstrap."""
    client = client or docker.from_env()
    tag = base_image_tag()
    with exclusive(tag):
        try:
            client.images.get(tag)
            return tag
        except ImageNotFound:
            pass
        tarball = cache_dir("base") / f"{tag.rsplit(':', 1)[1]}.tar"
        if not tarball.exists():
            _debootstrap_to(tarball)
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=version, changes=["ENV LANG=C.UTF-8"]
        )
        client.images.get(tag)
    return tag


def _debootstrap_to(tarball: Path) -> None:
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not os.path.exists(debootstrap):
        raise BaseImageError(
            "debootstrap is not installed; run scripts/setup (or apt-get install debootstrap)"
        )
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    with tempfile.TemporaryDirectory(prefix="theory-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        command = [
            *prefix,
            debootstrap,
            f"--variant={RECIPE['variant']}",
            f"--include={','.join(RECIPE['include'])}",
            RECIPE["suite"],
            str(root),
            RECIPE["mirror"],
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise BaseImageError(f"debootstrap failed ({done.returncode}):\n{tail}")
        if not (root / "usr/bin/python3").exists():
            raise BaseImageError("debootstrap produced no /usr/bin/python3")
        for relative in PRUNE:
            target = root / relative
            if target.is_dir():
                subprocess.run(
                    [*prefix, "find", str(target), "-mindepth", "1", "-delete"], check=True
                )
        partial = tarball.with_suffix(".partial")
        # Numeric owners and no device nodes: docker import needs neither.
        subprocess.run(
            [
                *prefix,
                "tar",
                "--numeric-owner",
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "-C",
                str(root),
                "-cf",
                str(partial),
                ".",
            ],
            check=True,
        )
        if prefix:
            subprocess.run([*prefix, "chown", str(os.geteuid()), str(partial)], check=True)
            subprocess.run([*prefix, "rm", "-rf", str(root)], check=True)
        os.replace(partial, tarball)
