"""What the model replicas hold: a short-lived, cached view of every replica's counters.

The ingress asks each model replica for its :class:`~yyai_kernel.ray_app.models.ReplicaStats`
(``handle.broadcast("stats")``) to say which versions are loaded where and which loads
failed. That is a status question, never a request-path one; the answer is cached for a
second so that a dashboard polling ``/models/_status`` costs the replicas little, and it
is dropped after every load the ingress itself asks for.

Locking: one lock guards the cached snapshot; the broadcast runs outside it. Blocking:
call from a worker thread, never from the event loop (``.results()`` waits).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("yyai.ray")

CACHE_S = 1.0


@dataclass(frozen=True)
class ReplicaSnapshot:
    """Every model replica's loaded ids and failed loads, at one moment."""

    replicas: int = 0
    holders: Counter = field(default_factory=Counter)  # model id -> replicas holding it
    failures: dict = field(default_factory=dict)  # model id -> a load error, where no replica holds it

    @classmethod
    def of(cls, stats: list) -> ReplicaSnapshot:
        holders = Counter(model_id for s in stats for model_id in s.loaded)
        failures = {model_id: error for s in stats for model_id, error in s.failures.items()
                    if model_id not in holders}
        return cls(len(stats), holders, failures)

    def loaded(self) -> set[str]:
        return set(self.holders)


class ReplicaView:
    """The model deployment's replicas as the ingress sees them (``snapshot()``, cached)."""

    def __init__(self, models, cache_s: float = CACHE_S):
        self._models = models
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._snapshot: ReplicaSnapshot | None = None
        self._taken = 0.0

    def snapshot(self) -> ReplicaSnapshot:
        with self._lock:
            if self._snapshot is not None and time.monotonic() - self._taken < self._cache_s:
                return self._snapshot
        try:
            snapshot = ReplicaSnapshot.of(self._models.broadcast("stats").results())
        except Exception as error:  # noqa: BLE001 - a status must answer while replicas restart
            log.warning("could not read the model replicas' state: %s", error)
            snapshot = ReplicaSnapshot()
        with self._lock:
            self._snapshot, self._taken = snapshot, time.monotonic()
        return snapshot

    def forget(self) -> None:
        """Drop the cached snapshot (after a load): the next status asks the replicas again."""
        with self._lock:
            self._snapshot = None
