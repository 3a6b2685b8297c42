"""Registry: model name -> versions -> live runtime, with zero-downtime hot reload.

The registry is the one place that decides which runtime answers a request. It keeps the
name map (one :class:`~yyai_kernel.versions.ModelVersions` per model, which owns that
model's slots, loads and swaps), each model's default version, the store mutations
(install, pin, unpin, remove, labels, traffic policies) and the watcher thread. A label
resolves to its version wherever a version is accepted (:meth:`resolve_version`). A new default takes over only once
it serves, so requests that name no version never meet a 503 during a swap.

Locking: ``_lock`` (re-entrant) guards the name map, the defaults and every store access;
it is held only for bookkeeping, never across a model load. Each model's ``load_lock``
serializes that model's loads (different models load in parallel); reloads that pile up
are coalesced. Predictions take no lock beyond reading a reference. The order is always
``load_lock`` then ``_lock``, never the reverse.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from .archive import read_manifest, verify
from .config import ServingConfig, serving_config
from .errors import ModelNotFoundError, YyaiError
from .registries import resolve_version, unknown_name
from .rollout import TrafficPolicy
from .store import ArchiveRecord, ModelStore
from .types import (InstallResult, ModelError, ModelRemoved, ModelStatus, ModelSummary, Prediction, ServerStatus,
                    StoreProblemInfo, VersionDescription, VersionState, parse_version)
from .versions import LoadSettings, ModelVersions, StatsObserver, VersionSlot
from .defaults import DefaultVersions, default_reason
from .watch import StoreWatcher

log = logging.getLogger("yyai.registry")

PARALLEL_LOADS = 4


class Registry:
    """Thread-safe registry of every model and version in a :class:`ModelStore`.

    Settings come from a :class:`~yyai_kernel.config.ServingConfig` (``config=``) or as
    keyword arguments (``Registry(store, batching=False)``): batching and its overrides,
    the trusted model names (whose archives may run code when loaded) and ``watch``,
    which polls the store folder and picks up new or replaced archives by itself.
    """

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
        self._watcher = StoreWatcher(store.root, self.config.watch_interval, self._store_changed)
        if self.config.watch:
            self._watcher.start()

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

    # --- predicting ---------------------------------------------------------------------

    def predict(self, name: str, inputs, version: int | str | None = None) -> Prediction:
        """Run ``inputs`` (``[B, *input.shape]``) through a version (default: the model's default)."""
        return self.submit(name, inputs, version).result()

    def submit(self, name: str, inputs, version: int | str | None = None, *, finite: bool = False) -> Future:
        """Queue ``inputs`` on a version; a Future of its :class:`Prediction`, which the batcher's
        thread completes (so an event loop awaits it without parking a thread). With batching
        off the model runs here, in the calling thread (see :meth:`batches`). ``finite=True``:
        the caller checked that the values are finite (see ``ArchiveRuntime.validate``)."""
        version = self.resolve_version(name, version)
        model = self._models.get(name)
        if model is None:
            raise VersionSlot(version).not_ready(name)
        return model.submit(version, inputs, finite=finite)

    def explain(self, name: str, inputs, version: int | str | None = None) -> tuple[Prediction, dict]:
        """Run ``inputs`` through a version in this thread, off its batcher, with each member's
        Grad-CAM maps: ``(Prediction, {member: gradcam.MemberMap})``."""
        version = self.resolve_version(name, version)
        model = self._models.get(name)
        if model is None:
            raise VersionSlot(version).not_ready(name)
        return model.explain(version, inputs)

    def batches(self, name: str, version: int | str | None = None) -> bool:
        """Whether a version serves through a batcher, so that :meth:`submit` never blocks."""
        version = self.resolve_version(name, version)
        model = self._models.get(name)
        return model is not None and model.batches(version)

    # --- managing -----------------------------------------------------------------------

    def load(self, name: str, version: int | str | None = None) -> ModelStatus:
        """Load (or re-load, if its archive changed) one version; the default if none is given."""
        version = self.resolve_version(name, version)
        model = self._model(name, create=True)
        with model.load_lock:
            self._load_version(model, version, force=False)
        return self._model_status(name)

    def load_all(self) -> dict[str, str]:
        """Load every model's default version, then the versions its labels and traffic policy
        name (so that a restart serves what was served), models in parallel; failures are
        recorded, not raised. Each is marked as loading first (:meth:`mark_loading`): requests
        meanwhile are told to retry."""
        wanted = self.mark_loading()
        results = _each(list(wanted), lambda name: self._load_each(name, wanted[name]))
        for name, result in results.items():
            if isinstance(result, ModelError):
                log.error("Could not load %s: %s", name, result.error)
        return {name: r.error for name, r in results.items() if isinstance(r, ModelError)}

    def mark_loading(self) -> dict[str, list[int]]:
        """Mark every version to serve at start-up that does not serve yet as loading (the server
        does it before it listens, so no request hears "not loaded" about a model the server is
        about to load); ``{name: [default, then the labelled and policy versions]}``."""
        with self._lock:
            wanted = {name: self._served_versions(name) for name in self.store.names()}
            for name, versions in wanted.items():
                for version in versions:
                    slot = self._model(name, create=True).slot(version)
                    if slot.serving is None:
                        slot.state = VersionState.LOADING
        return wanted

    def reload(self, name: str | None = None, *, force: bool = True):
        """Re-read the store and reload a model (or all): new versions, changed archives.

        ``force`` reloads loaded versions even when their archive is unchanged. Reloads of
        one model queue behind each other and coalesce; different models run in parallel.
        A failed load leaves the previous runtime serving and raises the load's error.
        Returns the model's status, or ``{name: ModelStatus or ModelError}`` for all.
        """
        with self._lock:
            self.store.scan()
            self._refresh_defaults()
        if name is not None:
            return self._reload_one(name, force)
        return _each(self.names(), lambda n: self._reload_one(n, force))

    def _reload_one(self, name: str, force: bool) -> ModelStatus:
        model = self._model(name)  # 404 for a name neither the store nor the registry knows
        return model.coalesce(lambda: self._reload_locked(model, force))

    def set_default(self, name: str, version: int | str) -> ModelStatus:
        """Make a version the default (loading it first if needed) and persist the pin."""
        version = self.resolve_version(name, version)
        model = self._model(name, create=True)
        with model.load_lock:
            self._load_version(model, version, force=False)
            with self._lock:
                self.store.pin(name, version)
                self._defaults.set(name, version)
        log.info("Default of %s is now version %d (pinned)", name, version)
        return self._model_status(name)

    def follow_latest(self, name: str) -> ModelStatus:
        """Forget the pin: the latest version becomes the default again, once it serves."""
        model = self._model(name)
        with model.load_lock:
            with self._lock:
                self.store.unpin(name)
            self._load_default(model)
        log.info("%s follows its latest version again", name)
        return self._model_status(name)

    def unload(self, name: str, version: int | str | None = None) -> ModelStatus:
        """Stop serving a version (or all versions); its archive stays in the store."""
        model = self._model(name)
        versions = [self.resolve_version(name, version)] if version is not None else list(model.slots)
        with model.load_lock:
            for v in versions:
                model.unload(v)
        return self._model_status(name)

    def remove(self, name: str, version: int | str, *, purge: bool = False):
        """Unload a version and, with ``purge``, delete its archive from the store.

        When the removed version was the default, the new default (the latest left, or
        the pin) is loaded so that the model keeps answering.
        """
        version = self.resolve_version(name, version)
        if purge:
            with self._lock:
                self.store.check_removable(name, version)  # before the unload: refuse with nothing changed
        self.unload(name, version)
        if not purge:
            return self._model_status(name)
        return self._drop(self._model(name), version, delete=True)

    def forget(self, name: str, version: int | str):
        """Another process deleted this version's archive (a purge): stop serving it and
        forget it, and load the new default, without writing the store."""
        version = parse_version(version)
        with self._lock:
            model = self._models.get(name)
            if model is None:  # never loaded here: the store only needs re-reading
                self.store.scan()
                self._refresh_defaults()
                return self._model_status(name) if name in self.store.names() else ModelRemoved(name)
        with model.load_lock:
            model.unload(version)
        return self._drop(model, version, delete=False)

    def _drop(self, model: ModelVersions, version: int, *, delete: bool):
        """The version's archive goes (``delete``) or went: drop its slot, load the new default."""
        with model.load_lock:
            with self._lock:
                if delete:
                    self.store.remove(model.name, version)
                else:
                    self.store.scan()
                model.slots.pop(version, None)
            try:
                self._load_default(model)
            except YyaiError as error:
                log.error("After removing %s v%d, its new default failed to load: %s", model.name, version, error)
        with self._lock:
            if not self._store_versions(model.name) and not model.slots:
                self._models.pop(model.name, None)
                return ModelRemoved(model.name)
        return self._model_status(model.name)

    def install(self, path: str | Path) -> InstallResult:
        """Verify an archive, move it into the store atomically, and load it.

        A new latest version becomes the default (once it serves) unless the model is
        pinned; the result's message says which version is the default afterwards, and why.
        """
        name = read_manifest(path).name
        trusted = self.config.is_trusted(name)
        verify(path, trusted=trusted)  # slow (loads Keras): outside the lock
        with self._lock:
            record = self.store.add(path, trusted=trusted, verify=False)
            self._refresh_defaults()
        model = self._model(record.name, create=True)
        with model.load_lock:
            self._load_version(model, record.version, force=False)
        status = self._model_status(record.name)
        message = f"Installed {record.name} v{record.version}; " + status.default_reason
        return InstallResult(record.name, record.version, status, message)

    def add_archive(self, path: str | Path) -> ModelStatus:
        """:meth:`install`, returning only the model's status."""
        return self.install(path).model

    # --- labels and traffic policies (persisted in the store) ----------------------------

    def set_label(self, name: str, label: str, version: int | str) -> ModelStatus:
        """Point a label at a version (loaded first, so that requests by label never 503) and persist it."""
        return self._load_then_persist(name, [version], lambda v: self.store.set_label(name, label, v[0]))

    def delete_label(self, name: str, label: str) -> ModelStatus:
        self._model(name)
        with self._lock:
            self.store.delete_label(name, label)
        return self._model_status(name)

    def traffic(self, name: str) -> TrafficPolicy | None:
        with self._lock:
            return self.store.traffic(name)

    def set_traffic(self, name: str, policy: TrafficPolicy) -> ModelStatus:
        """Check a policy against the model's versions and default, load its versions, persist it."""
        versions = [self.resolve_version(name, v) for v in policy.versions().values()]  # 404 for one it lacks
        policy.check_default(name, self.resolve_version(name))
        return self._load_then_persist(name, versions, lambda _: self.store.set_traffic(name, policy))

    def clear_traffic(self, name: str) -> ModelStatus:
        self._model(name)
        with self._lock:
            self.store.set_traffic(name, None)
        return self._model_status(name)

    def _load_then_persist(self, name: str, versions: list, persist) -> ModelStatus:
        """Load the versions (each resolved), then ``persist(versions)`` under the lock; the model's status."""
        versions = [self.resolve_version(name, v) for v in versions]
        model = self._model(name, create=True)
        with model.load_lock:
            for version in versions:
                self._load_version(model, version, force=False)
            with self._lock:
                persist(versions)
        return self._model_status(name)

    def close(self) -> None:
        """Stop the watcher and every batcher; the registry serves nothing afterwards."""
        self._watcher.stop()
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

    def load_served(self, name: str) -> None:
        """Load the default and every version a label or the traffic policy names, where the
        store still has the model (another worker changed the state file)."""
        with self._lock:
            versions = self._served_versions(name) if name in self.store.names() else []
        if versions:
            self._load_each(name, versions)

    def _served_versions(self, name: str) -> list[int]:
        """The default, then the versions the labels and the traffic policy name. Caller holds _lock."""
        policy = self.store.traffic(name)
        named = set(self.store.labels(name).values()) | set(policy.versions().values() if policy else ())
        default = self._defaults.get(name)
        return [default] + sorted(v for v in named & set(self._store_versions(name)) if v != default)

    def _load_each(self, name: str, versions: list[int]) -> ModelStatus:
        """Load each version in turn; the first failure is raised once all were tried."""
        first_error = None
        for version in versions:
            try:
                self.load(name, version)
            except YyaiError as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error
        return self._model_status(name)

    def _store_versions(self, name: str) -> list[int]:
        return list(self.store.versions(name)) if name in self.store.names() else []

    def _refresh_defaults(self) -> None:
        """Recompute every default from the store (see :class:`DefaultVersions`). Caller holds _lock."""
        self._defaults.refresh(self.store, self._serves)

    def _serves(self, name: str, version: int | None) -> bool:
        model = self._models.get(name)
        return model is not None and version is not None and model.serving(version) is not None

    def _store_changed(self) -> None:
        """The watcher saw archives appear, change or go: reload, unforced."""
        log.info("Store changed on disk; reloading")
        self.reload(force=False)

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


def _each(names: list[str], work) -> dict:
    """``work(name)`` for every name, a few models at a time: ``{name: result or ModelError}``."""
    results = {}
    with ThreadPoolExecutor(max_workers=PARALLEL_LOADS, thread_name_prefix="yyai-load") as pool:
        for name, future in [(n, pool.submit(work, n)) for n in names]:
            try:
                results[name] = future.result()
            except YyaiError as error:
                results[name] = ModelError(name, error.message)
    return results

