"""RayRegistry: the data plane's registry inside a yyai replica on Ray Serve.

What: the :class:`~yyai_kernel.registry.protocol.ModelRegistry` that each replica of the
deployment (``deployment.py``) hands to an unchanged :class:`~yyai_kernel.plane.dataplane.DataPlane`.
It resolves names, versions, defaults and pins from the shared store (``ModelStore`` reads the
archives and ``.yyai-state.json``), turns a version into its model id (``name:version:sha256``)
and runs the request on this replica's models (``run``: ``ReplicaModels.run``, which loads,
batches and runs). Nothing crosses a process for a prediction: Ray's proxy already chose
this replica.

How every replica sees the same state:
- The store folder is the truth. A :class:`~yyai_kernel.store.watch.StoreWatcher` polls its
  signature (every archive's and the state file's size, mtime and inode) every half
  second and re-reads the store when it changed, so a pin, an upload or a file copied in
  by hand reaches every replica on its own.
- A management call made through one replica writes the store, loads the versions it
  serves now on every replica (``replicas.warm``), then applies a :class:`StateChange` on
  every replica (``replicas.apply``) and replies once all of them applied it: a pin or a
  reload is seen by all before its reply. The change also carries what the store does not
  hold: which versions were unloaded. That set is runtime state, as in ``yyai serve`` (a
  restart serves the defaults again); a replica started later knows only the store.
- A reload needs no call to drop anything: new content is a new id, and the old runtime
  ages out by LRU. It warms the new ids so that no request waits.

Locking: ``_lock`` serializes this replica's store writes and scans, after each of which the
models' views are rebuilt (``registry.protocol.views_of``); requests resolve in the current
view without a lock (a rebuild swaps them whole), once per request. Blocking calls (management,
status) run on the API's worker threads; :meth:`submit` never blocks: it schedules the run
on the replica's event loop and returns a ``concurrent.futures.Future``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from yyai_kernel.archive import read_manifest, verify
from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import (
    ArchiveError,
    ModelNotFoundError,
    ModelNotReadyError,
    NotSupportedError,
    StaleModelIdError,
    YyaiError,
)
from yyai_kernel.ray_app.models import ModelId
from yyai_kernel.ray_app.replicas import Replicas, ReplicaSnapshot, ReplicaView
from yyai_kernel.registry import installs
from yyai_kernel.registry.defaults import default_reason
from yyai_kernel.registry.protocol import Target, ref_of, unknown_name, views_of
from yyai_kernel.registry.versions import VersionSlot, VersionStats
from yyai_kernel.store.store import ArchiveRecord, ModelStore
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
    VersionState,
    VersionStatus,
)

log = logging.getLogger("yyai.ray")

WATCH_INTERVAL_S = 0.5
Key = tuple[str, int]


@dataclass(frozen=True)
class StateChange:
    """What a replica tells every other after a management call.

    ``rescan``: re-read the store now. ``unloaded``: versions that stop serving;
    ``served``: versions that serve again (a load, a pin, a reload of the default).
    """

    rescan: bool = True
    unloaded: tuple[Key, ...] = ()
    served: tuple[Key, ...] = ()


Run = Callable[..., Awaitable]  # run(model_id, inputs, finite=...) -> RuntimeOutput


class RayRegistry:
    """Names, versions and pins from the shared store; predictions on this replica's models.

    ``run(model_id, inputs, finite=...)`` runs a request on this replica (a coroutine
    function, called on ``loop``); ``replicas`` reaches every replica of the deployment
    (this one included) for loads, state changes and their counters.
    """

    def __init__(self, store: str | Path, config: ServingConfig, loop: asyncio.AbstractEventLoop, *, run: Run,
                 replicas: Replicas, watch_interval: float = WATCH_INTERVAL_S):
        self.config = config
        self.store = ModelStore(store)
        self.replicas = ReplicaView(replicas.stats)
        self._run = run
        self._peers = replicas
        self._loop = loop
        self._lock = threading.RLock()
        self._unloaded: frozenset[Key] = frozenset()
        self._stats: dict[Key, VersionStats] = {}
        self._views = views_of(self.store, self.store.default_version)
        self._watcher = StoreWatcher(self.store.root, watch_interval, self.rescan)
        self._watcher.start()

    def close(self) -> None:
        self._watcher.stop()

    # --- shared state ------------------------------------------------------------------------

    def rescan(self) -> None:
        """Re-read the store folder and its state file (the watcher calls this on a change)."""
        with self._lock:
            self.store.scan()
            self._views = views_of(self.store, self.store.default_version)

    def apply(self, change: StateChange) -> int:
        """Apply a change that some replica announced; returns 1 (this replica)."""
        if change.rescan:
            self.rescan()
        with self._lock:
            self._unloaded = (self._unloaded - set(change.served)) | set(change.unloaded)
        return 1

    def unloaded(self) -> frozenset[Key]:
        return self._unloaded

    def _share(self, change: StateChange) -> None:
        """Apply a change on every replica; when the broadcast fails apply it here, so that
        this replica at least is right (the others re-read the store on their own)."""
        try:
            count = self._peers.apply(change)
            log.info("%d replica(s) applied %s", count, change)
        except Exception as error:  # noqa: BLE001 - the store write stands; peers re-read it on their own
            log.warning("could not reach every replica (%s); applying %s here", error, change)
            self.apply(change)

    # --- reading -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return self.store.names()

    def _versions(self, name: str) -> list[int]:
        try:
            return self.store.versions(name)
        except ModelNotFoundError:
            return []

    def resolve(self, ref: ModelRef) -> Target:
        """The version a request means, in the model's current view (see ``registry/protocol.py``)."""
        view = self._views.get(ref.name)
        if view is None:
            raise ModelNotFoundError(unknown_name(ref.name, self.names()))
        return view.resolve(ref)

    def resolve_version(self, name: str, version=None) -> int:
        return self.resolve(ref_of(name, version)).version

    def record(self, name: str, version=None) -> ArchiveRecord:
        return self.resolve(ref_of(name, version)).record

    def list(self) -> list[ModelSummary]:
        loaded = self.replicas.snapshot().loaded()
        summaries = []
        for name in self.names():
            records = [self.store.record(name, v) for v in self._versions(name)]
            summaries.append(ModelSummary(
                name, tuple(r.version for r in records), self.store.default_version(name) if records else None,
                tuple(r.version for r in records if str(ModelId.of(r)) in loaded)))
        return summaries

    @overload
    def status(self, name: None = None) -> ServerStatus: ...
    @overload
    def status(self, name: str) -> ModelStatus: ...
    def status(self, name: str | None = None) -> ModelStatus | ServerStatus:
        snapshot = self.replicas.snapshot()
        if name is not None:
            return self._model_status(name, snapshot)
        problems = tuple(StoreProblemInfo(str(p.path), p.kind, p.error) for p in self.store.problems)
        models = {}
        for each in self.names():
            try:
                models[each] = self._model_status(each, snapshot)
            except ModelNotFoundError:  # removed meanwhile
                continue
        return ServerStatus(models, problems, self.store.state_error)

    def _model_status(self, name: str, snapshot: ReplicaSnapshot) -> ModelStatus:
        records = {v: self.store.record(name, v) for v in self._versions(name)}
        if not records:
            raise ModelNotFoundError(unknown_name(name, self.names()))
        pin = self.store.pins().get(name)
        default = self.store.default_version(name)
        versions = {v: version_status(record, snapshot, self._unloaded, self._stats_of(name, v))
                    for v, record in records.items()}
        last_error = next((s.last_error for s in versions.values() if s.last_error), None)
        reason = default_reason(name, default, pin if pin in records else None, max(records))
        return ModelStatus(name, default, pin is not None, versions, last_error, reason,
                           labels=self.store.labels(name), traffic=self.store.traffic(name))

    def _stats_of(self, name: str, version: int) -> VersionStats:
        stats = self._stats.get((name, version))
        if stats is None:
            stats = self._stats.setdefault((name, version), VersionStats())
        return stats

    # --- predicting ------------------------------------------------------------------------------

    def batches(self, target: Target) -> bool:
        """Always: the replica batches, and :meth:`submit` never blocks."""
        return True

    def submit(self, target: Target, inputs, *, finite: bool = False) -> Future:
        """Run ``inputs`` on this replica's runtime of the version (its model id); a Future of its
        Prediction (``finite``: the values were checked already, see ``ArchiveRuntime.validate``)."""
        if (target.name, target.version) in self._unloaded:
            raise VersionSlot(target.version, VersionState.UNLOADED).not_ready(target.name)
        return asyncio.run_coroutine_threadsafe(self._call(target.record, inputs, finite), self._loop)

    def explain(self, target: Target, inputs):
        """Grad-CAM is served by ``yyai serve`` only: it needs the explainer's bounded pool and
        per-member gradient passes, which the Ray replicas do not run."""
        raise NotSupportedError("Explanations (?explain=gradcam) are served by `yyai serve`, not on Ray: the "
                                "Ray replicas run the traced models only, not the explainer.")

    def predict(self, name: str, inputs, version=None) -> Prediction:
        """:meth:`submit`, waited for: from a worker thread only."""
        return self.submit(self.resolve(ModelRef.parse(name, version)), inputs).result()

    async def _call(self, record: ArchiveRecord, inputs, finite: bool) -> Prediction:
        stats, started = self._stats_of(record.name, record.version), time.perf_counter()
        try:
            try:
                output = await self._local(record, inputs, finite)
            except StaleModelIdError:  # the file changed after we resolved it: read the store again
                await asyncio.to_thread(self.rescan)
                record = self.store.record(record.name, record.version)
                output = await self._local(record, inputs, finite)
        except BaseException:
            stats.record(time.perf_counter() - started, ok=False)
            raise
        stats.record(time.perf_counter() - started, ok=True)
        return Prediction(record.name, record.version, output.members, output.combined, record.manifest.output)

    async def _local(self, record: ArchiveRecord, inputs, finite: bool):
        try:
            return await self._run(str(ModelId.of(record)), inputs, finite=finite)
        except ArchiveError as error:
            raise replica_error(error, record) from None

    # --- managing (blocking: worker threads) ------------------------------------------------------

    def warm(self, record: ArchiveRecord) -> int:
        """Load a version on every replica before it is used; returns how many hold it."""
        try:
            held = self._peers.warm(str(ModelId.of(record)))
        except (RayTaskError, BackPressureError, DeploymentUnavailableError) as error:
            raise replica_error(error, record, loading=False) from None
        finally:
            self.replicas.forget()
        return held

    def load(self, name: str, version=None) -> ModelStatus:
        record = self.record(name, version)
        self.warm(record)
        self._share(StateChange(rescan=False, served=((name, record.version),)))
        return self.status(name)

    def unload(self, name: str, version=None) -> ModelStatus:
        """Stop serving a version (or every version) on every replica; each drops its
        runtime by LRU."""
        versions = [self.resolve_version(name, version)] if version is not None else self._versions(name)
        if not versions:
            raise ModelNotFoundError(unknown_name(name, self.names()))
        self._share(StateChange(rescan=False, unloaded=tuple((name, v) for v in versions)))
        return self.status(name)

    def reload(self, name: str | None = None, *, force: bool = True):
        """Re-read the store on every replica and warm the default's content (and any
        loaded version whose archive changed). ``force`` changes nothing here: unchanged
        content is the same model id, already loaded."""
        self._share(StateChange(rescan=True))
        if name is not None:
            return self._reload_one(name)
        results: dict = {}
        for each in self.names():
            try:
                results[each] = self._reload_one(each)
            except YyaiError as error:
                results[each] = ModelError(each, error.message)
        return results

    def _reload_one(self, name: str) -> ModelStatus:
        default = self.resolve_version(name)
        loaded = self.replicas.snapshot().loaded()
        stale = {ModelId.parse(i).version for i in loaded if i.startswith(f"{name}:")} - {default}
        for version in [default, *sorted(v for v in stale if v in self._versions(name))]:
            record = self.store.record(name, version)
            if version == default or str(ModelId.of(record)) not in loaded:
                self.warm(record)
        self._share(StateChange(rescan=False, served=((name, default),)))
        return self.status(name)

    def set_default(self, name: str, version) -> ModelStatus:
        """Load the version on every replica, then pin it (persisted) and tell every replica."""
        record = self.record(name, version)
        self.warm(record)
        log.info("Default of %s is now version %d (pinned)", name, record.version)
        return self._persist(name, lambda: self.store.pin(name, record.version), [record.version])

    def follow_latest(self, name: str) -> ModelStatus:
        """Forget the pin once the latest version is loaded: the latest is the default again."""
        latest = self.record(name, max(self._versions(name), default=None))
        self.warm(latest)
        return self._persist(name, lambda: self.store.unpin(name), [latest.version])

    def remove(self, name: str, version, *, purge: bool = False):
        """Unload a version; with ``purge`` delete its archive from the store as well."""
        version = self.resolve_version(name, version)
        status = self.unload(name, version)
        if not purge:
            return status
        with self._lock:
            self.store.remove(name, version)
            self._views = views_of(self.store, self.store.default_version)
        self._share(StateChange(served=((name, version),)))  # a later upload of it serves
        if not self._versions(name):
            return ModelRemoved(name)
        try:
            self.warm(self.record(name))
        except YyaiError as error:
            log.error("After removing %s v%d, its new default failed to load: %s", name, version, error)
        return self.status(name)

    # --- labels and traffic policies: in the shared store's state file, like the pins ----------

    def set_label(self, name: str, label: str, version) -> ModelStatus:
        """Load the version on every replica, then point the label at it (persisted)."""
        record = self.record(name, version)
        self.warm(record)
        return self._persist(name, lambda: self.store.set_label(name, label, record.version), [record.version])

    def delete_label(self, name: str, label: str) -> ModelStatus:
        return self._persist(name, lambda: self.store.delete_label(name, label))

    def set_traffic(self, name: str, policy: TrafficPolicy) -> ModelStatus:
        """Check the policy against the model, load its versions, then persist it."""
        records = [self.record(name, v) for v in policy.versions().values()]  # 404 for a version it lacks
        policy.check_default(name, self.resolve_version(name))
        for record in records:
            self.warm(record)
        return self._persist(name, lambda: self.store.set_traffic(name, policy), [r.version for r in records])

    def clear_traffic(self, name: str) -> ModelStatus:
        self.resolve_version(name)  # 404 for an unknown model
        return self._persist(name, lambda: self.store.set_traffic(name, None))

    def _persist(self, name: str, write: Callable[[], None], served: Iterable[int] = ()) -> ModelStatus:
        """Write the store's state (``write``, under the lock), tell every replica which
        versions serve now, and return the model's status."""
        with self._lock:
            write()
            self._views = views_of(self.store, self.store.default_version)
        self._share(StateChange(served=tuple((name, v) for v in served)))
        return self.status(name)

    def install(self, path: str | Path, options: InstallOptions | None = None) -> InstallResult:
        """Verify an archive here (every member loaded with Keras, safe_mode unless trusted), store
        it atomically, load it on every replica, then tell every replica. The install rules
        (staging, promote, label, replace) are ``registry/installs.py``'s."""
        options = options or InstallOptions()
        manifest = read_manifest(path)
        name, version = manifest.name, manifest.version
        if installs.already_there(self.store, path, manifest, options):
            status = self.status(name)
            return InstallResult(name, version, status, installs.message(name, version, status, False, options,
                                                                         changed=False), changed=False)
        verify(path, trusted=self.config.is_trusted(name), limits=self.store.limits)  # off the lock: Keras loads
        with self._lock:
            staged = installs.stage(self.store, manifest, options, self.config.auto_promote)
            record = self.store.add(path, trusted=self.config.is_trusted(name), verify=False, replace=options.replace)
            self._views = views_of(self.store, self.store.default_version)
        self.warm(record)
        with self._lock:
            installs.after_add(self.store, name, version, options)
            self._views = views_of(self.store, self.store.default_version)
        self._share(StateChange(served=((record.name, record.version),)))
        status = self.status(record.name)
        return InstallResult(name, version, status, installs.message(name, version, status, staged, options), staged)


