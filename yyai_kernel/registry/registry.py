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

Loading on demand, within a budget (``residency.py``): a request for a version that is
not loaded (never loaded here, or unloaded to stay within the budget) starts its load, or
joins the one running, and waits for it up to ``cold_start_timeout`` (then 503 with
Retry-After); its Prediction says how long it waited (``cold_start_s``). Concurrent first
requests share one load. A version an operator unloaded stays unloaded (503) until loaded
again. Loads run one at a time, by priority, each measured (``memory.py``); above the
budget the least recently used version goes, protected ones last.

At start the server loads the warm set (:meth:`Registry.warm_set`), then warms the other
defaults in the background while they fit (:meth:`Registry.start_background`), and persists
the recently used order in the store's state for the next start.

Locking, in the order taken: each model's ``load_lock`` (``ModelVersions``) serializes that
model's loads, swaps and state-file writes; the residency's load gate is taken inside it,
one load at a time, and eviction only ever *tries* another model's ``load_lock`` (a busy
model is skipped), so two loads never wait for each other. The store's own lock
serializes its file writes and scans, and holds no lock of the registry's. The table's
lock is taken last and only for memory work. A request takes none of them: it resolves in
the model's immutable view and reads one slot reference.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar, overload

from yyai_kernel.archive import read_manifest, verify
from yyai_kernel.config import ServingConfig, serving_config
from yyai_kernel.errors import ModelNotFoundError, ModelNotReadyError, YyaiError
from yyai_kernel.registry import installs, memory
from yyai_kernel.registry.protocol import Target, ref_of
from yyai_kernel.registry.residency import (
    Budget,
    Deadlines,
    Priority,
    Protection,
    Residency,
    Resident,
)
from yyai_kernel.registry.table import ModelTable
from yyai_kernel.registry.versions import (
    RETRY_AFTER_LOADING_S,
    LoadSettings,
    ModelVersions,
    StatsObserver,
)
from yyai_kernel.runtime.membermap import Explained
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
    ResidencyStatus,
    ServerStatus,
    StoreProblemInfo,
    TrafficPolicy,
    VersionDescription,
    VersionState,
    require_version,
)

log = logging.getLogger("yyai.registry")

PARALLEL_LOADS = 4
COLD_START_THREADS = 4  # cold starts queue at the load gate, ahead of warming; the gate runs one at a time
RECENT_KEPT = 256  # versions the persisted recently-used order remembers
RECENT_EVERY_S = 60.0  # how often the background thread persists that order, when it changed
DEMANDABLE = (VersionState.AVAILABLE, VersionState.LOADING)  # what a request may load by asking for it

_T = TypeVar("_T")


