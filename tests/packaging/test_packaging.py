"""What the wheel carries and the author's command line, without Docker (see test_outside.py
for the whole path in a fresh virtualenv)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import pytest_theory
from pytest_theory import cli, scaffold
from pytest_theory.images import locks, wheels
from pytest_theory.images.context import runtime_lock
from pytest_theory.registry import builtin_root, load_spec, parse_ref
from pytest_theory.rules import SPEC_PATH
from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_packages_list_names_every_package_folder() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    found = set()
    for name, folder in setuptools["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            if "tests" not in relative.parts and "__pycache__" not in relative.parts:
                found.add(".".join([name, *relative.parts]))
    # processors/<ns>_<name>/app folders are packages in the repository, not all shipped
    assert set(setuptools["packages"]) <= found
    assert {p for p in found if not p.startswith("pytest_theory.processors.")} <= set(
        setuptools["packages"]
    )
    assert "pytest_theory.scaffold" in setuptools["packages"]


def test_the_packaged_spec_is_the_shared_one(spec_md: str) -> None:
    assert SPEC_PATH.read_text("utf-8") == spec_md, "copy ../shared/SPEC.md to contracts/SPEC.md"


def test_the_package_is_typed_and_lists_its_api() -> None:
    root = Path(pytest_theory.__file__).parent
    assert (root / "py.typed").exists()
    for name in pytest_theory.__all__:
        assert getattr(pytest_theory, name) is not None, name
    assert "assert_success" in pytest_theory.__all__ and "Run" in pytest_theory.__all__


def test_every_fixture_is_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    lines = result.stdout.lines
    theory = [i for i, line in enumerate(lines) if line.startswith("theory_")]
    assert len(theory) >= 12
    undocumented = [lines[i] for i in theory if "no docstring" in lines[i + 1]]
    assert not undocumented


# -- theory new --------------------------------------------------------------------------


def theory(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_new_scaffolds_a_repository_without_django(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = theory(capsys, "new", "acme/echo@1", str(tmp_path))
    assert code == 0, out
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert files == {
        "pytest.ini",
        ".gitignore",
        ".github/workflows/theory.yml",
        "tests/test_acme_echo.py",
        *(f"processors/acme_echo/{name}" for name in scaffold.PROCESSOR_FILES.values()),
        "processors/acme_echo/requirements.lock",
    }
    spec = load_spec(tmp_path / "processors/acme_echo/registry.yaml")
    assert spec.data["capabilities"] == ["fault-injection"]
    assert "pytest_theory.processors.runtime" in (spec.directory / "app/handler.py").read_text()
    assert locks.stale_reason(spec.directory) is None
    assert wheels.read_lock(spec.directory / "requirements.lock") == wheels.read_lock(
        runtime_lock()
    )
    assert (tmp_path / "pytest.ini").read_text().count("theory_registry = processors") == 1
    assert "django" not in (REPO / "pytest_theory/scaffold/__init__.py").read_text()

    # A second processor: the ini file names the root; nothing written is overwritten.
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".gitignore").write_text("mine\n")
    code, out, _ = theory(capsys, "new", "acme/shout@1")
    assert code == 0 and (tmp_path / "processors/acme_shout/registry.yaml").exists()
    assert (tmp_path / ".gitignore").read_text() == "mine\n" and "kept" in out
    code, out, _ = theory(capsys, "list", "--as-options")
    assert out.split("\n")[:2] == ["--theory-ref acme/echo@1", "--theory-ref acme/shout@1"]
    code, _, err = theory(capsys, "new", "acme/echo@1")
    assert code == 2 and "already exists" in err
    code, _, err = theory(capsys, "new", "Acme/Echo")
    assert code == 2 and "not a processor ref" in err


def test_new_in_a_project_with_its_own_config_only_says_what_to_add(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "-ra"\n')
    code, out, _ = theory(capsys, "new", "acme/echo@1", str(tmp_path))
    assert code == 0 and not (tmp_path / "pytest.ini").exists()
    assert f"add to {tmp_path / 'pyproject.toml'}: theory_registry = processors" in out


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pytest.ini", "[pytest]\ntheory_registry = procs other\n"),
        ("pyproject.toml", '[tool.pytest.ini_options]\ntheory_registry = ["procs", "other"]\n'),
        ("tox.ini", "[pytest]\ntheory_registry =\n    procs\n    other\n"),
        ("setup.cfg", "[tool:pytest]\ntheory_registry = procs other\n"),
    ],
)
def test_the_registry_roots_come_from_the_ini_file(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    (tmp_path / "sub").mkdir()
    ini = cli.find_ini(tmp_path / "sub")
    assert ini is not None and ini.roots == [tmp_path / "procs", tmp_path / "other"]


def test_installed_processors_are_never_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scaffold.new_processor(parse_ref("acme/echo@1"), tmp_path / "procs")
    installed = [tmp_path.resolve(), builtin_root()]  # as if both were in site-packages
    monkeypatch.setattr(cli, "installed_prefixes", lambda: installed)
    for command in ("lock", "pin"):
        code, _, err = theory(capsys, command, "--registry", str(tmp_path / "procs"))
        assert code == 2 and "is an installed file of pytest-theory" in err, err
    monkeypatch.chdir(tmp_path)
    code, _, err = theory(capsys, "check")  # no ini file, and the built-in root is "installed"
    assert code == 2 and "theory_registry" in err and "--registry" in err


# -- stale locks ----------------------------------------------------------------------------


def test_a_stale_lock_is_refused_before_any_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = scaffold.new_processor(parse_ref("acme/echo@1"), tmp_path / "procs")
    code, _, _ = theory(capsys, "check", "--registry", str(tmp_path / "procs"))
    assert code == 1  # not pinned yet; the lock is fine
    with (folder / "requirements.in").open("a") as handle:
        handle.write("# a comment does not stale it\n")
    assert locks.stale_reason(folder) is None
    with (folder / "requirements.in").open("a") as handle:
        handle.write("six==1.17.0\n")
    code, _, err = theory(capsys, "build", "--registry", str(tmp_path / "procs"))
    command = f"run `theory lock --registry {tmp_path / 'procs'} acme/echo@1`"
    assert code == 2 and "is stale" in err and err.count(command) == 1, err
    code, out, _ = theory(capsys, "check", "--registry", str(tmp_path / "procs"))
    assert code == 1 and command in out


def test_the_plugin_refuses_a_stale_lock_once_at_the_start(
    pytester: pytest.Pytester,
) -> None:
    folder = scaffold.new_processor(parse_ref("acme/echo@1"), pytester.path / "procs")
    pytester.makeini("[pytest]\ntheory_registry = procs\n")
    with (folder / "requirements.in").open("a") as handle:
        handle.write("six==1.17.0\n")
    result = pytester.runpytest_subprocess("--theory-ref", "acme/echo@1", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.str().count("run `theory lock acme/echo@1`") == 1, result.stderr.str()


def test_relocking_keeps_pins_unless_they_must_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = scaffold.new_processor(parse_ref("acme/echo@1"), tmp_path)
    old = wheels.read_lock(folder / "requirements.lock")
    calls: list[list[str]] = []

    def resolve(requirements_in: Path, platform: str, constraints: Path | None) -> Any:
        pinned = constraints.read_text().split() if constraints else []
        calls.append(pinned)
        if any(line.startswith("fastapi==") for line in pinned):
            raise wheels.WheelhouseError("fastapi must move")  # what pip says on a conflict
        return [*(p for p in old if p.name != "fastapi"), wheels.Pin("fastapi", "9.9.9")]

    monkeypatch.setattr(wheels, "resolve_lock", resolve)
    done = locks.relock(folder / "requirements.in")
    assert len(calls) == 2  # every pin kept, then only the direct ones let go
    assert all(not line.startswith("fastapi==") for line in calls[1])
    assert any(line.startswith("starlette==") for line in calls[1])
    assert done.moved == [f"fastapi {next(p.version for p in old if p.name == 'fastapi')} -> 9.9.9"]
    assert locks.stale_reason(folder) is None


# -- ids and xdist -------------------------------------------------------------------------


def test_suite_ids_are_short_and_name_one_check(pytester: pytest.Pytester) -> None:
    scaffold.new_processor(parse_ref("acme/echo@1"), pytester.path / "procs")
    pytester.makeini("[pytest]\ntheory_registry = procs\n")
    common = ("--theory-ref", "acme/echo@1", "-p", "no:xdist", "-p", "no:cacheprovider")
    listed = pytester.runpytest_subprocess(
        *common, "--collect-only", "-q", "--strict-markers", "-W", "error"
    )
    ids = [line for line in listed.stdout.lines if "::" in line]
    assert listed.ret == 0 and len(ids) > 40
    assert all(i.startswith("pytest_theory/suite/test_contract.py::test_") for i in ids)
    again = pytester.runpytest_subprocess(*common, "--collect-only", "-q", ids[0])
    assert [line for line in again.stdout.lines if "::" in line] == [ids[0]]


def test_the_ci_recipe_is_what_theory_new_writes() -> None:
    recipe = (REPO / "examples/ci/pull-request.yml").read_text()
    assert recipe == scaffold.workflow("processors")
    job = yaml.safe_load(recipe)["jobs"]["contract"]
    assert not any("~" in str(value) for value in job["env"].values())
    steps = " ".join(step.get("run", "") for step in job["steps"])
    assert "scripts/setup" not in steps and " -n " not in steps and "--theory-ref all" not in steps
    assert "theory check --all" in steps and "--junitxml" in steps


@pytest.mark.slow
def test_the_wheel_carries_every_file_and_only_the_namespace(wheel: Path) -> None:
    import subprocess
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/")[0] for name in names}
    assert tops == {"pytest_theory", wheel.name.split("-py3")[0] + ".dist-info"}
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    package_dir = PYPROJECT["tool"]["setuptools"]["package-dir"]
    folders = {folder: name.replace(".", "/") for name, folder in package_dir.items()}
    missing = [
        path
        for path in tracked
        if path.split("/")[0] in folders
        and f"{folders[path.split('/')[0]]}/{path.split('/', 1)[1]}" not in names
    ]
    assert not missing, "add them to package-data in pyproject.toml"
    assert "pytest_theory/contracts/SPEC.md" in names and "pytest_theory/py.typed" in names


def test_a_processor_folder_copied_elsewhere_keeps_a_valid_lock(tmp_path: Path) -> None:
    """``-r ../runtime/requirements.in`` counts as its line: the hash does not depend on the folder's
    neighbours (tests and authors copy the built-in processors around)."""
    import shutil

    for name in ("runtime", "llm_litellm", "replicate_generic"):
        assert locks.stale_reason(REPO / "processors" / name) is None, name
    copy = shutil.copytree(REPO / "processors/llm_litellm", tmp_path / "demo_llm")
    assert locks.stale_reason(copy) is None
