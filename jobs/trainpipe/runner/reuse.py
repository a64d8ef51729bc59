"""Reuse across runs (`--reuse-dir`): take a stage's, a select unit's or a training unit's outputs from a sibling run folder.

In a cluster every run writes under `<artifacts>/<pipeline>/<run-id>/`, and the stage Jobs get
`--reuse-dir <artifacts>/<pipeline>`: a new run (a rerun token, a changed training setting) then copies
what an earlier run already computed from the same inputs instead of computing it again. A sibling counts
only when its record has the same key (data, settings and code digests; for a model, the same unit
fingerprint) and the outputs it lists still exist. Each output is copied to a temp path beside its
destination and renamed into place, and the record is written last, so a crash mid-copy leaves the
stage simply not done. Called by `trainpipe.runner.steps` and `trainpipe.runner.units`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from trainpipe.contract.records import StageRecord
from trainpipe.io.atomic import atomic_dir, atomic_path
from trainpipe.io.layout import Layout
from trainpipe.runner.records import outputs_exist, read_record_at, write_record_at
from trainpipe.training.units import error_path, unit_state


def sibling_runs(reuse_dir: Path, current_root: Path) -> list[Path]:
    """Run folders in `reuse_dir` other than the current one, by name; hidden folders and files are left out."""
    try:
        entries = sorted(reuse_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    here = current_root.resolve()
    return [p for p in entries if p.is_dir() and not p.name.startswith(".") and p.resolve() != here]


def find_record(reuse_dir: Path, layout: Layout, record_path: Path, key: str) -> tuple[Path, StageRecord] | None:
    """The first sibling whose record at the same relative path has `key` and whose listed outputs all exist."""
    relative = record_path.relative_to(layout.root)
    for sibling in sibling_runs(reuse_dir, layout.root):
        record = read_record_at(sibling / relative)
        if record is not None and record.key == key and outputs_exist(sibling, record):
            return sibling, record
    return None


def copy_output(source_root: Path, target_root: Path, relative: str) -> None:
    """Copy one output (file or folder) into place whole: a temp copy beside the target, then one rename."""
    source, target = source_root / relative, target_root / relative
    if source.is_dir():
        with atomic_dir(target) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True, copy_function=shutil.copyfile)
    else:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def reuse_record(reuse_dir: Path, layout: Layout, record_path: Path, key: str) -> StageRecord | None:
    """Copy a matching sibling's outputs into this run and write the record here; None when no sibling matches."""
    found = find_record(reuse_dir, layout, record_path, key)
    if found is None:
        return None
    sibling, record = found
    try:
        for relative in record.outputs:
            copy_output(sibling, layout.root, relative)
    except OSError:
        return None  # the sibling's outputs went away while we copied: compute instead
    # A sibling rerunning the stage while we copied may have replaced its outputs: only a record that is
    # still the same vouches for what we copied.
    if read_record_at(sibling / record_path.relative_to(layout.root)) != record:
        return None
    write_record_at(record_path, record.stage, key, list(record.outputs), record.summary, unit=record.unit, reused_from=str(sibling))
    return read_record_at(record_path)


def reuse_model(reuse_dir: Path, layout: Layout, job_id: str, family: str, fingerprint: str) -> str | None:
    """Copy a sibling's `models/<job_id>/<family>/` whose metrics.json has `fingerprint`; returns the sibling folder, or None.

    The copied metrics.json is the unit's completion record, so the copy is checked again in place: a
    sibling that replaced its model while we copied leaves nothing here that claims to be done.
    """
    relative = layout.relative(layout.model_dir(job_id, family))
    for sibling in sibling_runs(reuse_dir, layout.root):
        if unit_state(Layout(sibling), job_id, family, fingerprint) != "done":
            continue
        target = layout.model_dir(job_id, family)
        try:
            with atomic_dir(target) as tmp:
                shutil.copytree(sibling / relative, tmp, dirs_exist_ok=True, copy_function=shutil.copyfile)
        except OSError:
            continue
        if unit_state(layout, job_id, family, fingerprint) != "done":
            shutil.rmtree(target, ignore_errors=True)
            continue
        error_path(layout, job_id, family).unlink(missing_ok=True)  # an earlier failure of this unit here is now moot
        return str(sibling)
    return None
