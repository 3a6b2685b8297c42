"""Residency: which versions stay loaded, within a budget, and the order loads run in.

A registry with a budget (``--memory-budget SIZE``, ``--max-loaded N``) keeps what it
loaded only while it fits. Each version's cost is measured at its load (``memory.py``);
before a load the registry makes room for the version's last measured cost (or the mean
cost of what is loaded, for a version never measured), and after it checks again with the
real figure. Room is made by unloading versions in this order (:func:`eviction_order`):

1. versions nothing names: loaded by an operator or by a request that named them;
2. defaults that follow the model's latest version;
3. protected versions: a pinned default, a version a label names, a side of a traffic
   policy. They go last, and only when the budget cannot be met otherwise.

Within each group the least recently used goes first. A version being loaded, and the
versions of a model whose load lock is held (a swap in progress), are never chosen. An
unloaded version loads again on its next request (a cold start), unlike one an operator
unloaded, which stays unloaded until it is loaded again.

Loads run one at a time, through a :class:`LoadGate` that serves the waiting loads by
priority (a request that waits first, then an operator's change, then the warm set, then
background warming). One at a time is what makes a load's measured cost its own; on the
CPUs this serves on, Keras loads and traces under the GIL, so parallel loads gained little.

Locking: the gate's condition guards its queue; :class:`ResidencyStats` has one small lock
for its counters; :class:`Deadlines` one for its heap. Nothing here is held while a model runs.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum

from yyai_kernel.types import ResidencyStatus

log = logging.getLogger("yyai.registry")


class Priority(IntEnum):
    """Which waiting load the gate lets through first (lowest first)."""

    DEMAND = 0  # a request waits for it (a cold start)
    MANAGE = 1  # an operator's load, reload, pin or upload
    WARM = 2  # the warm set, before the server says ready
    BACKGROUND = 3  # warming after ready, when nothing else waits


class Protection(IntEnum):
    """How long a loaded version resists eviction (lowest goes first)."""

    NONE = 0  # named by nothing: an operator's load, or a request that named it
    DEFAULT = 1  # the model's default, following the latest version
    NAMED = 2  # a pinned default, a label's version or a traffic policy's side


@dataclass(frozen=True)
class Resident:
    """One loaded version as the budget sees it: its cost, when it last answered, its protection."""

    name: str
    version: int
    cost: int
    last_used: float
    protection: Protection

    @property
    def key(self) -> tuple[str, int]:
        return self.name, self.version


def eviction_order(residents: Iterable[Resident]) -> list[Resident]:
    """The order in which loaded versions are unloaded: unprotected first, least recently used first."""
    return sorted(residents, key=lambda r: (r.protection, r.last_used))


@dataclass(frozen=True)
class Budget:
    """What may stay loaded: at most ``memory_bytes`` of measured cost and ``max_loaded`` versions (None: no bound)."""

    memory_bytes: int | None = None
    max_loaded: int | None = None

    @property
    def bounded(self) -> bool:
        return self.memory_bytes is not None or self.max_loaded is not None

    def over(self, count: int, used: int) -> bool:
        """Whether ``count`` versions that cost ``used`` bytes exceed the budget."""
        return ((self.memory_bytes is not None and used > self.memory_bytes)
                or (self.max_loaded is not None and count > self.max_loaded))

    def room(self, count: int, used: int) -> bool:
        """Whether one more version fits beside ``count`` that cost ``used`` (for background warming)."""
        return not self.over(count + 1, used)


class LoadGate:
    """One load at a time, the waiting ones served by :class:`Priority`, then in arrival order.

    A server closes the gate until TensorFlow has started (:meth:`close`, :meth:`open`): a
    request's cold start must not import TensorFlow in one thread while the start-up imports
    it in another (TensorFlow's modules are not safe to import from two threads at once).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = True
        self._busy = False
        self._queue: list[tuple[int, int]] = []
        self._tickets = itertools.count()

    @contextmanager
    def hold(self, priority: Priority) -> Iterator[None]:
        with self._cond:
            ticket = (int(priority), next(self._tickets))
            heapq.heappush(self._queue, ticket)
            while not self._open or self._busy or self._queue[0] != ticket:
                self._cond.wait()
            heapq.heappop(self._queue)
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def close(self) -> None:
        """Hold every load until :meth:`open`."""
        with self._cond:
            self._open = False

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def waiting(self, below: Priority) -> bool:
        """Whether a load of higher priority than ``below`` waits (background warming yields to it)."""
        with self._cond:
            return any(p < below for p, _ in self._queue)


class ResidencyStats:
    """Counters of loads, evictions and cold starts since the registry started (``/metrics``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loads = 0
        self.load_failures = 0
        self.evictions = 0
        self.cold_starts = 0
        self.cold_start_wait_s = 0.0
        self.cold_start_timeouts = 0

    def loaded(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.loads += 1
            else:
                self.load_failures += 1

    def evicted(self, count: int = 1) -> None:
        with self._lock:
            self.evictions += count

    def cold_start(self, waited_s: float, *, timed_out: bool = False) -> None:
        with self._lock:
            self.cold_starts += 1
            self.cold_start_wait_s += waited_s
            self.cold_start_timeouts += timed_out

    def status(self, budget: Budget, residents: list[Resident], rss_bytes: int) -> ResidencyStatus:
        with self._lock:
            return ResidencyStatus(
                budget_bytes=budget.memory_bytes, max_loaded=budget.max_loaded, loaded=len(residents),
                resident_bytes=sum(r.cost for r in residents), process_rss_bytes=rss_bytes, loads=self.loads,
                load_failures=self.load_failures, evictions=self.evictions, cold_starts=self.cold_starts,
                cold_start_wait_s=round(self.cold_start_wait_s, 4), cold_start_timeouts=self.cold_start_timeouts)


class Residency:
    """Makes room within a :class:`Budget` by unloading versions in :func:`eviction_order`.

    ``residents()`` lists what is loaded now; ``evict(resident)`` unloads one and says
    whether it did (it declines a version whose model is busy swapping).
    """

    def __init__(self, budget: Budget, residents: Callable[[], list[Resident]],
                 evict: Callable[[Resident], bool]):
        self.budget = budget
        self.residents = residents
        self._evict = evict
        self.stats = ResidencyStats()
        self.gate = LoadGate()
        self._warned = False

    def estimate(self, measured: int | None) -> int:
        """What a version about to load will cost: its last measured cost, else the mean of what is loaded."""
        if measured is not None:
            return measured
        costs = [r.cost for r in self.residents() if r.cost]
        return sum(costs) // len(costs) if costs else 0

    def fit(self, keep: tuple[str, int], incoming: int | None = None) -> list[Resident]:
        """Unload versions until the loaded ones fit the budget; ``keep`` stays.

        ``incoming``: ``keep`` is about to load and will cost about that much (None: it is
        loaded, and its measured cost is counted). Returns what was unloaded.
        """
        if not self.budget.bounded:
            return []
        residents = self.residents()
        count, used = len(residents), sum(r.cost for r in residents)
        if incoming is not None and all(r.key != keep for r in residents):
            count, used = count + 1, used + incoming
        evicted = []
        for victim in eviction_order(r for r in residents if r.key != keep):
            if not self.budget.over(count, used):
                break
            if self._evict(victim):
                count, used = count - 1, used - victim.cost
                evicted.append(victim)
        if evicted:
            self.stats.evicted(len(evicted))
            log.info("Unloaded %s to stay within the budget", ", ".join(f"{r.name} v{r.version}" for r in evicted))
        if self.budget.over(count, used) and not self._warned:
            self._warned = True
            log.warning("The loaded versions (%d, %d bytes) exceed the budget and none can be unloaded now: "
                        "raise --memory-budget or --max-loaded", count, used)
        elif not self.budget.over(count, used):
            self._warned = False
        return evicted

    def room_for_one_more(self) -> bool:
        """Whether one more version of the mean cost fits without unloading anything."""
        residents = self.residents()
        return self.budget.room(len(residents), sum(r.cost for r in residents) + self.estimate(None))

    def status(self, rss_bytes: int) -> ResidencyStatus:
        return self.stats.status(self.budget, self.residents(), rss_bytes)


class Deadlines:
    """Runs callbacks after a delay, on one daemon thread (a cold start's bounded wait)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def after(self, seconds: float, callback: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._ids), callback))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="yyai-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                _, _, callback = heapq.heappop(self._heap)
            try:
                callback()
            except Exception:  # a callback's bug must not stop the others
                log.exception("A deadline callback failed")
