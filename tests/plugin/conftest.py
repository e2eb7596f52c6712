from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

BROKEN = FIXTURES / "broken"
#: Each broken processor and the one rule it breaks.
BREAKS = {
    "stdout_logs": "logs",
    "unsorted_index": "index",
    "outside_write": "confinement",
    "missing_receipt": "receipts",
    "nondeterministic_mock": "determinism",
    "bare_422": "errors",
    "stream_without_done": "stream",
    "leaked_secret": "secrets",
    "no_digest_on_errors": "errors",
    "django_in_image": "image",
    "no_settle_log": "logs",
}
#: One-line edits of the template's Dockerfile, each breaking one check of the `image` rule.
DOCKERFILE_BREAKS = {
    "test_dockerfile_takes_the_base_image_as_an_argument": (
        "ARG BASE_IMAGE=python:3.11-slim",
        "ARG BASE_IMAGE",
    ),
    "test_image_has_a_healthcheck_on_healthz": ("8000/healthz'", "8000/openapi.json'"),
    "test_image_runs_uvicorn": ('CMD ["uvicorn",', 'CMD ["python", "-m", "uvicorn",'),
}
SUMMARY = re.compile(
    r"^(?P<target>\S+): (?P<passed>\d+)/(?P<ran>\d+) rules passed \((?P<checks>\d+) checks\)"
    r"(?:; failed: (?P<failed>.*))?$",
    re.M,
)
#: Fewer generated cases than the default: these runs prove the suite, not the processors.
QUICK = [
    "--theory-fuzz-examples",
    "15",
    "--theory-property-examples",
    "5",
    "-p",
    "no:cacheprovider",
]


def make_broken(root: Path, name: str) -> str:
    """``broken/<name>@1`` under ``root``: the template with ``<name>.py`` as its app/http.py."""
    folder = root / f"broken_{name}"
    shutil.copytree(BROKEN / "template", folder, ignore=shutil.ignore_patterns("__pycache__"))
    registry = folder / "registry.yaml"
    registry.write_text(registry.read_text().replace("NAME", name))
    if (BROKEN / f"{name}.py").exists():
        shutil.copy(BROKEN / f"{name}.py", folder / "app" / "http.py")
    if (BROKEN / f"{name}.lock").exists():
        shutil.copy(BROKEN / f"{name}.lock", folder / "requirements.lock")
    return f"broken/{name}@1"


def summaries(output: str) -> dict[str, dict[str, object]]:
    """The plugin's summary lines, by target."""
    return {
        m["target"]: {
            "passed": int(m["passed"]),
            "ran": int(m["ran"]),
            "checks": int(m["checks"]),
            "failed": set(m["failed"].split(", ")) if m["failed"] else set(),
        }
        for m in SUMMARY.finditer(output)
    }


@pytest.fixture
def broken_root(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    root.mkdir()
    return root
