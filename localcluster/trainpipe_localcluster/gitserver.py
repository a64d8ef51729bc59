"""A local Git smart-HTTP server for the GitOps tests: `git http-backend` behind a small threaded HTTP server.

Flux's source-controller clones over HTTP(S) or SSH only; this serves the bare repositories under one
folder at http://127.0.0.1:<port>/<name>.git with nothing but git and the standard library. Read-only
(clone and fetch); tests push by committing in the bare repository's work tree directly.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _backend() -> str:
    found = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
    return str(Path(found) / "git-http-backend")


class GitServer:
    """Serves `root/<name>.git` bare repositories until `stop()`."""

    def __init__(self, root: Path) -> None:
        if shutil.which("git") is None:
            raise RuntimeError("git is not on PATH: the GitOps tests serve a repository with git http-backend")
        self.root = root
        backend = _backend()
        project_root = str(root)

        class Handler(BaseHTTPRequestHandler):
            def _cgi(self) -> None:
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {"GIT_PROJECT_ROOT": project_root, "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
                       "REQUEST_METHOD": self.command, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                       "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": self.client_address[0], "PATH": "/usr/bin:/bin",
                       "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""), "GIT_PROTOCOL": self.headers.get("Git-Protocol", "")}
                done = subprocess.run([backend], input=body, env=env, capture_output=True, timeout=120, check=False)
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                if not _:
                    head, _, payload = done.stdout.partition(b"\n\n")
                status, headers = 200, []
                for line in head.decode(errors="replace").splitlines():
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _cgi

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 -- the base class's name
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` with a fixed identity; its stdout."""
    env = {"GIT_AUTHOR_NAME": "trainpipe tests", "GIT_AUTHOR_EMAIL": "tests@trainpipe.invalid", "GIT_COMMITTER_NAME": "trainpipe tests",
           "GIT_COMMITTER_EMAIL": "tests@trainpipe.invalid", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=60).stdout
