"""The termination-log line: one compact JSON on success, one reason on failure, never over Kubernetes' 4096 bytes."""

from __future__ import annotations

import errno
import json

import pytest

from trainpipe.cli import termination
from trainpipe.cli.termination import MAX_BYTES, failure_line, success_line, write_termination_log
from trainpipe.contract.exitcodes import ExitCode


def test_success_is_one_compact_json_line() -> None:
    line = success_line({"stage": "rank", "selected": 2, "targets": ["fwd_ret_1d", "y_up_1d"]}, optional=("targets",))
    assert line == '{"stage":"rank","selected":2,"targets":["fwd_ret_1d","y_up_1d"]}'


@pytest.mark.parametrize(
    ("n_targets", "kept"),
    [
        (3, True),  # fits: target names included
        (400, False),  # 400 names of ~40 bytes do not fit: dropped, the count stays
    ],
)
def test_optional_keys_are_dropped_to_fit(n_targets, kept) -> None:
    targets = [f"fwd_ret_{i}_with_a_rather_long_name_{i:04d}" for i in range(n_targets)]
    line = success_line({"stage": "rank", "selected": n_targets, "targets": targets}, optional=("targets",))
    assert len(line.encode()) + 1 <= MAX_BYTES
    report = json.loads(line)
    assert report["selected"] == n_targets and ("targets" in report) is kept


def test_a_report_that_cannot_fit_stays_valid_json() -> None:
    line = success_line({"stage": "plan", "units": {f"f{i}": i for i in range(2000)}})
    assert json.loads(line) == {"stage": "plan", "truncated": True}


@pytest.mark.parametrize(
    ("message", "expected_start"),
    [
        ("short reason", "select unit 2 (target fwd_ret_5d): BAD_DATA: short reason"),
        ("line one\n  line two\ttabbed", "select unit 2 (target fwd_ret_5d): BAD_DATA: line one line two tabbed"),
    ],
)
def test_failure_is_one_line_naming_where_and_the_code(message, expected_start) -> None:
    assert failure_line("select unit 2 (target fwd_ret_5d)", ExitCode.BAD_DATA, message) == expected_start


@pytest.mark.parametrize("char", ["x", "é", "€", "😀"])  # 1-, 2-, 3- and 4-byte UTF-8
def test_long_failure_is_cut_on_a_character_boundary(char) -> None:
    line = failure_line("cpu family lightgbm unit 3", ExitCode.UNIT_FAILED, char * 10_000)
    data = line.encode()
    assert len(data) + 1 <= MAX_BYTES and line.endswith("…")
    assert data.decode() == line and "\n" not in line


def test_written_atomically_with_a_trailing_newline(tmp_path) -> None:
    path = tmp_path / "termination-log"
    path.write_text("old content that is much longer than the new line\n")
    write_termination_log(path, '{"stage":"plan"}')
    assert path.read_text() == '{"stage":"plan"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["termination-log"]  # no temp file left behind


def test_falls_back_to_one_write_in_place_when_rename_is_refused(tmp_path, monkeypatch) -> None:
    # In a pod the file is a bind mount: rename onto it fails with EBUSY.
    def busy(path, text):
        raise OSError(errno.EBUSY, "Device or resource busy", str(path))

    monkeypatch.setattr(termination, "write_text", busy)
    path = tmp_path / "termination-log"
    path.write_text("previous attempt's reason, longer than this line\n")
    write_termination_log(path, '{"stage":"rank","selected":1}')
    assert path.read_text() == '{"stage":"rank","selected":1}\n'
