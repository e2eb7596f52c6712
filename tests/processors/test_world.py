"""The artifact world on disk (processors/runtime/world.py), judged directly.

SPEC §3: the processor writes only under P, never through a link out of the world; a
failed run leaves nothing. SPEC §6: an ``$artifact`` input is a file of the world whose
bytes match its cid, refused with ERR_INPUTS otherwise. These tests drive ``World``
without an app, so each rule of the module is seen by a test that names it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from blake3 import blake3

from pytest_theory.contracts.errors import ContractError, ErrorCode
from pytest_theory.contracts.worldpath import WorldPathError
from pytest_theory.processors.runtime import world as world_module
from pytest_theory.processors.runtime.world import (
    CommitGate,
    PlannedFile,
    World,
    execution_folder,
)

LINK_REFUSED = "the path crosses a symbolic link or a non-folder in the world"
NOT_READABLE = "an $artifact is not a readable regular file under /artifacts"


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work from an empty folder of its own: a path wrongly taken relative to the working
    directory then finds nothing, whatever an earlier test (or mutant) left there."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def cid(data: bytes) -> str:
    return "b3:" + blake3(data).hexdigest()


def commit(world: World, files: dict[str, bytes], *units: str) -> None:
    planned = [PlannedFile(path, data) for path, data in files.items()]
    world.commit(planned, units=list(units), gate=CommitGate())


def tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root``: files with their bytes, folders and links as None."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        regular = path.is_file() and not path.is_symlink()
        found[relative] = path.read_bytes() if regular else None
    return found


# -- paths -------------------------------------------------------------------------------


def test_a_world_path_maps_to_its_place_under_the_root(tmp_path: Path) -> None:
    world = World(tmp_path)
    assert world.host_path("/artifacts/a/b.txt") == tmp_path / "a" / "b.txt"
    # A trailing slash names the folder; only slashes are stripped, never letters.
    assert world.host_path("/artifacts/runX/") == tmp_path / "runX"


def test_a_path_outside_artifacts_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(WorldPathError) as refused:
        World(tmp_path).host_path("/etc/passwd")
    assert refused.value.message == "/etc/passwd is not under /artifacts/"


def test_the_execution_folder_is_the_runs_own(tmp_path: Path) -> None:
    assert execution_folder("run-1") == "/artifacts/execution/run-1/"


# -- check_writable: the early refusal --------------------------------------------------


@pytest.mark.parametrize(
    "planted",
    ["p", "p/outputs", "p/outputs/deep"],
    ids=["first segment", "middle segment", "last segment"],
)
def test_a_link_at_any_depth_of_the_prefix_is_refused_early(tmp_path: Path, planted: str) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / planted).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / planted).symlink_to(outside)
    with pytest.raises(ContractError) as refused:
        World(tmp_path).check_writable("/artifacts/p/outputs/deep")
    assert (refused.value.code, refused.value.message) == (ErrorCode.ERR_WRITE_PREFIX, LINK_REFUSED)


def test_a_file_on_the_way_is_refused_with_the_code_asked_for(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"a file, not a folder")
    with pytest.raises(ContractError) as refused:
        World(tmp_path).check_writable("/artifacts/f/x/", ErrorCode.ERR_INPUTS)
    assert refused.value.code is ErrorCode.ERR_INPUTS


def test_a_segment_the_filesystem_cannot_even_look_up_is_refused_with_the_code(
    tmp_path: Path,
) -> None:
    """lstat fails with ENAMETOOLONG, not ENOENT: refused, with the caller's code."""
    with pytest.raises(ContractError) as refused:
        World(tmp_path).check_writable("/artifacts/" + "n" * 300 + "/x/", ErrorCode.ERR_INPUTS)
    assert refused.value.code is ErrorCode.ERR_INPUTS


