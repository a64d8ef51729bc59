"""Hand freed heap memory back to the operating system between the phases of a stage.

Two allocators hold on to freed memory by default. mimalloc (inside CatBoost and pyarrow) keeps freed
pages for a while before purging them: CatBoost's pages after one fit on 160,000 rows stayed resident
at twice the size of its input. `configure()` sets its purge delay to zero; mimalloc reads the variable
when the library loads, so it runs on `import trainpipe`, before either library is imported. A value
set by the user wins.

glibc keeps freed blocks in per-thread arenas; the model libraries allocate from their own worker
threads, so memory one library freed is often not reused by the next and the resident set only
grows. `malloc_trim(0)` returns every arena's free pages. It costs about 0.02 ms, but it walks every
arena, so stages call it between phases (after a fold, a target or a method), never inside a loop over
rows or trees.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

MIMALLOC_SETTINGS = {"MIMALLOC_PURGE_DELAY": "0"}


def configure() -> None:
    for name, value in MIMALLOC_SETTINGS.items():
        os.environ.setdefault(name, value)


@functools.cache
def _trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def release() -> None:
    """Return freed heap memory to the OS (glibc); a no-op elsewhere."""
    trim = _trim()
    if trim is not None:
        trim(0)
