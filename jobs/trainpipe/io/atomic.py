"""Atomic file writes (temp file in the same folder, fsync, rename, fsync of the folder) so a crash never
leaves half a file, and a folder is replaced whole.

The temp files and folders are made private (mkstemp: 0600, mkdtemp: 0700) and a rename keeps that mode,
so each is given the mode a plain open() or mkdir() would have given it (0666/0777 less the umask)
before it takes its final name: a volume's files are read by stage pods of other users (a GPU node's
pod, a tool reading the models), and a private file there reads as "Permission denied".

A killed writer leaves at most its temp (`.<name>.*.tmp`) beside the target, and with the two-rename
folder swap an `.<name>.old`; `remove_stale(path)` clears what a dead writer of `path` left, and the
next `atomic_dir(path)` puts an interrupted swap's old folder back first. The fault points
(`TRAINPIPE_FAULT_POINT`) let the tests SIGKILL a writer at each step, or (`TRAINPIPE_FAULT_ACTION=stop`)
stop it there with SIGSTOP, so a test outside the process can see it mid-write and kill what it chooses
(a whole pod, as a node or the OOM killer would).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import (single-threaded then): os.umask can only be read by setting it.
_UMASK = _umask()
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


FAULT_ENV = "TRAINPIPE_FAULT_POINT"
FAULT_ACTION_ENV = "TRAINPIPE_FAULT_ACTION"


class FaultPoint(StrEnum):
    """Where a writer can be made to die: `TRAINPIPE_FAULT_POINT=<point>[:<part of the target path>]`."""

    TEMP_WRITTEN = "temp-written"  # the temp holds the new content, not yet synced
    BEFORE_RENAME = "before-rename"  # synced, not yet in place
    BETWEEN_RENAMES = "between-renames"  # folder swap without an exchange: the old folder set aside, the new not in place


class FaultAction(StrEnum):
    """What a writer does at its fault point: `TRAINPIPE_FAULT_ACTION=<action>` (default kill)."""

    KILL = "kill"  # SIGKILL itself: the writer dies there
    # SIGSTOP itself: it waits there until a SIGCONT (then writes on) or a SIGKILL. A cluster test stops a
    # training worker inside its model write this way, then kills the whole pod, which a self-kill would not:
    # the stage around the worker would see one failed unit and exit on its own.
    STOP = "stop"


def _fault(point: FaultPoint, path: Path) -> None:
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, where = wanted.partition(":")
    if name == point and where in str(path):
        action = FaultAction(os.environ.get(FAULT_ACTION_ENV) or FaultAction.KILL)
        os.kill(os.getpid(), signal.SIGSTOP if action is FaultAction.STOP else signal.SIGKILL)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _old_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def stale_temps(path: Path) -> list[Path]:
    """What writers of `path` that died left beside it: their temps and an interrupted swap's old folder."""
    if not path.parent.is_dir():
        return []
    prefix = _temp_prefix(path)
    found = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    return sorted(found + ([_old_of(path)] if _old_of(path).exists() else []))


def remove_stale(path: Path) -> None:
    """Clear what a dead writer of `path` left. Only its sole writer may call it (a unit, for its own outputs):
    another live writer's temp would be taken from under it."""
    old = _old_of(path)
    if old.exists() and not path.exists():
        os.replace(old, path)  # a swap cut between its renames: the old folder is the last whole content
    for leftover in stale_temps(path):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable: the rename is a change of the folder, not of the file."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some network filesystems refuse fsync on a directory; the rename itself stands
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (renameat2 RENAME_EXCHANGE): a reader sees the old folder or the new one,
    never neither. False where the kernel, libc or filesystem cannot (then two renames do it)."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _sync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (the new content of a folder about to take its final name)."""
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(folder))


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on clean exit it replaces `path`, on error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fault(FaultPoint.TEMP_WRITTEN, path)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        _fault(FaultPoint.BEFORE_RENAME, path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc  # a write into an open file names none
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=False, allow_nan=False, default=json_default) + "\n")


def create_json(path: Path, payload: Any) -> bool:
    """Write `path` whole only if nothing is there yet; returns whether this call wrote it.

    The temp is linked to its final name (link() fails where a file exists), so of two writers at once
    exactly one wins and the other reads the winner's record: a record that says who a folder belongs
    to must not be replaced by a second claimant the way `write_json` would.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(payload, indent=2, allow_nan=False, default=json_default) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        _fsync_dir(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    # pandas is not imported by this module: the termination log is written through it, also when
    # SIGTERM arrives while pandas itself is still being imported.
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow")


def json_default(value: Any) -> Any:
    """JSON for numpy scalars and paths (the `default=` hook of json.dumps)."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside `path`; on clean exit it replaces `path` whole (old content removed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = _old_of(path)
    if old.exists():
        if path.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, path)  # an earlier swap was cut between its renames: put the last whole content back
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    tmp.chmod(DIR_MODE)
    try:
        yield tmp
        _fault(FaultPoint.TEMP_WRITTEN, path)
        _sync_tree(tmp)
        _fault(FaultPoint.BEFORE_RENAME, path)
        if not path.exists():
            os.replace(tmp, path)
        elif _exchange(tmp, path):
            shutil.rmtree(tmp)  # now the old content
        else:
            os.replace(path, old)
            _fault(FaultPoint.BETWEEN_RENAMES, path)
            os.replace(tmp, path)
            shutil.rmtree(old)
        _fsync_dir(path.parent)
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc  # a write into an open file names none
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