def test_a_world_root_that_is_itself_a_link_is_trusted(tmp_path: Path) -> None:
    """The root is the operator's mount; only what lies below it is judged."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "mounted").symlink_to(real)
    world = World(tmp_path / "mounted")
    world.check_writable("/artifacts/p/")
    commit(world, {"/artifacts/p/a.txt": b"a"}, "/artifacts/p/")
    assert (real / "p" / "a.txt").read_bytes() == b"a"


# -- read: $artifact inputs ---------------------------------------------------------------


def test_an_artifact_is_read_whole_across_many_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 6000  # 1.5 MiB: more than one read chunk
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.bin").write_bytes(data)
    world = World(tmp_path, max_artifact_bytes=len(data) * 2)
    assert world.read("/artifacts/in/big.bin", cid(data)) == data


def test_an_artifact_of_exactly_the_limit_is_accepted_one_byte_more_is_not(
    tmp_path: Path,
) -> None:
    (tmp_path / "at.bin").write_bytes(b"x" * 10)
    (tmp_path / "over.bin").write_bytes(b"x" * 11)
    world = World(tmp_path, max_artifact_bytes=10)
    assert world.read("/artifacts/at.bin") == b"x" * 10
    with pytest.raises(ContractError) as refused:
        world.read("/artifacts/over.bin")
    assert (refused.value.code, refused.value.message) == (
        ErrorCode.ERR_INPUTS,
        "an $artifact exceeds 10 bytes",
    )


def test_an_artifact_whose_bytes_differ_from_its_cid_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"changed")
    with pytest.raises(ContractError) as refused:
        World(tmp_path).read("/artifacts/a.txt", cid(b"original"))
    assert (refused.value.code, refused.value.message) == (
        ErrorCode.ERR_INPUTS,
        "an $artifact's bytes do not match its cid",
    )


def test_a_link_to_a_file_inside_the_world_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_bytes(b"inside")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    with pytest.raises(ContractError) as refused:
        World(tmp_path).read("/artifacts/link.txt")
    assert (refused.value.code, refused.value.message) == (ErrorCode.ERR_INPUTS, NOT_READABLE)


def test_a_link_among_an_artifacts_folders_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.txt").write_bytes(b"inside")
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    with pytest.raises(ContractError) as refused:
        World(tmp_path).read("/artifacts/linked/a.txt")
    assert (refused.value.code, refused.value.message) == (ErrorCode.ERR_INPUTS, NOT_READABLE)


def test_an_artifact_that_grows_while_it_is_read_is_refused_at_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its size is judged before reading and again as it is read: a writer appending after
    the first look does not get more than the limit into memory."""
    artifact = tmp_path / "growing.bin"
    artifact.write_bytes(b"x" * 10)
    real_fstat = os.fstat

    def fstat_then_append(fd: int) -> os.stat_result:
        looked = real_fstat(fd)
        with artifact.open("ab") as writer:
            writer.write(b"y")
        return looked

    monkeypatch.setattr(os, "fstat", fstat_then_append)
    with pytest.raises(ContractError) as refused:
        World(tmp_path, max_artifact_bytes=10).read("/artifacts/growing.bin")
    assert (refused.value.code, refused.value.message) == (
        ErrorCode.ERR_INPUTS,
        "an $artifact exceeds 10 bytes",
    )


def test_reading_a_missing_artifact_makes_no_folder(tmp_path: Path) -> None:
    with pytest.raises(ContractError) as refused:
        World(tmp_path).read("/artifacts/missing/folder/a.txt")
    assert (refused.value.code, refused.value.message) == (ErrorCode.ERR_INPUTS, NOT_READABLE)
    assert list(tmp_path.iterdir()) == []


# -- commit: staged, renamed into place, undone on failure ---------------------------------


def test_committed_files_get_the_modes_a_new_file_gets(tmp_path: Path) -> None:
    """0o666 less the umask, as open() makes them: readable by the world's other users."""
    umask = os.umask(0o022)
    try:
        commit(World(tmp_path), {"/artifacts/p/a.txt": b"a"}, "/artifacts/p/")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "p" / "a.txt").stat().st_mode) == 0o644


def test_a_plan_naming_one_file_twice_commits_nothing(tmp_path: Path) -> None:
    """Two outputs at one path: the second never silently replaces the first."""
    files = [PlannedFile("/artifacts/p/a.txt", b"1"), PlannedFile("/artifacts/p/a.txt", b"2")]
    with pytest.raises(FileExistsError):
        World(tmp_path).commit(files, units=["/artifacts/p/"], gate=CommitGate())
    assert list(tmp_path.iterdir()) == []


