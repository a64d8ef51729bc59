#!/usr/bin/env python3
"""Replace one marked section of a shared Markdown file (README.md, BENCHMARKS.md) with stdin.

Usage: hack/write-section.py FILE NAME < content
Only the text between `<!-- NAME:start -->` and `<!-- NAME:end -->` changes; other owners' content
stays byte for byte. Missing markers are appended at the end; a missing file is created.
"""

import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, name = Path(sys.argv[1]), sys.argv[2]
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = sys.stdin.read().strip("\n")
    text = path.read_text() if path.exists() else ""
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text and text.index(start) < text.index(end):
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    elif start in text or end in text:
        print(f"{path}: only one of {start} / {end} is present; fix the file by hand", file=sys.stderr)
        return 1
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
