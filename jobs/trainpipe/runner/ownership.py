"""A pipeline folder's owner record, the refusal to write into or prune another pipeline's folder, and the move from the layout without namespaces.

Called by every stage command the operator starts (`--owner`), before it writes anything, and by
`report` before it prunes. On a volume shared by several teams two pipelines may share a name (one
per namespace, or one deleted and created again); the record is what keeps one from overwriting or
pruning the other's runs. Local runs give no owner and are never checked.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.owners import FolderOwner
from trainpipe.io.atomic import create_json, write_json
from trainpipe.runner.retention import RUN_MARKER

OWNER_RECORD = "owner.json"  # in the pipeline folder's RUN_MARKER folder
# Run folders moved in from the layout without namespaces: never pruned (see `move_legacy_folder`).
LEGACY_RUNS = "legacy-runs.json"


class FolderOwnedError(RuntimeError, CommandFailure):
    """The pipeline folder belongs to another pipeline: nothing is written or pruned there."""

    exit_code = ExitCode.FOLDER_OWNED


def owner_record(pipeline_dir: Path) -> Path:
    return pipeline_dir / RUN_MARKER / OWNER_RECORD


def read_owner(pipeline_dir: Path) -> FolderOwner | None:
    """The folder's owner record; None when it has none. An unreadable record is refused, never overwritten:
    it may be another pipeline's that a crash or a hand edit damaged."""
    path = owner_record(pipeline_dir)
    try:
        return FolderOwner.model_validate(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ValidationError) as exc:
        raise FolderOwnedError(f"the owner record {path} cannot be read ({exc}): check who the folder {pipeline_dir} belongs to, "
                               "then fix the record or delete it to let the next run claim the folder") from None


def claim_folder(pipeline_dir: Path, owner: FolderOwner) -> None:
    """Make sure `pipeline_dir` is `owner`'s: record it as such when it has no owner yet, refuse when another pipeline owns it.

    A new folder first takes in the pipeline's folder from the layout without namespaces, when that one
    is unambiguously there to take (`move_legacy_folder`).
    """
    if not pipeline_dir.exists():
        move_legacy_folder(pipeline_dir, owner)
    held = read_owner(pipeline_dir)
    if held is None:
        if create_json(owner_record(pipeline_dir), owner.to_wire()):
            return
        held = read_owner(pipeline_dir)  # another writer recorded itself first: its record decides
    if held is not None and held.uid != owner.uid:
        raise FolderOwnedError(refusal(pipeline_dir, held, owner))


def refusal(pipeline_dir: Path, held: FolderOwner, owner: FolderOwner) -> str:
    """Why a stage refuses `pipeline_dir`, and the ways on, for the pipeline's status (kept short: a status
    message holds 1 KiB, and the way on comes last)."""
    if (held.namespace, held.name) == (owner.namespace, owner.name):
        whose = f"{held.describe()}, deleted and created again since (now uid {owner.uid})"
    else:
        whose = f"{held.describe()}, not to {owner.describe()} (two pipelines were given one folder)"
    return (f"the folder {pipeline_dir} belongs to {whose}: nothing was written or pruned there. To keep its runs, adopt it: "
            f"set \"uid\" to {owner.uid} in {owner_record(pipeline_dir)}; to start afresh, move the folder away. Then retry (trainpipe.io/retry)")


def legacy_folder(pipeline_dir: Path, owner: FolderOwner) -> Path | None:
    """`<mount>/<pipeline>`, where the folder of `<mount>/<namespace>/<pipeline>` lay before paths held the namespace."""
    if pipeline_dir.name != owner.name or pipeline_dir.parent.name != owner.namespace:
        return None  # not the cluster layout: nothing to move
    return pipeline_dir.parent.parent / owner.name


def is_legacy_pipeline_folder(folder: Path) -> bool:
    """Whether `folder` is a pipeline folder of the layout without namespaces: run folders (each with its
    RUN_MARKER) and no owner record. A namespace's folder of the new layout holds pipeline folders,
    each with an owner record; one is never taken for the other."""
    if folder.is_symlink() or not folder.is_dir() or owner_record(folder).exists():
        return False
    children = [c for c in folder.iterdir() if c.is_dir() and not c.name.startswith(".")]
    return bool(children) and all((c / RUN_MARKER).is_dir() and not owner_record(c).exists() for c in children)


def move_legacy_folder(pipeline_dir: Path, owner: FolderOwner) -> bool:
    """Move `<mount>/<pipeline>` to `<mount>/<namespace>/<pipeline>` at the pipeline's first run in the new layout.

    Safe on a volume several teams share:
    - only when the new folder does not exist yet and the old one holds run folders and no owner record
      (a folder another pipeline already claimed stays where it is);
    - one rename: of two pipelines of one name in two namespaces, one takes the folder, the other starts
      afresh; nothing is copied, shared or deleted;
    - the runs moved are listed in LEGACY_RUNS before the move and never pruned afterwards: in the old
      layout both pipelines wrote there, so some may be the other namespace's. Delete them by hand
      (or delete LEGACY_RUNS to let keepRuns count them) once no one serves their models.
    Returns whether it moved the folder.
    """
    legacy = legacy_folder(pipeline_dir, owner)
    if legacy is None or not is_legacy_pipeline_folder(legacy):
        return False
    runs = sorted(c.name for c in legacy.iterdir() if c.is_dir() and not c.name.startswith("."))
    try:
        (legacy / RUN_MARKER).mkdir(exist_ok=True)  # never its parents: a claimant that moved it first leaves no ghost behind
    except FileNotFoundError:
        return False
    write_json(legacy / RUN_MARKER / LEGACY_RUNS, {"movedFrom": str(legacy), "runs": runs})
    pipeline_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(legacy, pipeline_dir)  # fails if another claimant moved it or created the new folder meanwhile
    except OSError:
        return False
    print(f"moved {legacy} to {pipeline_dir} (artefact paths now hold the namespace); its {len(runs)} run folder(s) are never pruned",
          file=sys.stderr)
    return True


def legacy_runs(pipeline_dir: Path) -> set[str]:
    """The run folders moved in from the layout without namespaces (never pruned)."""
    try:
        return set(json.loads((pipeline_dir / RUN_MARKER / LEGACY_RUNS).read_text()).get("runs") or [])
    except FileNotFoundError:
        return set()
