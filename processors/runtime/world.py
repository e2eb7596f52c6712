"""Writing a run into the artifact world: outputs, the index and the two receipts.

Every file is written to a temporary name in its final folder and renamed into
place, so a reader never sees half a file. If anything fails part-way, the
files this run already renamed are removed again: a failed run leaves nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_theory.contracts.errors import ContractError, ErrorCode
from pytest_theory.contracts.hashing import canonical_json, cid_of_bytes
from pytest_theory.contracts.worldpath import (
    WorldPathError,
    canonicalize,
    determinism_receipt_path,
    is_under,
)

ARTIFACTS = "/artifacts"


@dataclass(frozen=True)
class PlannedFile:
    world_path: str
    data: bytes


class World:
    """The ``/artifacts`` facet of a world, rooted at ``root`` on this filesystem."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def host_path(self, world_path: str) -> Path:
        """Where canonical ``world_path`` (under ``/artifacts``) lives on disk."""
        if not is_under(world_path, ARTIFACTS):
            raise WorldPathError(f"{world_path} is not under {ARTIFACTS}/")
        return self.root.joinpath(*world_path.removeprefix(ARTIFACTS + "/").rstrip("/").split("/"))

    def read(self, world_path: str, cid: str | None = None) -> bytes:
        """A file under ``/artifacts`` (an attachment); ``ERR_INPUTS`` when absent or altered."""
        try:
            path = self.host_path(canonicalize(world_path))
            data = path.read_bytes()
        except (ContractError, OSError):
            raise ContractError(
                ErrorCode.ERR_INPUTS, "an $artifact is not a readable file under /artifacts"
            ) from None
        if cid is not None and cid_of_bytes(data) != cid:
            raise ContractError(ErrorCode.ERR_INPUTS, "an $artifact's bytes do not match its cid")
        return data

    def commit(
        self, files: list[PlannedFile], *, cancelled: Callable[[], bool] = lambda: False
    ) -> None:
        """Write ``files`` atomically, in order; on failure remove what this call wrote."""
        temps: list[tuple[Path, Path]] = []
        placed: list[Path] = []
        try:
            for planned in files:
                final = self.host_path(planned.world_path)
                final.parent.mkdir(parents=True, exist_ok=True)
                temp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex}")
                temps.append((temp, final))
                with open(temp, "xb") as f:
                    f.write(planned.data)
            for temp, final in temps:
                if cancelled():
                    raise ContractError(ErrorCode.ERR_TIMEOUT, "the run exceeded runtime.timeout_s")
                os.replace(temp, final)
                placed.append(final)
        except BaseException:
            for temp, _ in temps:
                temp.unlink(missing_ok=True)
            for final in placed:
                final.unlink(missing_ok=True)
            raise


def output_world_path(prefix: str, relpath: str) -> str:
    """``P/outputs/<relpath>``, canonical and confined to ``P/outputs/``."""
    outputs_dir = prefix + "outputs/"
    try:
        path = canonicalize(outputs_dir + relpath)
    except WorldPathError as exc:
        raise ContractError(ErrorCode.ERR_INTERNAL, f"output path refused: {exc.message}") from None
    if not is_under(path, outputs_dir) or path.endswith("/"):
        raise ContractError(ErrorCode.ERR_INTERNAL, "an output path escapes P/outputs/")
    return path


def plan_run_files(
    *,
    prefix: str,
    execution_id: str,
    outputs: list[tuple[str, bytes, str]],
    receipt: dict[str, Any],
    determinism: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[PlannedFile]]:
    """The index entries and every file of a run, outputs first and receipts last.

    ``outputs`` are ``(world_path, bytes, mime)``; ``receipt``/``determinism`` get
    ``output_cids`` (and the receipt ``outputs_index``) filled in here.
    """
    entries: list[dict[str, Any]] = sorted(
        (
            {"path": path, "cid": cid_of_bytes(data), "size_bytes": len(data), "mime": mime}
            for path, data, mime in outputs
        ),
        key=lambda e: str(e["path"]),
    )
    index_path = prefix + "outputs.json"
    cids = sorted(e["cid"] for e in entries)
    receipt = {**receipt, "outputs_index": index_path, "output_cids": cids}
    determinism = {**determinism, "output_cids": cids}
    files = [PlannedFile(path, data) for path, data, _ in sorted(outputs)]
    files.append(PlannedFile(index_path, canonical_json({"outputs": entries})))
    files.append(PlannedFile(prefix + "receipt.json", canonical_json(receipt)))
    files.append(PlannedFile(determinism_receipt_path(execution_id), canonical_json(determinism)))
    return entries, files
