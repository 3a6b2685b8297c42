"""ModelTable: the registry's state and its reads: name map, defaults, store, loading one version.

The lower half of :class:`~yyai_kernel.registry.registry.Registry`. It keeps the name map (one
:class:`~yyai_kernel.registry.versions.ModelVersions` per model, which owns that model's slots,
loads and swaps), each model's default version, and the store, and it answers the reads
(names, status, records, descriptions, which version a request means: a number, a
label, or the default). Loading one version and reloading what serves are here too,
since the reads' defaults follow them. What changes the models (predicting, managing,
labels and traffic, following the store) is the Registry's.

Locking: ``_lock`` (re-entrant) guards the name map, the defaults and every store access;
it is held only for bookkeeping, never across a model load. Each model's ``load_lock``
serializes that model's loads (different models load in parallel). Predictions take no
lock beyond reading a reference. The order is always ``load_lock`` then ``_lock``, never
the reverse.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from yyai_kernel.config import ServingConfig, serving_config
from yyai_kernel.errors import ModelNotFoundError
from yyai_kernel.registry.defaults import DefaultVersions, default_reason
from yyai_kernel.registry.protocol import resolve_version, unknown_name
from yyai_kernel.registry.versions import LoadSettings, ModelVersions, StatsObserver
from yyai_kernel.store.store import ArchiveRecord, ModelStore
from yyai_kernel.types import ModelStatus, ModelSummary, ServerStatus, StoreProblemInfo, VersionDescription


class ModelTable:
    """Every model and version of a :class:`ModelStore`, as this process serves them (see the module docstring)."""

    def __init__(self, store: ModelStore, config: ServingConfig | None = None, *,
                 observer: StatsObserver | None = None, **settings):
        self.store = store
        self.config = serving_config(config, **settings)
        self.observer = observer  # told of every model call and batch (the server's metrics)
        self._models: dict[str, ModelVersions] = {}
        self._defaults = DefaultVersions()
        self._lock = threading.RLock()
        with self._lock:
            self.store.scan()
            self._refresh_defaults()

    # --- reading ------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every model name the store holds or the registry has loaded."""
        with self._lock:
            return sorted(set(self.store.names()) | set(self._models))

    def list(self) -> list[ModelSummary]:
        """A short line per model: versions in the store, the default, the loaded versions."""
        with self._lock:
            return [ModelSummary(name, tuple(self._store_versions(name)), self._defaults.get(name),
                                 tuple(self._models[name].loaded()) if name in self._models else ())
                    for name in self.names()]

    def status(self, name: str | None = None) -> ModelStatus | ServerStatus:
        """Everything known about one model, or about all of them plus the store's problems."""
        if name is not None:
            return self._model_status(name)
        with self._lock:
            problems = tuple(StoreProblemInfo(str(p.path), p.kind, p.error) for p in self.store.problems)
            state_error = self.store.state_error
        return ServerStatus({n: self._model_status(n) for n in self.names()}, problems, state_error)

    def record(self, name: str, version: int | str | None = None) -> ArchiveRecord:
        """The store's record (path, checksum, manifest) of a version (default: the default)."""
        version = self.resolve_version(name, version)
        with self._lock:
            return self.store.record(name, version)

    def describe(self, name: str, version: int | str | None = None) -> VersionDescription:
        """What a version takes and gives: input spec, output spec, members."""
        return self.record(name, version).describe()

    def resolve_version(self, name: str, version: int | str | None = None) -> int:
        """The version a request means: the given one (checked), the one a label names, or the default."""
        with self._lock:
            known = set(self._store_versions(name))
            if name in self._models:
                known |= set(self._models[name].slots)
            return resolve_version(name, version, known, self._defaults.get(name), self.names,
                                   lambda label: self.store.label(name, label))

    def close(self) -> None:
        """Stop every batcher: nothing serves afterwards."""
        with self._lock:
            models = list(self._models.values())
        for model in models:
            model.close()

    # --- internals ----------------------------------------------------------------------

    def _model(self, name: str, *, create: bool = False) -> ModelVersions:
        with self._lock:
            model = self._models.get(name)
            if model is None:
                if not create and name not in self.store.names():
                    raise ModelNotFoundError(unknown_name(name, self.names()))
                model = self._models[name] = ModelVersions(name, self.observer)
            return model

    def _load_default(self, model: ModelVersions) -> None:
        """Load the store's default of a model unless it serves already. Caller holds model.load_lock."""
        with self._lock:
            self._refresh_defaults()
            default = self.store.default_version(model.name) if model.name in self.store.names() else None
        if default is not None and model.serving(default) is None:
            self._load_version(model, default, force=False)

    def _served_versions(self, name: str) -> list[int]:
        """The default, then the versions the labels and the traffic policy name. Caller holds _lock."""
        policy = self.store.traffic(name)
        named = set(self.store.labels(name).values()) | set(policy.versions().values() if policy else ())
        default = self._defaults.get(name)
        return [default] + sorted(v for v in named & set(self._store_versions(name)) if v != default)

    def _store_versions(self, name: str) -> list[int]:
        return list(self.store.versions(name)) if name in self.store.names() else []

    def _refresh_defaults(self) -> None:
        """Recompute every default from the store (see :class:`DefaultVersions`). Caller holds _lock."""
        self._defaults.refresh(self.store, self._serves)

    def _serves(self, name: str, version: int | None) -> bool:
        model = self._models.get(name)
        return model is not None and version is not None and model.serving(version) is not None

    def _reload_locked(self, model: ModelVersions, force: bool) -> ModelStatus:
        """Reload what serves and load the (possibly new) default. Caller holds model.load_lock."""
        with self._lock:
            in_store = set(self._store_versions(model.name))
            # the store's default, which may not serve yet (see DefaultVersions.refresh)
            default = self.store.default_version(model.name) if in_store else self._defaults.get(model.name)
            problems = {v: self.store.problem_of(model.slots[v].path) for v in model.loaded() if v not in in_store}
        model.reconcile(in_store, default, problems, lambda v: self._load_version(model, v, force=force))
        return self._model_status(model.name)

    def _load_version(self, model: ModelVersions, version: int, *, force: bool) -> None:
        """Load one version off the serving path and swap it in. Caller holds model.load_lock."""
        with self._lock:
            record = self.store.record(model.name, version)
        batch_size, delay_ms = self.config.batching_for(record.manifest.batching)
        settings = LoadSettings(self.config.is_trusted(model.name), self.config.batching, batch_size, delay_ms)
        if model.load(version, record.path, record.sha256, settings, force=force):
            with self._lock:
                self._refresh_defaults()  # a new default waiting for this load takes over now

    def _model_status(self, name: str) -> ModelStatus:
        with self._lock:
            model = self._models.get(name)
            records = {v: self.store.record(name, v) for v in self._store_versions(name)}
            if model is None and not records:
                raise ModelNotFoundError(unknown_name(name, self.names()))
            default, pin = self._defaults.get(name), self.store.pins().get(name)
            labels, traffic = self.store.labels(name), self.store.traffic(name)
        model = model or ModelVersions(name)
        reason = default_reason(name, default, pin if pin in records else None, max(records, default=None))
        status = model.status({v: r.manifest for v, r in records.items()}, default, pin is not None, reason)
        return replace(status, labels=labels, traffic=traffic)
