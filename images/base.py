"""The base image, made locally: Debian ``minbase`` with Python (debootstrap, ``docker import``).

No image can be pulled on the machines this runs on, so the Dockerfiles'
``BASE_IMAGE`` is built from Debian's packages. The root filesystem is cached
as a tarball keyed by the recipe, so an emptied Docker engine re-imports it in
seconds instead of running debootstrap again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import docker
from docker.errors import ImageNotFound

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
    return cid_of_bytes(canonical_json(RECIPE))


def base_image_tag() -> str:
    """``pytest-theory/base:bookworm-<recipe hash>``: changes only when the recipe does."""
    return f"{REPOSITORY}:{RECIPE['suite']}-{recipe_hash()[3:15]}"


def ensure_base_image(client: docker.DockerClient | None = None) -> str:
    """The base image's tag, importing the cached root filesystem or running debootstrap first."""
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
