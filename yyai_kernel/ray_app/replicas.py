"""Every replica of the deployment, as one replica reaches them: broadcasts, and a cached view of their counters.

:class:`Replicas` calls a method on every replica of this deployment, this one included
(``handle.broadcast``): ``warm`` (load a model id), ``apply`` (a state change after a
management call) and ``stats`` (each replica's :class:`~yyai_kernel.ray_app.models.ReplicaStats`).

:class:`ReplicaView` answers which versions are loaded where and which loads failed. That is
a status question, never a request-path one; the answer is cached for a second so that a
dashboard polling ``/models/_status`` costs the replicas little, and it is dropped after
every load this replica asks for.

Locking: one lock guards the cached snapshot; the broadcast runs outside it. Blocking:
call from a worker thread, never from the event loop (``.results()`` waits).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ray import serve
from ray.serve.handle import DeploymentHandle

log = logging.getLogger("yyai.ray")

CACHE_S = 1.0


class Replicas:
    """The replicas of deployment ``deployment`` in application ``app`` (the handle is made on first use)."""

    def __init__(self, deployment: str, app: str):
        self._ids = (deployment, app)
        self._handle: DeploymentHandle | None = None

    def _broadcast(self, method: str, *args) -> list:
        if self._handle is None:
            self._handle = serve.get_deployment_handle(*self._ids)
        return self._handle.broadcast(method, *args).results()

    def warm(self, model_id: str) -> int:
        """Load a model id on every replica; how many hold it."""
        return len(self._broadcast("warm", model_id))

    def apply(self, change) -> int:
        """Apply a ``StateChange`` on every replica; how many applied it."""
        return sum(self._broadcast("apply", change))

    def stats(self) -> list:
        """Every replica's ``ReplicaStats``."""
        return self._broadcast("stats")


@dataclass(frozen=True)
class ReplicaSnapshot:
    """Every replica's loaded ids and failed loads, at one moment."""

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
    """The replicas' counters as a status needs them (``snapshot()``, cached); ``stats()`` asks them all."""

    def __init__(self, stats: Callable[[], list], cache_s: float = CACHE_S):
        self._stats = stats
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._snapshot: ReplicaSnapshot | None = None
        self._taken = 0.0

    def snapshot(self) -> ReplicaSnapshot:
        with self._lock:
            if self._snapshot is not None and time.monotonic() - self._taken < self._cache_s:
                return self._snapshot
        try:
            snapshot = ReplicaSnapshot.of(self._stats())
        except Exception as error:  # noqa: BLE001 - a status must answer while replicas restart
            log.warning("could not read the replicas' state: %s", error)
            snapshot = ReplicaSnapshot()
        with self._lock:
            self._snapshot, self._taken = snapshot, time.monotonic()
        return snapshot

    def forget(self) -> None:
        """Drop the cached snapshot (after a load): the next status asks the replicas again."""
        with self._lock:
            self._snapshot = None