def test_a_rerun_into_an_existing_prefix_replaces_files_and_makes_new_folders(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    commit(world, {"/artifacts/p/a.txt": b"old", "/artifacts/p/keep.txt": b"k"}, "/artifacts/p/")
    commit(world, {"/artifacts/p/a.txt": b"new", "/artifacts/p/sub/b.txt": b"b"}, "/artifacts/p/")
    assert tree(tmp_path) == {
        "p": None,
        "p/a.txt": b"new",
        "p/keep.txt": b"k",
        "p/sub": None,
        "p/sub/b.txt": b"b",
    }


def test_a_rerun_failing_midway_restores_every_file_it_replaced(tmp_path: Path) -> None:
    """``b.txt`` is replaced first (a folder's files are moved before its subfolders'); then
    a folder stands where ``z/c.txt`` must go: the old ``b.txt`` comes back."""
    world = World(tmp_path)
    commit(world, {"/artifacts/p/b.txt": b"old b"}, "/artifacts/p/")
    (tmp_path / "p" / "z" / "c.txt").mkdir(parents=True)
    before = tree(tmp_path)
    files = {"/artifacts/p/b.txt": b"new b", "/artifacts/p/z/c.txt": b"c"}
    with pytest.raises(ContractError) as refused:
        commit(world, files, "/artifacts/p/")
    assert (refused.value.code, refused.value.message) == (
        ErrorCode.ERR_INTERNAL,
        "a folder stands where a file must go",
    )
    assert tree(tmp_path) == before


def test_a_link_where_a_rerun_puts_a_file_is_replaced_and_its_target_untouched(
    tmp_path: Path,
) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-target"
    outside.mkdir()
    world = World(tmp_path)
    commit(world, {"/artifacts/p/keep.txt": b"k"}, "/artifacts/p/")
    (tmp_path / "p" / "a.txt").symlink_to(outside)
    commit(world, {"/artifacts/p/a.txt": b"a"}, "/artifacts/p/")
    assert (tmp_path / "p" / "a.txt").read_bytes() == b"a"
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("target", ["folder", "file"])
def test_a_prefix_that_is_a_link_or_a_file_is_refused_at_commit(
    tmp_path: Path, target: str
) -> None:
    """The early check can be raced: commit judges the prefix itself, never following it."""
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    if target == "folder":
        (tmp_path / "p").symlink_to(outside)
    else:
        (tmp_path / "p").write_bytes(b"a file")
    before = tree(tmp_path)
    with pytest.raises(ContractError) as refused:
        commit(World(tmp_path), {"/artifacts/p/a.txt": b"a"}, "/artifacts/p/")
    assert (refused.value.code, refused.value.message) == (ErrorCode.ERR_WRITE_PREFIX, LINK_REFUSED)
    assert tree(tmp_path) == before and list(outside.iterdir()) == []


def test_a_failed_commit_removes_the_folders_it_made_even_with_spaces_in_their_names(
    tmp_path: Path,
) -> None:
    (tmp_path / "blocked").write_bytes(b"a file")
    # Units are placed shortest first: the first is placed (making "a b/"), then the second
    # is refused.
    first, second = "/artifacts/a b/c/", "/artifacts/blocked/q/"
    with pytest.raises(ContractError):
        commit(World(tmp_path), {first + "x": b"x", second + "y": b"y"}, first, second)
    assert tree(tmp_path) == {"blocked": b"a file"}


def test_a_failed_commit_keeps_the_empty_folders_that_were_there_before(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "blocked").write_bytes(b"a file")
    with pytest.raises(ContractError):
        commit(
            World(tmp_path),
            {"/artifacts/runs/p/x": b"x", "/artifacts/blocked/q/y": b"y"},
            "/artifacts/runs/p/",
            "/artifacts/blocked/q/",
        )
    assert tree(tmp_path) == {"blocked": b"a file", "runs": None}


def test_a_failed_rerun_removes_the_folders_its_merge_made(tmp_path: Path) -> None:
    world = World(tmp_path)
    commit(world, {"/artifacts/p/a.txt": b"a"}, "/artifacts/p/")
    (tmp_path / "blocked").write_bytes(b"a file")
    files = {"/artifacts/p/new/deep/b.txt": b"b", "/artifacts/blocked/q/c.txt": b"c"}
    with pytest.raises(ContractError):
        commit(world, files, "/artifacts/p/", "/artifacts/blocked/q/")
    assert tree(tmp_path) == {"blocked": b"a file", "p": None, "p/a.txt": b"a"}


def test_removing_made_folders_keeps_any_that_are_no_longer_ours_to_remove(
    tmp_path: Path,
) -> None:
    """Best effort, never an error: a folder someone wrote into stays, a vanished one is
    not made again, a folder now reached through a link is not touched."""
    (tmp_path / "filled").mkdir()
    (tmp_path / "filled" / "theirs.txt").write_bytes(b"t")
    (tmp_path / "empty").mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    (outside / "inner").mkdir(parents=True)
    (tmp_path / "linked").symlink_to(outside)
    World(tmp_path)._remove_created(["filled", "vanished/child", "empty", "linked/inner"])
    assert tree(tmp_path) == {
        "filled": None,
        "filled/theirs.txt": b"t",
        "linked": None,
    }
    assert (outside / "inner").is_dir()


def test_a_commit_that_cannot_make_its_stage_reports_that_not_the_cleanup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stage is removed in a ``finally``; when it was never made, the caller still
    sees why the commit failed (FileExistsError), not the failed removal."""

    class FixedUuid:
        hex = "fixed"

    monkeypatch.setattr(world_module.uuid, "uuid4", lambda: FixedUuid())
    (tmp_path / (world_module.STAGE_PREFIX + "fixed")).write_bytes(b"in the way")
    with pytest.raises(FileExistsError):
        commit(World(tmp_path), {"/artifacts/p/a.txt": b"a"}, "/artifacts/p/")
