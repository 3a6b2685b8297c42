"""`!yyai evaluate ...` in a real notebook (nbclient): the output has no cursor-movement codes.

ipykernel runs a `!` command under a pseudo-terminal with ``FORCE_COLOR=1``, so a progress
bar that trusts the terminal redraws itself with cursor codes, which a notebook keeps as
text (issue #23). The table and its colours are fine; redrawing is not.
"""

from __future__ import annotations

import re
import shutil
import sys
import textwrap
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
# cursor up/down, erase line, hide/show cursor, carriage return: what a redrawing bar writes
REDRAW = re.compile(r"\x1b\[\d*[ABK]|\x1b\[\?25[lh]|\x1b\[2K|\r(?!\n)")


def test_evaluate_in_a_notebook_writes_no_cursor_codes(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(ROOT / "model_archives" / "digits-1.yyar", store)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(f"""
        !{sys.executable} -m yyai_kernel.cli evaluate digits:1 --data bundled --store {store} --batch-size 16
        print("exit", _exit_code)
    """).strip())]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.output_type == "stream")
    assert "exit 0" in text, text
    assert "accuracy" in text and "0.9650" in text, text  # the table came through
    assert not REDRAW.search(text), repr(text[:2000])
