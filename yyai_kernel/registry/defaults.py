"""DefaultVersions: which version of each model answers requests that name none.

The store says which version should be the default: the pinned one, else the latest. A
new default (an upload, a rescan, an unpin) takes over only once it serves, so that
requests naming no version keep going to the old one and never meet a 503 during the
swap. A model whose archive became unreadable keeps its old default while that serves.
The registry guards this object with its own lock and refreshes it after every load.
"""

from __future__ import annotations

from typing import Callable


class DefaultVersions:
    """``{name: version}``, recomputed from the store by :meth:`refresh`."""

    def __init__(self):
        self._defaults: dict[str, int] = {}

    def get(self, name: str) -> int | None:
        return self._defaults.get(name)

    def set(self, name: str, version: int) -> None:
        """A version that serves now and was just pinned."""
        self._defaults[name] = version

    def refresh(self, store, serves: Callable[[str, int | None], bool]) -> None:
        """The store's defaults, except where the old default serves and the new one does not yet."""
        defaults = {name: store.default_version(name) for name in store.names()}
        for name, version in self._defaults.items():
            if serves(name, version) and (name not in defaults or not serves(name, defaults[name])):
                defaults[name] = version
        self._defaults = defaults


def default_reason(name: str, default: int | None, pin: int | None, latest: int | None) -> str:
    """Which version answers requests that name none, and why, for people."""
    if default is None:
        return "no version is in the store"
    if pin is not None:
        why = f"v{default} is the default: pinned"
        if latest is not None and latest != pin:
            why += f" (v{latest} is newer; DELETE /models/{name}/default to follow the latest)"
        return why
    if latest is not None and default != latest:
        return f"v{default} stays the default until v{latest}, the latest, serves"
    return f"v{default} is the default: the latest version"
