"""Content digests that key the stage cache: data files, config sections and the code version."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import trainpipe
from trainpipe.io.objectstore import ObjectPath

_CHUNK = 1 << 20


def digest_json(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def digest_files(paths: Iterable[Path | ObjectPath]) -> str:
    """Digest of file contents (and their names, so a renamed symbol counts as a change).

    Objects on a store are keyed by name, size and last-modified time instead of their bytes: reading a
    whole data set back to hash it would cost what the run itself costs (see ObjectPath.fingerprint).
    """
    h = hashlib.sha256()
    given = list(paths)
    objects = sorted(p for p in given if isinstance(p, ObjectPath))
    for path in sorted(Path(p) for p in given if not isinstance(p, ObjectPath)):
        h.update(path.name.encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                h.update(chunk)
    for obj in objects:
        h.update(obj.name.encode())
        h.update(obj.fingerprint().encode())
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
