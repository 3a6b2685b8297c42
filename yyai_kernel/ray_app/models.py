"""The archives one Ray replica holds: loaded on first use, batched, counted.

What: :class:`ReplicaModels` is the model side of a yyai replica on Ray Serve
(``deployment.py``). A request names its archive by a multiplexed model id,
``name:version:sha256`` (see :class:`ModelId`); the replica loads the archive on first use
(``@serve.multiplexed``, which also tells Ray's router which replica holds which id), keeps
at most ``max_models`` of them and evicts the least recently used one above that.
Concurrent requests are stacked into one traced call by ``@serve.batch``.

Why the id holds the content hash: a reload or a new upload of a version is a new id, so
Ray's router never sends it to a replica that holds the old content, and the old runtime
ages out by LRU. A replica checks the hash against the store before and after loading and
refuses a stale id with :class:`StaleModelIdError` rather than serve other content.

Why the batch function groups by model id itself: Ray releases before 2.54 handed one
``@serve.batch`` call the requests of several multiplexed models (ray-project/ray#56633,
fixed by #59334). The pinned Ray splits such batches; grouping again here keeps that promise
whatever Ray does, and ``ReplicaStats.mixed_batches`` counts any mixed batch Ray hands over.

A hot model (ray-project/ray#48741): Ray routes a request that carries a model id to the
replicas holding that id and to another one only when all of those are full
(``max_ongoing_requests``), so a model loaded on one replica can keep every request there
while the others idle. When ``hot_requests`` requests of one id are in flight here, the
replica calls ``on_hot(model_id)`` (the deployment then loads it on every replica), at most
once per ``HOT_COOLDOWN_S`` per id; from then on the router spreads that id over all of them.

Threads and locking: Ray runs one instance per replica, on one event loop. Loading an
archive and calling a runtime are blocking TensorFlow work, so both run in a worker thread
(``asyncio.to_thread``); the loop keeps batching requests for loaded models meanwhile. Ray's
multiplexer loads one model at a time per replica (a replica-wide lock in
``ray.serve.multiplex``). The counters are guarded by a lock because Ray calls an evicted
model's ``__del__`` on a thread of its executor; the in-flight counts are touched on the
event loop only. No Keras ``predict()`` is ever called.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, cast

import numpy as np
from ray import serve

from yyai_kernel.errors import InvalidInputError, StaleModelIdError, YyaiError
from yyai_kernel.runtime.runtime import (
    ArchiveRuntime,
    RuntimeOutput,
    warmup_batch_sizes,
)
from yyai_kernel.store.store import ArchiveRecord, ModelStore
from yyai_kernel.types import check_name, require_version

log = logging.getLogger("yyai.ray")

DEPLOYMENT_NAME = "YyaiModels"
DEFAULT_MAX_MODELS = 4
DEFAULT_MAX_BATCH_ROWS = 32
DEFAULT_BATCH_WAIT_S = 0.002
DEFAULT_HOT_REQUESTS = 4  # requests of one id in flight on a replica that make every replica load it
HOT_COOLDOWN_S = 30.0  # a replica asks the others to load one id at most this often
SPREADS_KEPT = 64  # ReplicaStats.spreads: the latest ids found hot

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ModelId:
    """The multiplexed model id of one archive's content: ``name:version:sha256``."""

    name: str
    version: int
    sha256: str

    @classmethod
    def parse(cls, text: object) -> ModelId:
        """Read an id; InvalidInputError when it is not ``name:version:<64 hex digits>``."""
        parts = text.split(":") if isinstance(text, str) else []
        if len(parts) != 3 or not _SHA256_RE.match(parts[2]):
            raise InvalidInputError(
                f"{text!r} is not a model id; expected name:version:sha256 (64 lowercase hex digits)"
            )
        return cls(check_name(parts[0]), require_version(parts[1]), parts[2])

    @classmethod
    def of(cls, record: ArchiveRecord) -> ModelId:
        """The id of an archive the store holds."""
        return cls(record.name, record.version, record.sha256)

    def __str__(self) -> str:
        return f"{self.name}:{self.version}:{self.sha256}"


@dataclass(frozen=True)
class ReplicaStats:
    """What one replica did: for tests, the status (where a version is loaded) and the benchmarks.

    ``model_calls`` and ``rows`` count traced calls and their rows per model id;
    ``mixed_batches`` counts ``@serve.batch`` calls that held more than one model id (Ray
    2.54+ splits them, so it stays 0); ``overlapping_calls`` counts batched calls that
    started while a call for another model ran on this replica, which happens when Ray
    splits one batch into concurrent sub-batches. ``failures`` holds the last load error of
    each model id whose load failed here and that is not loaded now. ``node_id`` is the Ray
    node the replica runs on; ``spreads`` the model ids this replica last found hot and asked every
    replica to load (the latest ``SPREADS_KEPT``).
    """

    replica_id: str
    loaded: tuple[str, ...]
    loads: int
    evictions: int
    model_calls: Mapping[str, int]
    rows: Mapping[str, int]
    mixed_batches: int
    overlapping_calls: int
    failures: Mapping[str, str] = field(default_factory=dict)
    node_id: str = ""
    spreads: tuple[str, ...] = ()


