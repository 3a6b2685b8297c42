"""Replace one ``## `` section of bench/RESULTS.md, leaving every other section as it is.

Each bench owns one level-2 section of the results file (the peer comparison, HTTP
overhead, the soak ...) and rewrites only that one, so the benches can run in any order
and a partial rerun never loses another bench's numbers. The file is replaced atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


def replace_section(section: str, path: Path = RESULTS_MD) -> None:
    """Put ``section`` (markdown starting with its ``## heading`` line) into ``path``.

    The old section with the same heading, up to the next ``## `` heading, is replaced;
    a new heading is appended at the end.
    """
    heading = section.lstrip().splitlines()[0].strip()
    if not heading.startswith("## "):
        raise ValueError(f"a section must start with a '## ' heading, not {heading!r}")
    lines = path.read_text().splitlines() if path.exists() else []
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    new = section.strip("\n").splitlines()
    if start is None:
        lines = lines + ([""] if lines else []) + new
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines = lines[:start] + new + ([""] if end < len(lines) else []) + lines[end:]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".md")
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
