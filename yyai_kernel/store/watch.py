"""StoreWatcher: notice archives that appear, change or go in the store folder.

It polls the folder's listing (name, size, mtime of every ``*.yyar``, and of the state
file ``.yyai-state.json``, so that a pin written by another process is noticed too) every
few seconds. Polling, rather than inotify, also works for a store on NFS or a mounted
volume, which is where a store lives on a cluster. The callback runs on the watcher's
own daemon thread; an error in it is logged and the watcher carries on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from yyai_kernel.store.store import STATE_FILE

log = logging.getLogger("yyai.registry")


class StoreWatcher:
    """Calls ``on_change()`` when the folder's archives differ from the last poll."""

    def __init__(self, root: Path, interval: float, on_change: Callable[[], None]):
        self.root = Path(root)
        self.interval = interval
        self.on_change = on_change
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="yyai-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        last = folder_signature(self.root)
        while not self._stopped.wait(self.interval):
            current = folder_signature(self.root)
            if current == last:
                continue
            last = current
            try:
                self.on_change()
            except Exception as error:  # noqa: BLE001 - the watcher must outlive any one bad archive
                log.error("Reload after a store change failed: %s", error)


def folder_signature(root: Path) -> frozenset[tuple[str, int, int, int]]:
    """(name, size, mtime, inode) of every archive in the folder and of its state file.

    The inode counts because the store replaces files atomically (``os.replace``): a
    rewrite within the file system's mtime resolution still changes it.
    """
    signature: set[tuple[str, int, int, int]] = set()
    for path in [*Path(root).glob("*.yyar"), Path(root) / STATE_FILE]:
        try:
            stat = path.stat()
        except OSError:
            continue
        signature.add((path.name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return frozenset(signature)