@dataclass
class _Counters:
    """The mutable side of ReplicaStats, behind one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    loaded: dict = field(default_factory=dict)  # model id -> None, in load order
    loads: int = 0
    evictions: int = 0
    model_calls: Counter = field(default_factory=Counter)
    rows: Counter = field(default_factory=Counter)
    mixed_batches: int = 0
    overlapping_calls: int = 0
    running: Counter = field(default_factory=Counter)  # model id -> batched calls in flight
    failures: dict = field(default_factory=dict)  # model id -> its last load error
    spreads: deque = field(default_factory=lambda: deque(maxlen=SPREADS_KEPT))  # ids found hot, latest last

    def snapshot(self, replica_id: str, node_id: str) -> ReplicaStats:
        with self.lock:
            return ReplicaStats(replica_id, tuple(self.loaded), self.loads, self.evictions,
                                dict(self.model_calls), dict(self.rows), self.mixed_batches,
                                self.overlapping_calls, dict(self.failures), node_id, tuple(self.spreads))


class LoadedArchive:
    """What the multiplexer caches for one model id: the runtime, and an eviction hook.

    Ray calls ``__del__`` of a model it evicts (its documented release hook), and Python
    calls it again when the object is collected; the hook acts once.
    """

    def __init__(self, model_id: str, runtime: ArchiveRuntime, on_evict: Callable[[str], None]):
        self.model_id = model_id
        self.runtime = runtime
        self._on_evict: Callable[[str], None] | None = on_evict

    def __del__(self):
        on_evict, self._on_evict = self._on_evict, None
        if on_evict is not None:
            on_evict(self.model_id)


class _BatchSettings(Protocol):
    """What ``@serve.batch`` adds to the method it wraps (its own types do not say so)."""

    def set_max_batch_size(self, new_max_batch_size: int) -> None: ...

    def set_batch_wait_timeout_s(self, new_batch_wait_timeout_s: float) -> None: ...


@dataclass(frozen=True)
class _Job:
    """One request inside a batch: its model id, the runtime it was validated for, its rows."""

    model_id: str
    runtime: ArchiveRuntime
    rows: np.ndarray


def _rows_in(jobs: list[_Job]) -> int:
    """The batch size ``@serve.batch`` bounds: rows, since one request may carry several."""
    return sum(len(job.rows) for job in jobs)


def _run_group(jobs: list[_Job]) -> list[RuntimeOutput | Exception]:
    """Run the jobs of one model as one traced call (in a worker thread); cut the output up.

    A failed stacked call is retried job by job, so only the faulty request sees its error.
    """
    runtime = jobs[0].runtime
    bounds, start = [], 0
    for job in jobs:
        bounds.append((start, start + len(job.rows)))
        start += len(job.rows)
    try:
        stacked = jobs[0].rows if len(jobs) == 1 else np.concatenate([job.rows for job in jobs])
        return list(runtime.split(runtime(stacked), bounds))
    except Exception as error:  # noqa: BLE001 - handed to the caller of that request
        if len(jobs) == 1:
            return [error]
        return [_run_group([job])[0] for job in jobs]


class ReplicaModels:
    """The archives of one store that this replica runs; ``run(model_id, inputs)`` answers.

    ``store`` is a folder that every node mounts at the same path. ``trusted`` names the
    models whose archives may run Lambda code (Keras safe_mode off). ``on_hot(model_id)``
    is called (on the event loop; it must not block) when ``hot_requests`` requests of one
    id are in flight here; 0 turns that off. Construct inside a Ray Serve replica.
    """

    def __init__(self, store: str, *, replica_id: str, node_id: str = "", max_models: int = DEFAULT_MAX_MODELS,
                 max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS, batch_wait_s: float = DEFAULT_BATCH_WAIT_S,
                 trusted: tuple[str, ...] | frozenset[str] = (), hot_requests: int = DEFAULT_HOT_REQUESTS,
                 on_hot: Callable[[str], None] | None = None):
        self._store = ModelStore(store)
        self._trusted = frozenset(trusted)
        self._max_rows = max(1, int(max_batch_rows))
        self._counters = _Counters()
        self._replica_id, self._node_id = replica_id, node_id
        self._hot_requests, self._on_hot = int(hot_requests), on_hot
        self._in_flight: Counter = Counter()  # model id -> requests running here (event loop only)
        self._hot_at: dict[str, float] = {}  # model id -> when it was last found hot here
        batching = cast(_BatchSettings, self._run_batched)
        batching.set_max_batch_size(self._max_rows)
        batching.set_batch_wait_timeout_s(float(batch_wait_s))

        async def load_archive(model_id: str) -> LoadedArchive:
            return await asyncio.to_thread(self._load, model_id)

        # Wrapped here, not on a class, so that the limit comes from the application's arguments.
        self._get = serve.multiplexed(max_num_models_per_replica=int(max_models))(load_archive)

    async def run(self, model_id: str, inputs, *, finite: bool = False) -> RuntimeOutput:
        """Run the model ``model_id`` names on ``[B, *shape]`` inputs, batched with concurrent requests
        (``finite``: the caller already checked the values, see ``ArchiveRuntime.validate``)."""
        if not model_id:
            raise InvalidInputError("no model id: call with handle.options(multiplexed_model_id=...)")
        runtime = (await self._get(model_id)).runtime
        rows = runtime.validate(inputs, finite=finite)
        self._begin(model_id)
        try:
            if len(rows) >= self._max_rows:  # already a full batch: waiting for company gains nothing
                result = (await asyncio.to_thread(_run_group, [_Job(model_id, runtime, rows)]))[0]
                self._count_call(model_id, len(rows))
            else:
                result = await self._run_batched(_Job(model_id, runtime, rows))
        finally:
            self._in_flight[model_id] -= 1
            if not self._in_flight[model_id]:
                del self._in_flight[model_id]
        if isinstance(result, Exception):
            raise result
        return result

    async def warm(self, model_id: str) -> str:
        """Load a model on this replica ahead of traffic; returns this replica's id."""
        await self._get(model_id)
        return self._replica_id

    def stats(self) -> ReplicaStats:
        """This replica's counters."""
        return self._counters.snapshot(self._replica_id, self._node_id)

    def _begin(self, model_id: str) -> None:
        """Count a request in; at ``hot_requests`` in flight, ask for the id everywhere (rate-limited)."""
        self._in_flight[model_id] += 1
        if not self._hot_requests or self._on_hot is None or self._in_flight[model_id] < self._hot_requests:
            return
        now = time.monotonic()
        if now - self._hot_at.get(model_id, -HOT_COOLDOWN_S) < HOT_COOLDOWN_S:
            return
        self._hot_at[model_id] = now
        with self._counters.lock:
            self._counters.spreads.append(model_id)
        log.info("replica %s: %d requests of %s in flight; loading it on every replica",
                 self._replica_id, self._in_flight[model_id], model_id)
        self._on_hot(model_id)

    @serve.batch(max_batch_size=DEFAULT_MAX_BATCH_ROWS, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_S,
                 batch_size_fn=_rows_in)
    async def _run_batched(self, jobs: list[_Job]) -> list[RuntimeOutput | Exception]:
        """One batch from Ray: one traced call per model id, never one call across models."""
        groups: dict[str, list[int]] = {}
        for index, job in enumerate(jobs):
            groups.setdefault(job.model_id, []).append(index)
        results: list = [None] * len(jobs)
        with self._counters.lock:
            self._counters.mixed_batches += int(len(groups) > 1)
            others = sum(self._counters.running.values()) - sum(self._counters.running[m] for m in groups)
            self._counters.overlapping_calls += int(others > 0)
            self._counters.running.update(groups.keys())
        try:
            for model_id, indices in groups.items():
                group = [jobs[i] for i in indices]
                for index, result in zip(indices, await asyncio.to_thread(_run_group, group), strict=True):
                    results[index] = result
                self._count_call(model_id, _rows_in(group))
        finally:
            with self._counters.lock:
                self._counters.running.subtract(groups.keys())
        return results

    def _count_call(self, model_id: str, rows: int) -> None:
        with self._counters.lock:
            self._counters.model_calls[model_id] += 1
            self._counters.rows[model_id] += rows

    def _load(self, model_id: str) -> LoadedArchive:
        """Find the id's archive in the store, check its content, load and warm it (blocking)."""
        wanted = ModelId.parse(model_id)
        record = self._current(wanted)
        try:
            runtime = ArchiveRuntime.load(
                record.path, trusted=wanted.name in self._trusted,
                warmup_sizes=warmup_batch_sizes(self._max_rows), sha256=record.sha256,
            )
        except YyaiError as error:
            with self._counters.lock:
                self._counters.failures[model_id] = error.message
            raise
        self._current(wanted)  # the file may have been replaced while it loaded
        with self._counters.lock:
            self._counters.loads += 1
            self._counters.loaded[model_id] = None
            self._counters.failures.pop(model_id, None)
        log.info("replica %s loaded %s in %.2fs", self._replica_id, model_id, runtime.load_time_s)
        return LoadedArchive(model_id, runtime, self._evicted)

    def _current(self, wanted: ModelId) -> ArchiveRecord:
        """The store's archive for the id's name and version; StaleModelIdError if its hash differs."""
        self._store.scan()  # re-hashes only files whose size, mtime or inode changed
        record = self._store.record(wanted.name, wanted.version)
        if record.sha256 != wanted.sha256:
            raise StaleModelIdError(
                f"model id {wanted} is stale: the store now holds {wanted.name} version "
                f"{wanted.version} with sha256 {record.sha256}; resolve the id again"
            )
        return record

    def _evicted(self, model_id: str) -> None:
        with self._counters.lock:
            if model_id in self._counters.loaded:
                del self._counters.loaded[model_id]
                self._counters.evictions += 1
