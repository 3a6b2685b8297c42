"""DefaultVersions: which version of each model answers requests that name none.

The store says which version should be the default: the pinned one, else the latest. A
new default (an upload, a rescan, an unpin) takes over only once it serves, so that
requests naming no version keep going to the old one and never meet a 503 during the
swap. A model whose archive became unreadable keeps its old default while that serves.
The registry guards this object with its own lock and refreshes it after every load.
:func:`default_reason` says why, as a typed :class:`~yyai_kernel.types.DefaultReason`
that each front end words (no interface's words are written here).
"""

from __future__ import annotations

from collections.abc import Callable

from yyai_kernel.store.store import ModelStore
from yyai_kernel.types import DefaultReason, DefaultWhy


class DefaultVersions:
    """``{name: version}``, recomputed from the store by :meth:`refresh`."""

    def __init__(self) -> None:
        self._defaults: dict[str, int] = {}

    def get(self, name: str) -> int | None:
        return self._defaults.get(name)

    def set(self, name: str, version: int) -> None:
        """A version that serves now and was just pinned."""
        self._defaults[name] = version

    def refresh(self, store: ModelStore, serves: Callable[[str, int | None], bool]) -> None:
        """The store's defaults, except where the old default serves and the new one does not yet."""
        defaults = {name: store.default_version(name) for name in store.names()}
        for name, version in self._defaults.items():
            if serves(name, version) and (name not in defaults or not serves(name, defaults[name])):
                defaults[name] = version
        self._defaults = defaults


def default_reason(name: str, default: int | None, pin: int | None, latest: int | None) -> DefaultReason:
    """Which version answers requests that name none, and why, as data each front end words."""
    if default is None:
        why = DefaultWhy.NO_VERSION
    elif pin is not None:
        why = DefaultWhy.PINNED
    elif latest is not None and default != latest:
        why = DefaultWhy.WAITING
    else:
        why = DefaultWhy.LATEST
    return DefaultReason(why, name, default, latest)


def stages(promote: bool | None, auto_promote: bool, pinned: bool, protected: bool) -> bool:
    """Whether a new version of an existing model waits to be promoted, the default staying.

    An upload's own ``promote`` wins. Otherwise a model that is pinned, or ``protected``
    (a label or a traffic policy names its versions: a comparison is in progress), never
    has its default replaced by a new version; the others follow the latest, unless the
    server stages every new version (``auto_promote`` off).
    """
    if promote is not None:
        return not promote
    return pinned or protected or not auto_promote
