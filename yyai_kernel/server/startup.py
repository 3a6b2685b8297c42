"""What a server process does for its operator at start: announce the token, sweep stale temp folders.

Shared by the single server (``app.py``) and the supervisor of ``--workers N``
(``workers/supervisor.py``), each of which names its temporary folder ``TMP_PREFIX`` plus
its process id, so that a later start can tell a dead server's folder from a live one's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

TMP_PREFIX = "yyai-server-"


def announce_token(log, url: str, token: str, *, generated: bool) -> None:
    """Print how to reach the server: the dashboard URL with its token, or a loud warning without one."""
    if token:
        visible = token if generated else "..."
        log.info(
            "\n\n    To open the dashboard, copy and paste this URL into a browser:\n"
            "        %s?token=%s\n"
            "    REST clients send the header  'Authorization: token %s'\n",
            url, visible, visible,
        )
    else:
        log.warning(
            "\n\n    %s\n"
            "    !!  AUTHENTICATION IS OFF (--no-token).\n"
            "    !!  Anyone who can reach %s can upload, load and delete models.\n"
            "    !!  Use this only on a machine you trust, bound to 127.0.0.1.\n"
            "    %s\n",
            "!" * 72, url, "!" * 72,
        )


def sweep_stale_temp_dirs(log=None) -> list[Path]:
    """Remove temporary folders left by yyai servers that died without cleaning up (kill -9).

    Each server's folder is named after its process id; a folder whose process is gone
    holds only half-received uploads, which nothing will ever read.
    """
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*-*"):
        try:
            pid = int(path.name[len(TMP_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or _process_alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed and log is not None:
        log.info("Removed %d temporary folder(s) left by stopped servers.", len(removed))
    return removed



def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
