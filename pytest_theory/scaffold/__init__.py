"""New processors and the repository files around them, from the templates in this folder.

``theory new`` and ``manage.py scaffold_processor`` both call ``new_processor``;
``theory new`` also calls ``new_repository_files``. Nothing here needs Django.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from string import Template

from pytest_theory.images import locks, wheels
from pytest_theory.images.context import runtime_lock
from pytest_theory.registry import Ref, RegistryError, load_spec

TEMPLATES = Path(__file__).resolve().parent
#: template file -> path in the new processor's folder
PROCESSOR_FILES = {
    "Dockerfile.tmpl": "Dockerfile",
    "registry.yaml.tmpl": "registry.yaml",
    "requirements.in.tmpl": "requirements.in",
    "app___init__.py.tmpl": "app/__init__.py",
    "app_http.py.tmpl": "app/http.py",
    "app_handler.py.tmpl": "app/handler.py",
}
INI_FILE = "pytest.ini"
WORKFLOW = ".github/workflows/theory.yml"


def render(template: str, **values: str) -> str:
    return Template((TEMPLATES / template).read_text("utf-8")).substitute(values)


def package_version() -> str:
    try:
        return version("pytest-theory")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "0.1.0"


def new_processor(ref: Ref, root: Path) -> Path:
    """Write ``<root>/<ns>_<name>/``: a processor that builds and passes the contract suite as is.

    Its lock is the runtime's closure, recording the hash of its requirements.in.
    """
    folder = root / ref.dirname
    if folder.exists():
        raise RegistryError(f"{folder} already exists")
    runtime_in = runtime_lock().with_name(locks.IN_NAME)
    values = {
        "ref": str(ref),
        "secret": f"{ref.ns}_{ref.name}_API_KEY".upper().replace("-", "_"),
        "runtime_requirements": runtime_in.read_text("utf-8").strip(),
    }
    for template, target in PROCESSOR_FILES.items():
        path = folder / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(template, **values), "utf-8")
    requirements_in = folder / locks.IN_NAME
    locks.write_lock(
        folder / locks.LOCK_NAME,
        wheels.read_lock(runtime_lock()),
        locks.requirements_hash(requirements_in),
    )
    load_spec(folder / "registry.yaml")  # what was written validates
    return folder


@dataclass
class Written:
    created: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # there already: never overwritten


def new_repository_files(ref: Ref, directory: Path, root: Path, *, with_ini: bool) -> Written:
    """The files around a first processor: an ini with ``theory_registry`` (when ``with_ini``),
    a test on the plugin's fixtures, a CI workflow and a ``.gitignore``; existing ones are kept."""
    try:
        relative_root = root.resolve().relative_to(directory.resolve()).as_posix()
    except ValueError:  # a root outside the repository: name it as it is
        relative_root = str(root.resolve())
    files = {
        f"tests/test_{ref.ns}_{ref.name}.py".replace("-", "_"): render(
            "repo_test.py.tmpl", ref=str(ref)
        ),
        WORKFLOW: workflow(relative_root),
        ".gitignore": render("repo_gitignore.tmpl"),
    }
    if with_ini:
        files[INI_FILE] = ini_snippet(relative_root)
    written = Written()
    for name, text in files.items():
        path = directory / name
        if path.exists():
            written.kept.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        written.created.append(path)
    return written


def ini_snippet(root: str) -> str:
    return render("repo_pytest.ini.tmpl", root=root)


def workflow(root: str = "processors") -> str:
    """The CI recipe (examples/ci/pull-request.yml is this, for ``processors``)."""
    return render("repo_workflow.yml.tmpl", root=root, version=package_version())
