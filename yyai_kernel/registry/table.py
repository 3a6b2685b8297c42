"""ModelTable: what the registry knows about its models in memory, and the views requests read.

The table owns three things: the name map (one :class:`~yyai_kernel.registry.versions.ModelVersions`
per model, which owns that model's slots, loads and swaps), each model's default version
(:class:`~yyai_kernel.registry.defaults.DefaultVersions`), and one
:class:`~yyai_kernel.registry.protocol.ModelView` per model, rebuilt from the store by
:meth:`refresh` whenever the store or a default changes. The registry composes it with the
store and does the I/O; the table never reads a file.

Locking: ``_lock`` guards the name map, the defaults and the views. It is held only for
memory work (never across a store write, a scan or a model load), so that a request never
waits for a disk. Requests do not take it at all: :meth:`view` reads the current view of a
model in one dictionary lookup, and views are immutable. ``listeners`` are told, outside
the lock, each time the views were rebuilt (the model host pushes them to its front ends).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from yyai_kernel.errors import ModelNotFoundError
from yyai_kernel.registry.defaults import DefaultVersions, default_reason
from yyai_kernel.registry.protocol import ModelView, unknown_name, views_of
from yyai_kernel.registry.versions import ModelVersions, StatsObserver
from yyai_kernel.store.store import ModelStore
from yyai_kernel.types import ModelStatus, ModelSummary


class ModelTable:
    """The name map, the defaults and the views of one registry (see the module docstring)."""

    def __init__(self, store: ModelStore, observer: StatsObserver | None = None):
        self.store = store
        self.observer = observer  # told of every model call and batch (the server's metrics)
        self._models: dict[str, ModelVersions] = {}
        self._defaults = DefaultVersions()
        self._views: dict[str, ModelView] = {}
        self._lock = threading.RLock()
        self.listeners: list[Callable[[], None]] = []
        self.refresh()

    # --- reading (no lock on the request path) ---------------------------------------------

    def view(self, name: str) -> ModelView | None:
        """The model's current view, or None when neither the store nor a runtime holds it."""
        return self._views.get(name)

    def views(self) -> dict[str, ModelView]:
        """Every model's current view (one consistent picture)."""
        return dict(self._views)

    def versions(self, name: str) -> ModelVersions | None:
        """The model's version slots, or None when nothing of it was ever loaded here."""
        return self._models.get(name)

    def names(self) -> list[str]:
        """Every model name the store holds or this process has loaded (a slot left by a request that
        raced the model's removal, serving nothing, names no model)."""
        with self._lock:
            return sorted(set(self._views) | {name for name, model in self._models.items() if model.loaded()})

    def default(self, name: str) -> int | None:
        return self._defaults.get(name)

    def unknown(self, name: str) -> ModelNotFoundError:
        return ModelNotFoundError(unknown_name(name, self.names()))

    # --- changes (memory only) ------------------------------------------------------------------

    def refresh(self) -> None:
        """Recompute every default from the store (see :class:`DefaultVersions`) and rebuild the views."""
        with self._lock:
            self._defaults.refresh(self.store, self._serves)
            serving = [slot.record for model in self._models.values() for slot in model.slots.values()
                       if slot.serving is not None and slot.record is not None]
            self._views = views_of(self.store, self._defaults.get, serving)
        for listener in self.listeners:
            listener()

    def pinned(self, name: str, version: int) -> None:
        """``version`` serves and was just pinned: it is the default from now on."""
        with self._lock:
            self._defaults.set(name, version)
        self.refresh()

    def ensure(self, name: str, *, create: bool = False) -> ModelVersions:
        """The model's version slots; new ones for a model the store holds (or with ``create``)."""
        with self._lock:
            model = self._models.get(name)
            if model is None:
                if not create and name not in self._views:
                    raise self.unknown(name)
                model = self._models[name] = ModelVersions(name, self.observer)
            return model

    def drop(self, name: str) -> bool:
        """Forget a model that neither the store nor any slot holds any more; whether it went."""
        with self._lock:
            model = self._models.get(name)
            if name in self._views or (model is not None and model.slots):
                return False
            self._models.pop(name, None)
            return True

    def all(self) -> list[ModelVersions]:
        with self._lock:
            return list(self._models.values())

    def _serves(self, name: str, version: int | None) -> bool:
        model = self._models.get(name)
        return model is not None and version is not None and model.serving(version) is not None

    # --- statuses --------------------------------------------------------------------------------

    def summaries(self) -> list[ModelSummary]:
        """A short line per model: versions in the store, the default, the loaded versions."""
        lines = []
        for name in self.names():
            view, model = self._views.get(name), self._models.get(name)
            lines.append(ModelSummary(name, tuple(sorted(view.stored)) if view else (), self._defaults.get(name),
                                      tuple(model.loaded()) if model else ()))
        return lines

    def status(self, name: str) -> ModelStatus:
        """Everything known about one model: its versions, the default and why, labels and policy."""
        view, model = self._views.get(name), self._models.get(name)
        if view is None and (model is None or not model.slots):
            raise self.unknown(name)
        records = {v: r for v, r in view.records.items() if v in view.stored} if view else {}
        default, pin = self._defaults.get(name), self.store.pins().get(name)
        reason = default_reason(name, default, pin if pin in records else None, max(records, default=None))
        status = (model or ModelVersions(name)).status({v: r.manifest for v, r in records.items()}, default,
                                                       pin is not None, reason)
        return replace(status, labels=dict(view.labels) if view else {}, traffic=view.policy if view else None)
