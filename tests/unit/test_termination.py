"""SIGTERM (a pod deleted or evicted) stops a stage command cleanly: exit 143, temp files removed, the worker stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trainpipe.cli import main as cli
from trainpipe.contract.exitcodes import PERMANENT_EXIT_CODES, ExitCode
from trainpipe.termination import EXIT_TERMINATED, Terminated

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from trainpipe.io.atomic import atomic_path
    from trainpipe.termination import EXIT_TERMINATED, Terminated, sigterm_raises
    try:
        with sigterm_raises():
            with atomic_path(Path(sys.argv[1]) / "model.bin") as tmp:
                tmp.write_text("half a model")
                print("writing", flush=True)
                time.sleep(60)
    except Terminated:
        sys.exit(EXIT_TERMINATED)
""")


def _start_and_wait_for_line(argv: list[str], line: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == line
    return proc


def test_sigterm_during_an_atomic_write_leaves_no_file_and_exits_143(tmp_path: Path) -> None:
    proc = _start_and_wait_for_line([sys.executable, "-c", WRITER, str(tmp_path)], "writing")
    assert [p.name for p in tmp_path.iterdir()][0].endswith(".tmp")  # the temp file exists while it writes
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == EXIT_TERMINATED == 143
    assert time.monotonic() - sent < 5, "SIGTERM must stop the command at once, well within a pod's grace period"
    assert list(tmp_path.iterdir()) == [], "neither the model nor its temp file may be left behind"


def test_terminated_is_retried_by_the_jobs_not_a_permanent_failure() -> None:
    assert ExitCode.TERMINATED == EXIT_TERMINATED and ExitCode.TERMINATED.retriable
    assert int(ExitCode.TERMINATED) not in PERMANENT_EXIT_CODES


def test_the_cli_reports_sigterm_in_the_termination_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def terminated(*_: object) -> dict:
        raise Terminated("received SIGTERM: the pod was deleted or evicted")

    monkeypatch.setattr(cli, "_dispatch", terminated)
    log = tmp_path / "termination-log"
    code = cli.main(["rank", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out"), "--termination-log", str(log)])
    assert code == 143
    assert log.read_text().startswith("rank: TERMINATED: received SIGTERM")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the CLI's only while a stage runs


def test_a_terminated_training_stage_stops_its_worker(tmp_path: Path) -> None:
    """The worker subprocess never outlives the stage process, even when SIGTERM reaches the stage alone."""
    script = textwrap.dedent("""
        import subprocess, sys, time
        from pathlib import Path
        from trainpipe.termination import EXIT_TERMINATED, Terminated, sigterm_raises
        from trainpipe.training import stage
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        Path(sys.argv[1]).write_text(str(proc.pid))
        try:
            with sigterm_raises():
                try:
                    print("waiting", flush=True)
                    proc.wait()
                except BaseException:
                    stage._stop(proc)
                    raise
        except Terminated:
            sys.exit(EXIT_TERMINATED)
    """)
    pid_file = tmp_path / "worker.pid"
    proc = _start_and_wait_for_line([sys.executable, "-c", script, str(pid_file)], "waiting")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 143
    worker = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)


def test_the_termination_log_is_written_without_pandas(tmp_path: Path) -> None:
    """SIGTERM may land while pandas is half imported (a pod deleted in its first seconds): the failure line
    must still be written, so the code that writes it may not import pandas."""
    script = ("import sys; sys.modules['pandas'] = None\n"  # any `import pandas` now fails
              "from pathlib import Path\n"
              "from trainpipe.cli.termination import failure_line, write_termination_log\n"
              "from trainpipe.contract.exitcodes import ExitCode\n"
              "write_termination_log(Path(sys.argv[1]), failure_line('rank', ExitCode.TERMINATED, 'received SIGTERM'))\n")
    log = tmp_path / "termination-log"
    subprocess.run([sys.executable, "-c", script, str(log)], check=True)
    assert log.read_text() == "rank: TERMINATED: received SIGTERM\n"
