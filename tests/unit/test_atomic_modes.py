"""Files and folders written atomically get the mode a plain open()/mkdir() gives, not the temp file's private one.

Stage pods of other users read them on a shared volume (a GPU node's pod, the report, a person's shell):
a 0600 model file reads as "Permission denied" to all of them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd

from trainpipe.io.atomic import DIR_MODE, FILE_MODE, atomic_dir, write_json, write_parquet, write_text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_take_the_umask_mode(tmp_path: Path) -> None:
    write_text(tmp_path / "a.txt", "x")
    write_json(tmp_path / "b.json", {"k": 1})
    write_parquet(tmp_path / "c.parquet", pd.DataFrame({"x": [1]}))
    with atomic_dir(tmp_path / "model") as folder:
        (folder / "weights.bin").write_bytes(b"w")
    assert {mode(tmp_path / n) for n in ("a.txt", "b.json", "c.parquet")} == {FILE_MODE}
    assert mode(tmp_path / "model") == DIR_MODE


def test_with_the_usual_umask_everyone_can_read_what_a_stage_wrote(tmp_path: Path) -> None:
    script = ("import sys; from pathlib import Path; from trainpipe.io.atomic import write_text, atomic_dir\n"
              "root = Path(sys.argv[1]); write_text(root / 'm.json', '{}')\n"
              "with atomic_dir(root / 'model'): pass\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=os.environ,
                   preexec_fn=lambda: os.umask(0o022))
    assert mode(tmp_path / "m.json") == 0o644 and mode(tmp_path / "model") == 0o755