def version_status(record: ArchiveRecord, snapshot: ReplicaSnapshot, unloaded: frozenset[Key],
                   stats: VersionStats) -> VersionStatus:
    """READY while it serves: loaded on a replica, or loaded there by its first request."""
    model_id = str(ModelId.of(record))
    holders, failure = snapshot.holders[model_id], snapshot.failures.get(model_id)
    if (record.name, record.version) in unloaded:
        state, reason = VersionState.UNLOADED, "unloaded"
    elif failure is not None:
        state, reason = VersionState.FAILED, failure
    else:
        state = VersionState.READY
        reason = (f"loaded on {holders} of {snapshot.replicas} model replicas" if holders else
                  "loaded by the model replica that gets its first request")
    requests, errors, latency, batches = stats.snapshot()
    manifest = record.manifest
    return VersionStatus(
        version=record.version, state=state, reason=reason, last_error=failure, requests=requests,
        errors=errors, latency_ms=latency, batch_sizes=batches, description=manifest.description,
        created=manifest.created, members=tuple(m.name for m in manifest.members))


def replica_error(error: Exception, record: ArchiveRecord | None, *, loading: bool = True) -> Exception:
    """The typed error a replica raised, as ``yyai serve`` would report it.

    Ray wraps another replica's exception (``RayTaskError``); the yyai error inside is the
    reply. A load that failed while a request waited is a 503, as a version that failed to
    load is in ``yyai serve``; a deployment with no replica to take the call is a 503 too.
    """
    cause = getattr(error, "cause", error)
    if isinstance(error, (BackPressureError, DeploymentUnavailableError)):
        busy = ModelNotReadyError(f"The model deployment cannot take the request now: {error}")
        busy.retry_after = 2
        return busy
    if not isinstance(cause, YyaiError):
        return cause if isinstance(cause, Exception) else error
    if loading and record is not None and isinstance(cause, ArchiveError):
        return VersionSlot(record.version, VersionState.FAILED,
                           last_error=f"v{record.version}: {cause.message}").not_ready(record.name)
    return cause