class Registry:
    """Thread-safe registry of every model and version in a :class:`ModelStore`.

    Settings come from a :class:`~yyai_kernel.config.ServingConfig` (``config=``) or as
    keyword arguments (``Registry(store, batching=False)``): batching and its overrides,
    the trusted model names (whose archives may run code when loaded) and ``watch``,
    which polls the store folder and picks up new or replaced archives by itself.
    """

    def __init__(self, store: ModelStore, config: ServingConfig | None = None, *,
                 observer: StatsObserver | None = None, **settings: object):
        self.store = store
        self.config = serving_config(config, **settings)
        self.store.scan()
        self.table = ModelTable(store, observer)
        budget = Budget(self.config.memory_budget_bytes, self.config.max_loaded)
        self.residency = Residency(budget, self._residents, self._evict)
        self._deadlines = Deadlines()
        self._cold = ThreadPoolExecutor(COLD_START_THREADS, thread_name_prefix="yyai-cold")
        self._held = threading.local()  # the model whose load_lock this thread holds while it loads
        self._closed = threading.Event()
        self._background: threading.Thread | None = None  # a server's: warming, and the recent order kept
        self._watcher = StoreWatcher(store.root, self.config.watch_interval, self._store_changed)
        if self.config.watch:
            self._watcher.start()

    def close(self) -> None:
        """Stop the watcher, the background warming and every batcher; a server's registry
        (:meth:`start_background`) persists the recently used order. It serves nothing afterwards."""
        self._closed.set()
        self._watcher.stop()
        if self._background is not None:  # a server's registry keeps the order for its next start
            self.persist_recent()
        self._cold.shutdown(wait=False, cancel_futures=True)
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
        return ServerStatus(models, problems, self.store.state_error, self.residency_status())

    def residency_status(self) -> ResidencyStatus:
        """What is loaded against the budget, this process's memory, and the load counters."""
        return self.residency.status(memory.resident_bytes())

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

    def submit(self, target: Target, inputs: object, *, finite: bool = False) -> Future[Prediction]:
        """Queue ``inputs`` on a resolved version; a Future of its :class:`Prediction`, which the
        batcher's thread completes (so an event loop awaits it without parking a thread). With
        batching off the model runs here, in the calling thread (see :meth:`batches`).
        ``finite=True``: the caller checked that the values are finite (``ArchiveRuntime.validate``).

        A version that is not loaded is loaded first (a cold start, see the module docstring):
        the Future then completes once the load and the call are done."""
        model = self.table.versions(target.name)
        if model is not None:
            try:
                return model.submit(target.version, inputs, finite=finite)
            except ModelNotReadyError:
                if not _demandable(model, target.version):
                    raise
        return self._cold_start(target, lambda m: m.submit(target.version, inputs, finite=finite))

    def explain(self, target: Target, inputs: object) -> tuple[Prediction, Explained]:
        """Run ``inputs`` through a version in this thread, off its batcher, with each member's
        explanation: ``(Prediction, {member: membermap.MemberMap or MemberAttribution})``. A
        version that is not loaded is loaded first, as for :meth:`submit`."""
        model = self.table.versions(target.name)
        if model is None or (model.serving(target.version) is None and _demandable(model, target.version)):
            self._cold_start(target, lambda m: _done(None)).result()  # bounded by cold_start_timeout
            model = self.table.ensure(target.name)
        return model.explain(target.version, inputs)

    def batches(self, target: Target) -> bool:
        """Whether a version serves through a batcher, so that :meth:`submit` never blocks."""
        model = self.table.versions(target.name)
        return model is not None and model.batches(target.version)

    def predict(self, name: str, inputs: object, version: int | str | None = None) -> Prediction:
        """Run ``inputs`` (``[B, *input.shape]``) through a version (default: the default), waiting."""
        return self.submit(self.resolve(ModelRef.parse(name, version)), inputs).result()

    # --- cold starts --------------------------------------------------------------------

    def _cold_start(self, target: Target, run: Callable[[ModelVersions], Future[_T]]) -> Future[_T]:
        """Load the version (or join its load), then ``run(model)``; a Future of the Prediction,
        which says how long it waited. Bounded by ``cold_start_timeout`` (then 503, retry).

        The version is looked up again first: a request that resolved it before it was purged
        (or its whole model removed) gets the 404 a request now would, and creates no slot (a
        slot for a version the store lacks would list it in the model's status)."""
        view = self.table.view(target.name)
        if view is None:
            raise self.table.unknown(target.name)
        view.target(target.version)  # 404 when the store no longer holds it
        model = self.table.ensure(target.name)
        started = time.monotonic()
        loading, start = model.demand(target.version)
        if start:
            try:
                self._cold.submit(self._load_demanded, model, target.version)
            except RuntimeError:  # closing
                model.settle(model.slot(target.version), ModelNotReadyError("The server is stopping."))
        result: Future[_T] = Future()
        stats = self.residency.stats

        def loaded(done: Future[None]) -> None:
            waited = time.monotonic() - started
            if result.done():  # timed out meanwhile
                return
            stats.cold_start(waited)
            error = done.exception()
            if error is not None:
                slot = model.slots.get(target.version)
                _fail(result, slot.not_ready(target.name) if slot is not None and isinstance(
                    error, YyaiError) and slot.state is VersionState.FAILED else error)
                return
            try:
                pending = run(model)
            except BaseException as failure:  # noqa: BLE001 - the request's Future carries it
                _fail(result, failure)
                return
            pending.add_done_callback(lambda f: _copy(f, result, cold_start_s=round(waited, 4)))

        def too_late() -> None:
            if result.done():
                return
            timeout = self.config.cold_start_timeout
            error = ModelNotReadyError(f"Model {target.name!r} version {target.version} is still loading after "
                                       f"{timeout:g} s; retry in a moment.")
            error.retry_after = RETRY_AFTER_LOADING_S
            if _fail(result, error):
                stats.cold_start(time.monotonic() - started, timed_out=True)

        loading.add_done_callback(loaded)
        if not result.done():
            self._deadlines.after(self.config.cold_start_timeout, too_late)
        return result

    def _load_demanded(self, model: ModelVersions, version: int) -> None:
        """A cold start's load, first in the gate's queue. Every load settles the waiting
        requests; one that never reached the runtime (its archive went) is settled here."""
        error: BaseException | None = None
        try:
            with model.load_lock:
                self._load_version(model, version, force=False, priority=Priority.DEMAND)
        except BaseException as failure:  # the waiting requests get it; the pool must not swallow it unseen
            error = failure
            if not isinstance(failure, YyaiError):
                log.exception("Loading %s v%d on demand failed", model.name, version)
        slot = model.slots.get(version)
        if slot is not None and slot.pending is not None and slot.serving is None:
            if slot.state is VersionState.LOADING:
                slot.state = VersionState.AVAILABLE
            model.settle(slot, error or ModelNotReadyError(f"Model {model.name!r} version {version} did not load."))
        view = self.table.view(model.name)
        if error is not None and (view is None or version not in view.records):
            with model.load_lock:  # purged while it was asked for: forget the slot the request made
                slot = model.slots.get(version)
                if slot is not None and slot.serving is None and slot.pending is None:
                    model.slots.pop(version, None)

    # --- managing -----------------------------------------------------------------------

    def load(self, name: str, version: int | str | None = None, *,
             priority: Priority = Priority.MANAGE) -> ModelStatus:
        """Load (or re-load, if its archive changed) one version; the default if none is given."""
        target = self.resolve(ref_of(name, version))
        model = self.table.ensure(name)
        with model.load_lock:
            self._load_version(model, target.version, force=False, priority=priority)
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

    def mark_loading(self, wanted: dict[str, builtins.list[int]] | None = None) -> dict[str, builtins.list[int]]:
        """Mark every version to serve at start-up that does not serve yet as loading (the server
        does it before it listens, so no request hears "not loaded" about a model the server is
        about to load); ``{name: [default, then the labelled and policy versions]}``, or ``wanted``."""
        if wanted is None:
            wanted = {name: self._served_versions(name) for name in self.store.names()}
        for name, versions in wanted.items():
            for version in versions:
                slot = self.table.ensure(name, create=True).slot(version)
                if slot.serving is None:
                    slot.state = VersionState.LOADING
        return wanted

    # --- the warm set, background warming, the recently used order ----------------------

    def warm_set(self) -> builtins.list[tuple[str, int]]:
        """What the server loads before it says ready, in order, at most ``warm`` versions:

        1. the versions that pins, labels and traffic policies name (a canary or shadow
           side, and the default they fall back to), models in recently used order;
        2. then the defaults, those used most recently before the last stop first
           (the store's ``recent`` order), then by name.

        A budget bounds it too: versions past what it holds (at their last measured cost)
        are left to load on their first request.
        """
        order = self._by_recency()
        named, defaults = [], []
        for name in order:
            view = self.table.view(name)
            if view is None or view.default is None:
                continue
            pinned = self.store.pins().get(name) in view.stored
            sides = set(view.labels.values()) | set(view.policy.versions().values() if view.policy else ())
            sides &= set(view.stored)
            if sides or pinned:
                named += [(name, v) for v in [view.default, *sorted(sides - {view.default})]]
            else:
                defaults.append((name, view.default))
        return (named + defaults)[:self.config.warm]

    def warm_up(self) -> dict[str, str]:
        """Load the warm set (see :meth:`warm_set`), one at a time; failures are recorded, not
        raised: ``{name: error}``."""
        errors: dict[str, str] = {}
        for name, version in self.warm_set():
            if self.residency.budget.bounded and not self.residency.room_for_one_more():
                break
            try:
                self.load(name, version, priority=Priority.WARM)
            except YyaiError as error:
                errors.setdefault(name, error.message)
                log.error("Could not load %s v%d: %s", name, version, error.message)
        for model in self.table.all():  # marked at start but left out (the budget was full): not loading
            for slot in list(model.slots.values()):
                if slot.state is VersionState.LOADING and slot.serving is None and slot.pending is None:
                    slot.state = VersionState.AVAILABLE
        return errors

    def start_background(self) -> None:
        """After ready: warm every other default while the budget has room (lowest priority), then
        persist the recently used order every minute while it changes."""
        if self._background is None:
            self._background = threading.Thread(target=self._housekeeping, name="yyai-background", daemon=True)
            self._background.start()

    def _housekeeping(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # Linux: this thread only
        except (AttributeError, OSError):
            pass
        for name in self._by_recency():
            if self._closed.is_set():
                return
            view = self.table.view(name)
            model = self.table.versions(name)
            if view is None or view.default is None or (model is not None and model.slots.get(view.default)
                                                         and model.slots[view.default].state
                                                         not in (VersionState.AVAILABLE,)):
                continue
            if self.residency.budget.bounded and not self.residency.room_for_one_more():
                break
            try:
                self.load(name, view.default, priority=Priority.BACKGROUND)
            except YyaiError as error:
                log.error("Could not warm %s v%d: %s", name, view.default, error.message)
        while not self._closed.wait(RECENT_EVERY_S):
            self.persist_recent()

    def recently_used(self) -> builtins.list[tuple[str, int]]:
        """The versions that answered requests, most recently used first: this run's, then the
        store's order from before (the next start warms in this order)."""
        used = sorted(((slot.last_used, model.name, version) for model in self.table.all()
                       for version, slot in list(model.slots.items()) if slot.last_used is not None), reverse=True)
        order = [(name, version) for _, name, version in used]
        seen = set(order)
        order += [key for key in self.store.recent() if key not in seen]
        return order[:RECENT_KEPT]

    def persist_recent(self) -> None:
        """Write the recently used order into the store's state (unchanged: nothing is written)."""
        try:
            self.store.set_recent(self.recently_used())
        except YyaiError as error:  # a full disk: a hint lost, nothing else
            log.warning("Could not persist the recently used order: %s", error.message)

    def _by_recency(self) -> builtins.list[str]:
        """Model names, those used most recently first, then by name."""
        names = list(dict.fromkeys(name for name, _ in self.recently_used()))
        return [n for n in names if n in self.store.names()] + sorted(set(self.store.names()) - set(names))

    # --- the budget ----------------------------------------------------------------------

    def _residents(self) -> builtins.list[Resident]:
        """Every loaded version with its cost, last use and protection (``residency.py``)."""
        pins = self.store.pins()
        residents = []
        for model in self.table.all():
            view = self.table.view(model.name)
            named = set(view.labels.values()) | set(view.policy.versions().values() if view.policy else ()) \
                if view is not None else set()
            if model.name in pins:
                named.add(pins[model.name])
            default = self.table.default(model.name)
            for version, slot in list(model.slots.items()):
                if slot.serving is None:
                    continue
                protection = (Protection.NAMED if version in named else
                              Protection.DEFAULT if version == default else Protection.NONE)
                residents.append(Resident(model.name, version, slot.memory_bytes or 0,
                                          slot.last_used or slot.loaded_at or 0.0, protection))
        return residents

    def _evict(self, resident: Resident) -> bool:
        """Unload one version for the budget, unless its model is busy (a load or swap holds its lock)."""
        model = self.table.versions(resident.name)
        if model is None:
            return False
        held: ModelVersions | None = getattr(self._held, "model", None)
        if held is model:  # this thread loads a sibling version: its lock is ours
            return model.evict(resident.version)
        if not model.load_lock.acquire(blocking=False):
            return False
        try:
            return model.evict(resident.version)
        finally:
            model.load_lock.release()

    def reload(self, name: str | None = None, *,
               force: bool = True) -> ModelStatus | dict[str, ModelStatus | ModelError]:
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
        memory.release()  # its memory goes back to the system now, not at the next collection
        return self.table.status(name)

    def remove(self, name: str, version: int | str, *, purge: bool = False) -> ModelStatus | ModelRemoved:
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

    def forget(self, name: str, version: int | str) -> ModelStatus | ModelRemoved:
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

    def _drop(self, model: ModelVersions, version: int, *, delete: bool) -> ModelStatus | ModelRemoved:
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

    def _load_then_persist(self, name: str, versions: Sequence[int | str],
                           persist: Callable[[builtins.list[int]], None]) -> ModelStatus:
        """Load the versions (each resolved), pin the default if it is not, then ``persist(versions)``
        (a label or a traffic policy); the model's status.

        A model that a label or a policy compares versions of keeps its default while the
        comparison runs: no new archive (an upload, a file dropped into the folder) replaces
        it until someone promotes one, so its default is pinned here if it was not.
        """
        resolved = [self.resolve(ref_of(name, v)).version for v in versions]
        model = self.table.ensure(name)
        with model.load_lock:
            for version in resolved:
                self._load_version(model, version, force=False)
            view = self.table.view(name)
            if name not in self.store.pins() and view is not None and view.default is not None:
                self.store.pin(name, view.default)
                self.table.pinned(name, view.default)
            persist(resolved)
            self.table.refresh()
        return self.table.status(name)

    # --- loading one version ---------------------------------------------------------------

    def _model(self, name: str) -> ModelVersions:
        """The model's slots (404 for a name neither the store nor the registry knows)."""
        return self.table.ensure(name)

    def _load_version(self, model: ModelVersions, version: int, *, force: bool,
                      priority: Priority = Priority.MANAGE) -> None:
        """Load one version off the serving path and swap it in, through the load gate, within the
        budget, measuring its cost. Caller holds model.load_lock."""
        record = self.store.record(model.name, version)
        slot = model.slots.get(version)
        if slot is not None and slot.serving is not None and slot.sha256 == record.sha256 and not force:
            return  # it serves this archive already: no wait at the gate
        batch_size, delay_ms = self.config.batching_for(record.manifest.batching)
        settings = LoadSettings(self.config.is_trusted(model.name), self.config.batching, batch_size, delay_ms)
        key, residency = (model.name, version), self.residency
        self._held.model = model
        try:
            with residency.gate.hold(priority):
                if residency.fit(key, incoming=residency.estimate(slot.memory_bytes if slot else None)):
                    memory.release()  # what was unloaded goes back before this load is measured
                    self.table.refresh()
                before = memory.sample()
                try:
                    changed = model.load(record, settings, force=force)
                except YyaiError:
                    residency.stats.loaded(False)
                    raise
                if changed:
                    model.slot(version).memory_bytes = memory.sample().cost_since(before)
                    residency.stats.loaded(True)
                if residency.fit(key):
                    memory.release()
        finally:
            self._held.model = None
        if changed:
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
        if view is None or view.default is None:  # only a model the store no longer holds has no default
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


def _demandable(model: ModelVersions, version: int) -> bool:
    """Whether a request may load this version by asking for it: not an operator's unload, not a
    failed load, not a removed archive."""
    slot = model.slots.get(version)
    return slot is None or (slot.serving is None and slot.state in DEMANDABLE)


def _settle(future: Future[_T], result: _T) -> bool:
    """Complete ``future`` with ``result`` unless something else did first; whether this call did."""
    try:
        future.set_result(result)
    except InvalidStateError:
        return False
    return True


def _fail(future: Future[_T], error: BaseException) -> bool:
    """Complete ``future`` with ``error`` unless something else did first; whether this call did."""
    try:
        future.set_exception(error)
    except InvalidStateError:
        return False
    return True


def _copy(source: Future[_T], target: Future[_T], *, cold_start_s: float) -> None:
    """Complete ``target`` as ``source`` completed (a Prediction with its ``cold_start_s`` set)."""
    error = source.exception()
    if error is not None:
        _fail(target, error)
        return
    result = source.result()
    if isinstance(result, Prediction):
        result = dataclasses.replace(result, cold_start_s=cold_start_s)
    _settle(target, result)


def _done(value: _T) -> Future[_T]:
    future: Future[_T] = Future()
    future.set_result(value)
    return future


def _each(names: list[str], work: Callable[[str], _T]) -> dict[str, _T | ModelError]:
    """``work(name)`` for every name, a few models at a time: ``{name: result or ModelError}``."""
    results: dict[str, _T | ModelError] = {}
    with ThreadPoolExecutor(max_workers=PARALLEL_LOADS, thread_name_prefix="yyai-load") as pool:
        for name, future in [(n, pool.submit(work, n)) for n in names]:
            try:
                results[name] = future.result()
            except YyaiError as error:
                results[name] = ModelError(name, error.message)
    return results
