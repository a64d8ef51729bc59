"""Content digests that key the stage cache: data files, config sections and the code version."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import trainpipe

_CHUNK = 1 << 20


def digest_json(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def digest_files(paths: Iterable[Path]) -> str:
    """Digest of file contents (and their names, so a renamed symbol counts as a change)."""
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        h.update(path.name.encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """`<version>+<digest of the package's .py files>`: any code change invalidates cached stages."""
    root = Path(trainpipe.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return f"{trainpipe.__version__}+{h.hexdigest()[:12]}"
