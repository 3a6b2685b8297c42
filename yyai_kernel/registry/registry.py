"""Registry: model name -> versions -> live runtime, with zero-downtime hot reload.

The registry is the one place that decides which runtime answers a request. It composes
the store (the archives and the state file), a :class:`~yyai_kernel.registry.table.ModelTable`
(the name map, the defaults and the views requests resolve in) and, with ``watch``, a
store watcher. It resolves, predicts, manages (install, load, unload, reload, pin, unpin,
remove), keeps the labels and traffic policies, and follows the store (the watcher
thread, and what another worker process changed). A label resolves to its version
wherever a version is accepted. A new default takes over only once it serves, so
requests that name no version never meet a 503 during a swap. Reloads of one model that
pile up are coalesced.

Locking, in the order taken: each model's ``load_lock`` (``ModelVersions``) serializes that
model's loads, swaps and state-file writes; models load in parallel. The store's own lock
serializes its file writes and scans, and holds no lock of the registry's. The table's
lock is taken last and only for memory work. A request takes none of them: it resolves in
the model's immutable view and reads one slot reference.
"""

from __future__ import annotations

import builtins
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import overload

from yyai_kernel.archive import read_manifest, verify
from yyai_kernel.config import ServingConfig, serving_config
from yyai_kernel.errors import ModelNotFoundError, YyaiError
from yyai_kernel.registry import installs
from yyai_kernel.registry.protocol import Target, ref_of
from yyai_kernel.registry.table import ModelTable
from yyai_kernel.registry.versions import (
    LoadSettings,
    ModelVersions,
    StatsObserver,
    VersionSlot,
)
from yyai_kernel.store.store import ModelStore
from yyai_kernel.store.watch import StoreWatcher
from yyai_kernel.types import (
    InstallOptions,
    InstallResult,
    ModelError,
    ModelRef,
    ModelRemoved,
    ModelStatus,
    ModelSummary,
    Prediction,
    ServerStatus,
    StoreProblemInfo,
    TrafficPolicy,
    VersionDescription,
    VersionState,
    require_version,
)

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
        self.store.scan()
        self.table = ModelTable(store, observer)
        self._watcher = StoreWatcher(store.root, self.config.watch_interval, self._store_changed)
        if self.config.watch:
            self._watcher.start()

    def close(self) -> None:
        """Stop the watcher and every batcher; the registry serves nothing afterwards."""
        self._watcher.stop()
        for model in self.table.all():
            model.close()

    # --- reading ------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every model name the store holds or the registry has loaded."""
        return self.table.names()

    def list(self) -> list[ModelSummary]:
        return self.table.summaries()

    @overload
    def status(self, name: None = None) -> ServerStatus: ...
    @overload
    def status(self, name: str) -> ModelStatus: ...
    def status(self, name: str | None = None) -> ModelStatus | ServerStatus:
        """Everything known about one model, or about all of them plus the store's problems."""
        if name is not None:
            return self.table.status(name)
        problems = tuple(StoreProblemInfo(str(p.path), p.kind, p.error) for p in self.store.problems)
        models = {}
        for each in self.names():
            try:
                models[each] = self.table.status(each)
            except ModelNotFoundError:  # removed meanwhile
                continue
        return ServerStatus(models, problems, self.store.state_error)

    def resolve(self, ref: ModelRef) -> Target:
        """The version a request means, in the model's current view (see ``protocol.py``)."""
        view = self.table.view(ref.name)
        if view is None:
            raise self.table.unknown(ref.name)
        return view.resolve(ref)

    def describe(self, name: str, version: int | str | None = None) -> VersionDescription:
        """What a version takes and gives (default: the default version)."""
        return self.resolve(ref_of(name, version)).description

    # --- predicting ---------------------------------------------------------------------

    def submit(self, target: Target, inputs, *, finite: bool = False) -> Future:
        """Queue ``inputs`` on a resolved version; a Future of its :class:`Prediction`, which the
        batcher's thread completes (so an event loop awaits it without parking a thread). With
        batching off the model runs here, in the calling thread (see :meth:`batches`).
        ``finite=True``: the caller checked that the values are finite (``ArchiveRuntime.validate``)."""
        return self._serving(target).submit(target.version, inputs, finite=finite)

    def explain(self, target: Target, inputs) -> tuple[Prediction, dict]:
        """Run ``inputs`` through a version in this thread, off its batcher, with each member's
        Grad-CAM maps: ``(Prediction, {member: gradcam.MemberMap})``."""
        return self._serving(target).explain(target.version, inputs)

    def batches(self, target: Target) -> bool:
        """Whether a version serves through a batcher, so that :meth:`submit` never blocks."""
        model = self.table.versions(target.name)
        return model is not None and model.batches(target.version)

    def predict(self, name: str, inputs, version: int | str | None = None) -> Prediction:
        """Run ``inputs`` (``[B, *input.shape]``) through a version (default: the default), waiting."""
        return self.submit(self.resolve(ModelRef.parse(name, version)), inputs).result()

    def _serving(self, target: Target) -> ModelVersions:
        model = self.table.versions(target.name)
        if model is None:
            raise VersionSlot(target.version).not_ready(target.name)
        return model

    # --- managing -----------------------------------------------------------------------

    def load(self, name: str, version: int | str | None = None) -> ModelStatus:
        """Load (or re-load, if its archive changed) one version; the default if none is given."""
        target = self.resolve(ref_of(name, version))
        model = self.table.ensure(name)
        with model.load_lock:
            self._load_version(model, target.version, force=False)
        return self.table.status(name)

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

    def mark_loading(self) -> dict[str, builtins.list[int]]:
        """Mark every version to serve at start-up that does not serve yet as loading (the server
        does it before it listens, so no request hears "not loaded" about a model the server is
        about to load); ``{name: [default, then the labelled and policy versions]}``."""
        wanted = {name: self._served_versions(name) for name in self.store.names()}
        for name, versions in wanted.items():
            for version in versions:
                slot = self.table.ensure(name, create=True).slot(version)
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
        self.store.scan()
        self.table.refresh()
        if name is not None:
            return self._reload_one(name, force)
        return _each(self.names(), lambda n: self._reload_one(n, force))

    def _reload_one(self, name: str, force: bool) -> ModelStatus:
        model = self._model(name)  # 404 for a name neither the store nor the registry knows
        return model.coalesce(lambda: self._reload_locked(model, force))

    def _reload_locked(self, model: ModelVersions, force: bool) -> ModelStatus:
        """Reload what serves and load the (possibly new) default. Caller holds model.load_lock."""
        view = self.table.view(model.name)
        in_store = set(view.stored) if view else set()
        # the store's default, which may not serve yet (see DefaultVersions.refresh)
        default = self.store.default_version(model.name) if in_store else self.table.default(model.name)
        problems = {v: self.store.problem_of(model.slots[v].path) for v in model.loaded() if v not in in_store}
        model.reconcile(in_store, default, problems, lambda v: self._load_version(model, v, force=force))
        return self.table.status(model.name)

    def set_default(self, name: str, version: int | str) -> ModelStatus:
        """Make a version the default (loading it first if needed) and persist the pin."""
        target = self.resolve(ref_of(name, version))
        model = self.table.ensure(name)
        with model.load_lock:
            self._load_version(model, target.version, force=False)
            self.store.pin(name, target.version)
            self.table.pinned(name, target.version)
        log.info("Default of %s is now version %d (pinned)", name, target.version)
        return self.table.status(name)

    def follow_latest(self, name: str) -> ModelStatus:
        """Forget the pin: the latest version becomes the default again, once it serves."""
        model = self._model(name)
        with model.load_lock:
            self.store.unpin(name)
            self._load_default(model)
        log.info("%s follows its latest version again", name)
        return self.table.status(name)

    def unload(self, name: str, version: int | str | None = None) -> ModelStatus:
        """Stop serving a version (or all versions); its archive stays in the store."""
        model = self._model(name)
        versions = [self.resolve(ref_of(name, version)).version] if version is not None else list(model.slots)
        with model.load_lock:
            for v in versions:
                model.unload(v)
        return self.table.status(name)

    def remove(self, name: str, version: int | str, *, purge: bool = False):
        """Unload a version and, with ``purge``, delete its archive from the store.

        When the removed version was the default, the new default (the latest left, or
        the pin) is loaded so that the model keeps answering.
        """
        version = self.resolve(ref_of(name, version)).version
        if purge:
            self.store.check_removable(name, version)  # before the unload: refuse with nothing changed
        self.unload(name, version)
        if not purge:
            return self.table.status(name)
        return self._drop(self._model(name), version, delete=True)

    def forget(self, name: str, version: int | str):
        """Another process deleted this version's archive (a purge): stop serving it and
        forget it, and load the new default, without writing the store."""
        version = require_version(version)
        model = self.table.versions(name)
        if model is None:  # never loaded here: the store only needs re-reading
            self.store.scan()
            self.table.refresh()
            return self.table.status(name) if name in self.store.names() else ModelRemoved(name)
        with model.load_lock:
            model.unload(version)
        return self._drop(model, version, delete=False)

    def _drop(self, model: ModelVersions, version: int, *, delete: bool):
        """The version's archive goes (``delete``) or went: drop its slot, load the new default."""
        with model.load_lock:
            if delete:
                self.store.remove(model.name, version)
            else:
                self.store.scan()
            model.slots.pop(version, None)
            self.table.refresh()
            try:
                self._load_default(model)
            except YyaiError as error:
                log.error("After removing %s v%d, its new default failed to load: %s", model.name, version, error)
        if self.table.drop(model.name):
            return ModelRemoved(model.name)
        return self.table.status(model.name)

    def install(self, path: str | Path, options: InstallOptions | None = None) -> InstallResult:
        """Verify an archive, move it into the store atomically, load it, and say what became the default.

        A new version of an existing model is *staged* (see ``defaults.stages``): it serves by
        its number (and by ``options.label``) while the default stays, pinned so that it
        stays, until it is promoted. ``options.promote`` True makes it the default (pinned).
        The same content again changes nothing and says so; different content under a
        version the store holds is refused unless ``options.replace`` (itself refused while a
        label or the traffic policy names that version). No lock of the registry's is held
        while the archive is verified or copied.
        """
        options = options or InstallOptions()
        manifest = read_manifest(path)
        name, version = manifest.name, manifest.version
        if installs.already_there(self.store, path, manifest, options):
            status = self.table.status(name)
            return InstallResult(name, version, status, installs.message(name, version, status, False, options,
                                                                         changed=False), changed=False)
        replacing = self.store.find(name, version) is not None
        trusted = self.config.is_trusted(name)
        verify(path, trusted=trusted)  # slow (loads Keras)
        model = self.table.ensure(name, create=True)
        with model.load_lock:
            view = self.table.view(name)
            staged = installs.stage(self.store, manifest, options, self.config.auto_promote,
                                    view.default if view is not None else None)
            record = self.store.add(path, trusted=trusted, verify=False, replace=options.replace)
            self.table.refresh()
            self._load_version(model, record.version, force=replacing)
            installs.after_add(self.store, name, version, options)
            self.table.refresh()
        status = self.table.status(name)
        return InstallResult(name, version, status, installs.message(name, version, status, staged, options), staged)

    def add_archive(self, path: str | Path, options: InstallOptions | None = None) -> ModelStatus:
        """:meth:`install`, returning only the model's status."""
        return self.install(path, options).model

    # --- labels and traffic policies (persisted in the store) ----------------------------

    def set_label(self, name: str, label: str, version: int | str) -> ModelStatus:
        """Point a label at a version (loaded first, so that requests by label never 503) and persist it."""
        return self._load_then_persist(name, [version], lambda v: self.store.set_label(name, label, v[0]))

    def delete_label(self, name: str, label: str) -> ModelStatus:
        model = self._model(name)
        with model.load_lock:
            self.store.delete_label(name, label)
            self.table.refresh()
        return self.table.status(name)

    def traffic(self, name: str) -> TrafficPolicy | None:
        return self.store.traffic(name)

    def set_traffic(self, name: str, policy: TrafficPolicy) -> ModelStatus:
        """Check a policy against the model's versions and default, load its versions, persist it."""
        versions = [self.resolve(ModelRef(name, v)).version for v in policy.versions().values()]  # 404 for one it lacks
        policy.check_default(name, self.resolve(ModelRef(name)).version)
        return self._load_then_persist(name, versions, lambda _: self.store.set_traffic(name, policy))

    def clear_traffic(self, name: str) -> ModelStatus:
        model = self._model(name)
        with model.load_lock:
            self.store.set_traffic(name, None)
            self.table.refresh()
        return self.table.status(name)

    def _load_then_persist(self, name: str, versions: builtins.list, persist) -> ModelStatus:
        """Load the versions (each resolved), pin the default if it is not, then ``persist(versions)``
        (a label or a traffic policy); the model's status.

        A model that a label or a policy compares versions of keeps its default while the
        comparison runs: no new archive (an upload, a file dropped into the folder) replaces
        it until someone promotes one, so its default is pinned here if it was not.
        """
        versions = [self.resolve(ref_of(name, v)).version for v in versions]
        model = self.table.ensure(name)
        with model.load_lock:
            for version in versions:
                self._load_version(model, version, force=False)
            view = self.table.view(name)
            if name not in self.store.pins() and view is not None and view.default is not None:
                self.store.pin(name, view.default)
                self.table.pinned(name, view.default)
            persist(versions)
            self.table.refresh()
        return self.table.status(name)

    # --- loading one version ---------------------------------------------------------------

    def _model(self, name: str) -> ModelVersions:
        """The model's slots (404 for a name neither the store nor the registry knows)."""
        return self.table.ensure(name)

    def _load_version(self, model: ModelVersions, version: int, *, force: bool) -> None:
        """Load one version off the serving path and swap it in. Caller holds model.load_lock."""
        record = self.store.record(model.name, version)
        batch_size, delay_ms = self.config.batching_for(record.manifest.batching)
        settings = LoadSettings(self.config.is_trusted(model.name), self.config.batching, batch_size, delay_ms)
        if model.load(record, settings, force=force):
            self.table.refresh()  # a new default waiting for this load takes over now

    def _load_default(self, model: ModelVersions) -> None:
        """Load the store's default of a model unless it serves already. Caller holds model.load_lock."""
        self.table.refresh()
        default = self.store.default_version(model.name) if model.name in self.store.names() else None
        if default is not None and model.serving(default) is None:
            self._load_version(model, default, force=False)

    def _served_versions(self, name: str) -> builtins.list[int]:
        """The default, then the versions the labels and the traffic policy name."""
        view = self.table.view(name)
        if view is None:
            return []
        named = set(view.labels.values()) | set(view.policy.versions().values() if view.policy else ())
        default = view.default
        return [default] + sorted(v for v in named & view.stored if v != default)

    # --- following the store ---------------------------------------------------------

    def load_served(self, name: str) -> None:
        """Load the default and every version a label or the traffic policy names, where the
        store still has the model (another worker changed the state file)."""
        versions = self._served_versions(name)
        if versions:
            self._load_each(name, versions)

    def _load_each(self, name: str, versions: builtins.list[int]) -> ModelStatus:
        """Load each version in turn; the first failure is raised once all were tried."""
        first_error = None
        for version in versions:
            try:
                self.load(name, version)
            except YyaiError as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error
        return self.table.status(name)

    def _store_changed(self) -> None:
        """The watcher saw archives appear, change or go: reload, unforced."""
        log.info("Store changed on disk; reloading")
        self.reload(force=False)


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
