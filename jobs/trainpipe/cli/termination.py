"""The one line a stage command leaves in `--termination-log`: compact JSON on success, a reason on failure.

Kubernetes hands the file's content to the operator as the pod's termination message and keeps at most
4096 bytes of it, so every line is built to fit: optional keys are dropped first, a failure reason is
cut. Called by `trainpipe.cli.main`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainpipe.contract.exitcodes import ExitCode
from trainpipe.io.atomic import write_text

MAX_BYTES = 4096  # what Kubernetes keeps of a termination message, the newline included
LINE_BYTES = MAX_BYTES - 1
_ELLIPSIS = "…"


def success_line(report: Mapping[str, Any], optional: Sequence[str] = ()) -> str:
    """`report` as one compact JSON line of at most LINE_BYTES; the `optional` keys are dropped, in order, until it fits."""
    payload = dict(report)
    line = _compact(payload)
    for key in optional:
        if len(line.encode()) <= LINE_BYTES:
            break
        payload.pop(key, None)
        line = _compact(payload)
    if len(line.encode()) > LINE_BYTES:
        # Never cut JSON in the middle: the operator parses it. Say what it was and that it did not fit.
        line = _compact({"stage": payload.get("stage"), "truncated": True})
    return line


def failure_line(where: str, code: ExitCode, message: str) -> str:
    """`<where>: <CODE>: <message>` on one line of at most LINE_BYTES (whitespace runs collapsed, the end cut)."""
    line = " ".join(f"{where}: {code.name}: {message}".split())
    return _cut(line, LINE_BYTES)


def write_termination_log(path: Path, line: str) -> None:
    """Write the line atomically (temp file + rename) where the folder allows it, else in place with one write.

    In a pod the kubelet bind-mounts the termination-log file: renaming onto a mount point fails with
    EBUSY, and /dev may not take new files. One write() of at most 4 KiB into the existing file is read
    whole by the kubelet, which reads it only after the container has exited.
    """
    text = line + "\n"
    try:
        write_text(path, text)
    except OSError:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def _compact(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


def _cut(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    room = limit - len(_ELLIPSIS.encode())
    # Cut on a character boundary: a split UTF-8 sequence would make the message undecodable.
    return data[:room].decode(errors="ignore") + _ELLIPSIS
