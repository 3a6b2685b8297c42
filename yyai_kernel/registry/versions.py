"""ModelVersions: one model's version slots, their loads and swaps, and their statistics.

Each version has a slot holding its live :class:`Serving` pair (runtime and batcher).
Every change follows load-before-unload: a new runtime is loaded and warmed off the
serving path, then the slot's reference is replaced in one assignment. Requests already
running keep the old pair alive until they return; requests queued in the old batcher
still run there. A failed load leaves the old pair serving and is reported as
``last_error``.

A version that does not serve yet (never loaded here, or unloaded to stay within the
registry's budget) can be waited for: :meth:`ModelVersions.demand` hands out the one Future
of its next load, which every load of the version settles, so that concurrent first
requests share one load. A version an operator unloaded is not loaded again that way.

Locking: ``load_lock`` serializes this model's loads, swaps and unloads (the registry
holds it around each change); reloads that pile up while one runs are coalesced into one
follow-up (:meth:`ModelVersions.coalesce`). Predictions take neither the load lock nor
any registry lock: they read the slot's ``serving`` reference once (and write its
``last_used`` time); then only the version's statistics (a small lock of its own) and its
batcher's queue are locked, each for a few statements. ``_waiters_lock`` guards each
slot's pending-load Future.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from yyai_kernel.archive import Manifest
from yyai_kernel.errors import (
    ArchiveError,
    InvalidInputError,
    ModelNotReadyError,
    YyaiError,
)
from yyai_kernel.hints import Hint, Step
from yyai_kernel.runtime.batching import BatcherClosed, DynamicBatcher
from yyai_kernel.runtime.membermap import Explained
from yyai_kernel.runtime.runtime import ArchiveRuntime, RuntimeOutput, warmup_batch_sizes
from yyai_kernel.store.store import ArchiveRecord
from yyai_kernel.types import (
    DefaultReason,
    Latency,
    ModelStatus,
    Prediction,
    VersionState,
    VersionStatus,
)

log = logging.getLogger("yyai.registry")

LATENCY_WINDOW = 2048
RETRY_AFTER_LOADING_S = 2  # what a client is told to wait while a version loads


class StatsObserver(Protocol):
    """Told of every model call and batch as they happen (the server's metrics)."""

    def prediction(self, model: str, version: int, ok: bool) -> None: ...

    def batch(self, model: str, version: int, size: int) -> None: ...


class VersionStats:
    """Request count, errors, recent latencies and batch sizes of one version.

    An ``observer`` is told of each call and batch too, for metrics kept outside the
    process (the server's Prometheus series, summed over worker processes).
    """

    def __init__(self, observer: StatsObserver | None = None, model: str = "", version: int = 0):
        self._observer, self._model, self._version = observer, model, version
        self._lock = threading.Lock()
        self.requests = 0
        self.errors = 0
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.batch_sizes: Counter[int] = Counter()

    def record(self, latency_s: float, ok: bool) -> None:
        with self._lock:
            self.requests += 1
            if ok:
                self.latencies_ms.append(latency_s * 1000.0)
            else:
                self.errors += 1
        if self._observer is not None:
            self._observer.prediction(self._model, self._version, ok)

    def record_batch(self, size: int) -> None:
        with self._lock:
            self.batch_sizes[size] += 1
        if self._observer is not None:
            self._observer.batch(self._model, self._version, size)

    def snapshot(self) -> tuple[int, int, Latency, dict[int, int]]:
        """(requests, errors, latency percentiles, batch-size histogram), read consistently."""
        with self._lock:
            latencies = list(self.latencies_ms)
            batches = dict(self.batch_sizes)
            requests, errors = self.requests, self.errors
        return requests, errors, Latency.of(latencies), batches


@dataclass(frozen=True)
class Serving:
    """A runtime and the batcher in front of it (None when batching is off): swapped as one."""

    runtime: ArchiveRuntime
    batcher: DynamicBatcher[RuntimeOutput] | None

    def submit(self, batch: np.ndarray) -> Future[RuntimeOutput]:
        """A Future of the output: queued on the batcher, or (no batcher) run here and done."""
        if self.batcher is not None:
            return self.batcher.submit(batch)
        done: Future[RuntimeOutput] = Future()
        try:
            done.set_result(self.runtime(batch))
        except Exception as error:  # noqa: BLE001 - handed to the caller through the future
            done.set_exception(error)
        return done

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close(wait=False)


@dataclass
class VersionSlot:
    """One version of one model: its state, its live Serving pair and its statistics."""

    version: int
    state: VersionState = VersionState.AVAILABLE
    serving: Serving | None = None
    record: ArchiveRecord | None = None  # the archive its runtime was loaded from
    load_time_s: float | None = None
    warmup_time_s: float | None = None
    loaded_at: float | None = None
    last_error: str | None = None
    stats: VersionStats = field(default_factory=VersionStats)
    memory_bytes: int | None = None  # measured at its last load (registry/memory.py)
    last_used: float | None = None  # wall time of its last request (the budget's LRU order)
    evicted: bool = False  # unloaded to stay within the budget: its next request loads it
    pending: Future[None] | None = None  # the load that requests waiting for this version share

    @property
    def sha256(self) -> str | None:
        return self.record.sha256 if self.record is not None else None

    @property
    def path(self) -> Path | None:
        return self.record.path if self.record is not None else None

    def reason(self) -> str:
        """Why the version is (not) serving, in the words of Triton's repository index."""
        return {
            VersionState.AVAILABLE: ("not loaded (unloaded to stay within the memory budget; its next request "
                                     "loads it)" if self.evicted else
                                     "not loaded (in the store; its first request or a load serves it)"),
            VersionState.LOADING: "loading",
            VersionState.READY: "",
            VersionState.FAILED: self.last_error or "its load failed",
            VersionState.UNLOADED: "unloaded",
            VersionState.REMOVED: "removed from the store",
        }[self.state]

    def not_ready(self, name: str) -> ModelNotReadyError:
        """The error a request for this version gets while it does not serve."""
        where = f"Model {name!r} version {self.version}"
        if self.state is VersionState.LOADING:
            error = ModelNotReadyError(f"{where} is loading; retry in a moment.")
            error.retry_after = RETRY_AFTER_LOADING_S
            return error
        if self.state is VersionState.FAILED:
            return ModelNotReadyError(f"{where} failed to load: {self.last_error}")
        load = Hint(Step.LOAD, name, self.version)
        if self.state is VersionState.UNLOADED:
            return ModelNotReadyError(f"{where} was unloaded", hint=load)
        if self.state is VersionState.REMOVED:
            return ModelNotReadyError(f"{where} was removed from the store.")
        return ModelNotReadyError(f"{where} is not loaded", hint=load)

    def status(self, manifest: Manifest | None, in_store: bool) -> VersionStatus:
        requests, errors, latency, batches = self.stats.snapshot()
        state = self.state if in_store or self.serving is not None else VersionState.REMOVED
        return VersionStatus(
            version=self.version,
            state=state,
            reason=self.reason() if state is self.state else "removed from the store",
            in_store=in_store,
            load_time_s=_round(self.load_time_s),
            warmup_time_s=_round(self.warmup_time_s),
            loaded_at=self.loaded_at,
            last_error=self.last_error,
            requests=requests,
            errors=errors,
            latency_ms=latency,
            batch_sizes=batches,
            description=manifest.description if manifest is not None else "",
            created=manifest.created if manifest is not None else None,
            members=tuple(m.name for m in manifest.members) if manifest is not None else (),
            memory_bytes=self.memory_bytes if self.serving is not None else None,
            used_at=self.last_used,
        )


@dataclass(frozen=True)
class LoadSettings:
    """How a version is loaded: trust, and the batching it gets (from the serving config)."""

    trusted: bool
    batching: bool
    max_batch_size: int
    max_delay_ms: float


class ModelVersions:
    """Every version slot of one model name, and the lock that serializes their loads."""

    def __init__(self, name: str, observer: StatsObserver | None = None):
        self.name = name
        self.observer = observer
        self.slots: dict[int, VersionSlot] = {}
        self.load_lock = threading.Lock()
        self.last_error: str | None = None
        self._pending: Future[ModelStatus] | None = None
        self._pending_lock = threading.Lock()
        self._waiters_lock = threading.Lock()

    def slot(self, version: int) -> VersionSlot:
        slot = self.slots.get(version)
        if slot is None:
            slot = self.slots[version] = VersionSlot(version, stats=VersionStats(self.observer, self.name, version))
        return slot

    def serving(self, version: int) -> Serving | None:
        slot = self.slots.get(version)
        return slot.serving if slot is not None else None

    def loaded(self) -> list[int]:
        return sorted(v for v, s in self.slots.items() if s.serving is not None)

    def demand(self, version: int) -> tuple[Future[None], bool]:
        """The Future of the version's next load, and whether the caller must start that load.

        Done at once when the version serves. Every load of the version settles it (see
        :meth:`load`), so requests that arrive while the start-up load, an upload or a cold
        start runs wait for that one load.
        """
        with self._waiters_lock:
            slot = self.slot(version)
            if slot.serving is not None:
                done: Future[None] = Future()
                done.set_result(None)
                return done, False
            if slot.pending is not None:
                return slot.pending, False
            slot.pending = Future()
            slot.state = VersionState.LOADING
            return slot.pending, True

    def settle(self, slot: VersionSlot, error: BaseException | None = None) -> None:
        """The version's load ended: release the requests that waited for it."""
        with self._waiters_lock:
            pending, slot.pending = slot.pending, None
        if pending is not None and not pending.done():
            if error is None:
                pending.set_result(None)
            else:
                pending.set_exception(error)

    def batches(self, version: int) -> bool:
        """Whether the version serves through a batcher (so that submitting never blocks)."""
        serving = self.serving(version)
        return serving is not None and serving.batcher is not None

    def status(self, manifests: dict[int, Manifest], default: int | None, pinned: bool,
               default_reason: DefaultReason) -> ModelStatus:
        """This model's status, given the manifests of the versions in the store."""
        slots = dict(self.slots)
        versions = {v: (slots.get(v) or VersionSlot(v)).status(manifests.get(v), v in manifests)
                    for v in sorted(set(manifests) | set(slots))}
        return ModelStatus(self.name, default, pinned, versions, self.last_error, default_reason)

    # --- predicting (no load lock: one read of the slot's reference) -------------------

    def submit(self, version: int, inputs: object, *, finite: bool = False) -> Future[Prediction]:
        """Validate ``inputs`` and queue them on the version; a Future of its :class:`Prediction`."""
        slot = self.slots.get(version)
        if slot is None:
            raise VersionSlot(version).not_ready(self.name)
        started = time.perf_counter()
        slot.last_used = time.time()
        for _attempt in range(3):  # a swap may close the batcher we just looked up
            serving = slot.serving
            if serving is None:
                raise slot.not_ready(self.name)
            try:
                batch = serving.runtime.validate(inputs, finite=finite)
            except InvalidInputError:
                slot.stats.record(0.0, ok=False)
                raise
            try:
                pending = serving.submit(batch)
            except BatcherClosed:
                continue
            result: Future[Prediction] = Future()
            finish = _Finish(result, self.name, version, slot, serving, len(batch), started)
            pending.add_done_callback(finish)
            return result
        raise ModelNotReadyError(f"Model {self.name!r} version {version} is being swapped; retry.")

    def explain(self, version: int, inputs: object) -> tuple[Prediction, Explained]:
        """Run ``inputs`` on the version in this thread, off its batcher, and explain each member's answer.

        Returns the prediction and ``{member: membermap.MemberMap}``, both from the one
        runtime read here (a swap meanwhile cannot mix two). Counted in the version's
        statistics like any request.
        """
        slot = self.slots.get(version)
        if slot is None:
            raise VersionSlot(version).not_ready(self.name)
        serving = slot.serving
        if serving is None:
            raise slot.not_ready(self.name)
        started = time.perf_counter()
        slot.last_used = time.time()
        try:
            batch = serving.runtime.validate(inputs)
            output, maps = serving.runtime.explain(batch)
        except Exception:
            slot.stats.record(time.perf_counter() - started, ok=False)
            raise
        slot.stats.record(time.perf_counter() - started, ok=True)
        slot.stats.record_batch(len(batch))
        prediction = Prediction(self.name, version, output.members, output.combined, serving.runtime.manifest.output)
        return prediction, maps

    # --- changes (caller holds load_lock) ------------------------------------------------

    def load(self, record: ArchiveRecord, settings: LoadSettings, *, force: bool) -> bool:
        """Load one version's archive off the serving path and swap it in; False when nothing changed."""
        version, path, sha256 = record.version, record.path, record.sha256
        slot = self.slot(version)
        if slot.serving is not None and slot.sha256 == sha256 and not force:
            return False
        was_serving = slot.serving is not None
        if not was_serving:
            with self._waiters_lock:
                slot.state = VersionState.LOADING
                slot.pending = slot.pending or Future()
        try:
            runtime = ArchiveRuntime.load(
                path, trusted=settings.trusted, sha256=sha256,
                warmup_sizes=warmup_batch_sizes(settings.max_batch_size) if settings.batching else [1],
            )
        except YyaiError as error:
            self._failed(slot, error.message, was_serving)
            self.settle(slot, error)
            raise
        except Exception as error:  # a loader bug must still read as a failed load
            message = f"{type(error).__name__}: {error}"
            self._failed(slot, message, was_serving)
            failure = YyaiError(f"Loading {self.name} v{version} failed: {message}")
            self.settle(slot, failure)
            raise failure from error
        batcher = None
        if settings.batching and settings.max_batch_size > 1:
            batcher = DynamicBatcher(runtime, runtime.split, max_batch_size=settings.max_batch_size,
                                     max_delay_ms=settings.max_delay_ms, on_batch=slot.stats.record_batch,
                                     name=f"{self.name}-v{version}")
        old, slot.serving = slot.serving, Serving(runtime, batcher)  # the swap
        slot.state, slot.record, slot.last_error, slot.evicted = VersionState.READY, record, None, False
        slot.load_time_s, slot.warmup_time_s = runtime.load_time_s, runtime.warmup_time_s
        slot.loaded_at = time.time()
        self.last_error = None
        self.settle(slot)  # the requests that waited for this load run now, before any eviction
        if old is not None:
            old.close()  # queued requests still run on it; in-flight ones hold their own reference
        log.info("Loaded %s v%d in %.2fs (warm-up %.2fs)", self.name, version, runtime.load_time_s,
                 runtime.warmup_time_s)
        return True

    def _failed(self, slot: VersionSlot, message: str, was_serving: bool) -> None:
        """Record a failed load; a version that served before keeps serving its old runtime."""
        slot.last_error = self.last_error = f"v{slot.version}: {message}"
        if not was_serving:
            slot.state = VersionState.FAILED
        log.error("Load of %s v%d failed: %s", self.name, slot.version, message)

    def unload(self, version: int, state: VersionState = VersionState.UNLOADED) -> None:
        """Stop serving a version: requests already queued on it still finish."""
        slot = self.slot(version)
        serving, slot.serving = slot.serving, None
        slot.state, slot.evicted = state, False
        if serving is not None:
            serving.close()

    def evict(self, version: int) -> bool:
        """Unload a version to stay within the budget: its next request loads it again. Caller
        holds load_lock. False when it did not serve."""
        slot = self.slots.get(version)
        if slot is None or slot.serving is None:
            return False
        serving, slot.serving = slot.serving, None
        slot.state, slot.evicted = VersionState.AVAILABLE, True
        serving.close()
        return True

    def reconcile(self, in_store: set[int], default: int | None, problems: dict[int, str | None],
                  load: Callable[[int], None]) -> None:
        """Match what serves to a fresh store scan; caller holds load_lock.

        A version whose archive was deleted stops serving; one whose archive became
        unreadable (``problems``) keeps its old runtime and reports the error; the rest,
        and the default, are (re)loaded by ``load``. Raises the first error after trying all.
        """
        first_error: YyaiError | None = None
        for version in self.loaded():
            if version in in_store:
                continue
            problem = problems.get(version)
            if problem is not None:
                self.slots[version].last_error = self.last_error = f"v{version}: {problem}"
                first_error = first_error or ArchiveError(problem)
                continue
            self.unload(version)
        wanted = {v for v in self.loaded() if v in in_store} | ({default} if default is not None else set())
        for version in sorted(wanted):
            try:
                load(version)
            except YyaiError as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error

    def close(self) -> None:
        for slot in self.slots.values():
            serving, slot.serving = slot.serving, None
            if serving is not None:
                serving.close()

    def coalesce(self, work: Callable[[], ModelStatus]) -> ModelStatus:
        """Run ``work`` under the load lock, or join the run already queued behind a running one.

        Reloads that arrive while one runs share a single follow-up run: the caller that
        queued it runs it, the others wait for its result (or its error).
        """
        with self._pending_lock:
            pending, owner = self._pending, False
            if pending is None:
                pending = self._pending = Future()
                owner = True
        if owner:
            with self.load_lock:
                with self._pending_lock:
                    self._pending = None  # later callers queue a fresh run
                try:
                    pending.set_result(work())
                except BaseException as error:  # noqa: BLE001 - handed to every waiter through the future
                    pending.set_exception(error)
        return pending.result()


@dataclass(frozen=True)
class _Finish:
    """Completes a caller's Future from the model call's, and records the call's statistics."""

    result: Future[Prediction]
    name: str
    version: int
    slot: VersionSlot
    serving: Serving
    rows: int
    started: float

    def __call__(self, done: Future[RuntimeOutput]) -> None:
        error = done.exception()
        self.slot.stats.record(time.perf_counter() - self.started, ok=error is None)
        if error is not None:
            self.result.set_exception(error)
            return
        if self.serving.batcher is None:
            self.slot.stats.record_batch(self.rows)
        output = done.result()
        self.result.set_result(Prediction(self.name, self.version, output.members, output.combined,
                                          self.serving.runtime.manifest.output))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
