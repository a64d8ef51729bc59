"""A writer killed (SIGKILL) at each step of an atomic write: readers see the old content whole (or, in a
folder swap cut between its two renames, no folder), never part of the new; the retry converges to the
new content and leaves nothing behind. 20 kills at each point."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from trainpipe.io import atomic
from trainpipe.io.atomic import FAULT_ACTION_ENV, FAULT_ENV, FaultAction, FaultPoint, atomic_dir, remove_stale, stale_temps, write_text

REPEATS = 20
PARTS = 4


def _killed(write: Callable[[], None], point: FaultPoint, target: Path) -> bool:
    """Run `write` in a forked child that dies at `point`; whether it died there."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.environ[FAULT_ENV] = f"{point}:{target.name}"
            write()
        finally:
            os._exit(0)  # reached only when the fault point was not
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _file_content(tag: str) -> str:
    return f"{tag}\n" * 50_000  # several pages: a torn write would show


def _read_folder(target: Path) -> set[str] | None:
    if not target.exists():
        return None
    texts = {p.read_text() for p in target.iterdir()}
    assert len(list(target.iterdir())) == PARTS, f"{target} holds {sorted(p.name for p in target.iterdir())}"
    return texts


def _write_folder(target: Path, tag: str) -> None:
    with atomic_dir(target) as tmp:
        for i in range(PARTS):
            (tmp / f"part-{i}.txt").write_text(_file_content(tag))


@pytest.mark.parametrize("point", [FaultPoint.TEMP_WRITTEN, FaultPoint.BEFORE_RENAME])
def test_a_file_write_killed_leaves_the_old_file_whole_and_the_retry_converges(tmp_path: Path, point: FaultPoint):
    target = tmp_path / "metrics.json"
    write_text(target, _file_content("v0"))
    for i in range(1, REPEATS + 1):
        assert _killed(lambda i=i: write_text(target, _file_content(f"v{i}")), point, target)
        assert target.read_text() == _file_content(f"v{i - 1}")
        remove_stale(target)  # what the unit's next try does first
        write_text(target, _file_content(f"v{i}"))
        assert target.read_text() == _file_content(f"v{i}") and stale_temps(target) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize(("point", "exchange"), [
    (FaultPoint.TEMP_WRITTEN, True),
    (FaultPoint.BEFORE_RENAME, True),
    (FaultPoint.TEMP_WRITTEN, False),
    (FaultPoint.BEFORE_RENAME, False),
    (FaultPoint.BETWEEN_RENAMES, False),
])
def test_a_folder_swap_killed_leaves_the_old_folder_or_none_never_a_mix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       point: FaultPoint, exchange: bool):
    if not exchange:  # a filesystem without RENAME_EXCHANGE: the two-rename swap
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    target = tmp_path / "lightgbm"
    _write_folder(target, "v0")
    for i in range(1, REPEATS + 1):
        assert _killed(lambda i=i: _write_folder(target, f"v{i}"), point, target)
        seen = _read_folder(target)
        if point is FaultPoint.BETWEEN_RENAMES:
            assert seen is None, "between the renames the folder is absent (a reader recomputes), never half new"
        else:
            assert seen == {_file_content(f"v{i - 1}")}
        remove_stale(target)
        assert _read_folder(target) == {_file_content(f"v{i - 1}")}, "the last whole content is back before the retry"
        _write_folder(target, f"v{i}")
        assert _read_folder(target) == {_file_content(f"v{i}")} and stale_temps(target) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lightgbm"]


def test_the_next_swap_restores_an_interrupted_one_by_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    target = tmp_path / "plan"
    _write_folder(target, "v0")
    assert _killed(lambda: _write_folder(target, "v1"), FaultPoint.BETWEEN_RENAMES, target)
    _write_folder(target, "v1")  # no sweep first: atomic_dir puts the old folder back, then swaps
    assert _read_folder(target) == {_file_content("v1")} and not (tmp_path / ".plan.old").exists()


def test_remove_stale_touches_only_what_writers_of_that_path_leave(tmp_path: Path):
    mine, other = tmp_path / "lightgbm", tmp_path / "xgboost"
    for folder in (mine, other):
        folder.mkdir()
    (tmp_path / ".lightgbm.abc123.tmp").mkdir()
    (tmp_path / ".xgboost.def456.tmp").mkdir()  # another unit's write in progress
    (tmp_path / ".lightgbm-extra.tmp").write_text("not a temp of lightgbm")
    remove_stale(mine)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lightgbm-extra.tmp", ".xgboost.def456.tmp", "lightgbm", "xgboost"]


def test_a_writer_stopped_at_its_fault_point_waits_mid_write_and_writes_on_when_continued(tmp_path: Path):
    """`TRAINPIPE_FAULT_ACTION=stop`: the writer stops with its temp written and the target untouched; a
    SIGCONT lets it finish the write (the cluster test kills the stopped pod instead)."""
    target = tmp_path / "lightgbm"
    _write_folder(target, "v0")
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.environ[FAULT_ENV] = f"{FaultPoint.TEMP_WRITTEN}:{target.name}"
            os.environ[FAULT_ACTION_ENV] = FaultAction.STOP
            _write_folder(target, "v1")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP
    assert _read_folder(target) == {_file_content("v0")}, "stopped before its rename: the old folder is whole"
    [temp] = stale_temps(target)
    assert {p.read_text() for p in temp.iterdir()} == {_file_content("v1")}, "stopped with its temp written"
    os.kill(pid, signal.SIGCONT)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert _read_folder(target) == {_file_content("v1")} and stale_temps(target) == []
