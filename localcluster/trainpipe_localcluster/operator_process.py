"""The operator as a subprocess of a test or benchmark (`python -m trainpipe_operator`), started ready."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from trainpipe_localcluster.kube import free_port, http_get


class OperatorProcess:
    """`python -m trainpipe_operator` as a subprocess of a test: started ready, signalled, restarted, stopped.

    Its output is appended to `log_path` (each start marked), which a failed test's dump includes.
    Each start picks a fresh free port, so `port` and `pid` change on restart.
    """

    def __init__(self, kubeconfig: Path, log_path: Path, namespaces: Sequence[str] = (),
                 extra_args: Sequence[str] = (), python: str = sys.executable, ready_timeout: float = 90.0,
                 env: Mapping[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.env = dict(env or {})  # more variables (a benchmark's PYTHONPATH to another checkout's operator)
        self.log_path = log_path
        self.namespaces = list(namespaces)
        self.extra_args = list(extra_args)
        self.python = python
        self.ready_timeout = ready_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the operator has not been started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        argv = [self.python, "-m", "trainpipe_operator", "--kubeconfig", str(self.kubeconfig), "--port", str(self.port)]
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        return argv + self.extra_args

    def start(self) -> OperatorProcess:
        """Start the process and return once /readyz answers 200."""
        if self.running:
            raise RuntimeError(f"the operator is already running (pid {self.pid})")
        self.port = free_port()
        argv = self.argv()
        # KUBECONFIG as well as the flag: the kubernetes client (and kopf's login through it) reads the
        # variable. Unbuffered, so the log is complete up to the moment a test looks.
        env = os.environ | self.env | {"KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"===== {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        self.wait_ready()
        return self

    def get(self, path: str) -> tuple[int, str]:
        """GET one of the operator's HTTP endpoints (/metrics, /healthz, /readyz)."""
        return http_get(self.url + path)

    def wait_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        while time.monotonic() < deadline:
            if not self.running:
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"the operator exited with {code} before it was ready; {self.log_path} ends with:\n"
                                   + self.log_tail())
            if self.get("/readyz")[0] == 200:
                return
            time.sleep(0.2)
        raise TimeoutError(f"the operator (pid {self.pid}) is not ready at {self.url}/readyz after "
                           f"{timeout or self.ready_timeout:.0f}s; {self.log_path} ends with:\n" + self.log_tail())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig`; after SIGKILL, also wait until the process is gone."""
        if not self.running:
            raise RuntimeError("the operator is not running")
        os.kill(self.pid, sig)
        if sig == signal.SIGKILL:
            self.wait()

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit; its exit code (-N: killed by signal N)."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def restart(self) -> OperatorProcess:
        """Stop (if running) and start again; returns once the new process is ready."""
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


