"""Traffic: the canary and shadow routing of requests that name no version, and its figures.

The data plane asks :meth:`TrafficRouter.plan` where each prediction request goes. A
request that names a version or a label is served as named and never counted here. One
that names none is placed by the model's traffic policy (``rollout.TrafficPolicy``,
read from the store, so every worker process and front end follows the same policy):
to the canary, or to the default, in which case it may also be shadowed.

A shadow run never touches the real reply: it is queued when the real answer is ready
and run, in batches, by ``shadow.ShadowRunner`` off the reply's path, then compared with
the answer that was sent. Past ``shadow_max_pending`` queued or running runs, new ones are
dropped and counted, so a busy server sheds shadow work first. A shadow version that
raises, is unloaded or cannot take the input counts an error and nothing else.

Figures are per model and start afresh when its policy changes or is cleared
(:class:`ModelTraffic`). Locking: the router's lock guards its map of models; each
:class:`ModelTraffic` has its own lock for its counters, windows and ring of recent
disagreements. None is held while a model runs.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace

import numpy as np

from yyai_kernel.registry.protocol import Target
from yyai_kernel.rollout.compare import RowComparison
from yyai_kernel.rollout.shadow import ShadowRun, ShadowRunner
from yyai_kernel.types import (
    CanaryStats,
    Disagreement,
    Latency,
    ModelStatus,
    RolloutStats,
    ShadowStats,
    TrafficPolicy,
    VersionDescription,
)

log = logging.getLogger("yyai.traffic")

LATENCY_WINDOW = 2048


@dataclass(frozen=True)
class Plan:
    """How to serve one request: its resolved ``target`` (as named, or the default), the
    ``canary`` version that answers instead (the target answers when the canary cannot),
    the ``shadow`` version, and the figures to count it in."""

    target: Target
    started: float
    canary: int | None = None
    shadow: int | None = None
    traffic: ModelTraffic | None = None


class ModelTraffic:
    """One model's rollout figures under one policy, and its last ``keep`` disagreements."""

    def __init__(self, policy: TrafficPolicy, keep: int):
        self.policy = policy
        self.since = time.time()
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(("default", "canary", "fallbacks", "runs", "compared", "agreed", "errors",
                                      "dropped"), 0)
        self._diff_sum, self._diff_rows = 0.0, 0
        self._diff_max: float | None = None
        self._last_error: str | None = None
        self._latency: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._real_latency: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._disagreements: deque[Disagreement] = deque(maxlen=max(0, keep))
        self._next_id = 1

    def count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._counts[key] += 1

    def failed(self, message: str) -> None:
        with self._lock:
            self._counts["errors"] += 1
            self._last_error = message

    def compared(self, rows: list[RowComparison], real_ms: float, shadow_ms: float,
                 disagreement: Callable[[int, int, RowComparison], Disagreement]) -> None:
        """Record one shadow run's rows; ``disagreement(id, row, comparison)`` builds a ring entry."""
        diffs = [r.abs_diff for r in rows if r.abs_diff is not None]
        with self._lock:
            self._counts["compared"] += len(rows)
            self._counts["agreed"] += sum(r.agree for r in rows)
            self._diff_sum += sum(diffs)
            self._diff_rows += len(diffs)
            if diffs:
                self._diff_max = max(diffs + ([self._diff_max] if self._diff_max is not None else []))
            self._latency.append(shadow_ms)
            self._real_latency.append(real_ms)
            wanted = [(i, r) for i, r in enumerate(rows) if not r.agree][-self._disagreements.maxlen:] \
                if self._disagreements.maxlen else []
            first = self._next_id
            self._next_id += len(wanted)
        entries = [disagreement(first + n, i, r) for n, (i, r) in enumerate(wanted)]  # PNGs outside the lock
        with self._lock:
            self._disagreements.extend(entries)

    def stats(self) -> RolloutStats:
        with self._lock:
            counts = dict(self._counts)
            latency, real = list(self._latency), list(self._real_latency)
            diff_mean = self._diff_sum / self._diff_rows if self._diff_rows else None
            diff_max, last_error, kept = self._diff_max, self._last_error, len(self._disagreements)
        policy = self.policy
        canary = shadow = None
        if policy.canary is not None:
            canary = CanaryStats(policy.canary.version, counts["canary"], counts["fallbacks"])
        if policy.shadow is not None:
            shadow = ShadowStats(policy.shadow.version, counts["runs"], counts["compared"], counts["agreed"],
                                 counts["errors"], counts["dropped"], _round(diff_max), _round(diff_mean),
                                 last_error, Latency.of(latency), Latency.of(real))
        return RolloutStats(self.since, counts["default"], canary, shadow, kept)

    def disagreements(self) -> list[Disagreement]:
        """The kept disagreements, newest first."""
        with self._lock:
            return list(reversed(self._disagreements))


class TrafficRouter:
    """Places default requests by each model's policy and runs the shadows (see the module doc)."""

    def __init__(self, registry, *, max_pending: int = 64, keep: int = 32, seed: int | None = None):
        self.keep = keep
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._models: dict[str, ModelTraffic] = {}
        self.runner = ShadowRunner(registry, max_pending)

    # --- placing requests -------------------------------------------------------------------

    def plan(self, target: Target, key: str | None = None) -> Plan:
        """Where a resolved request goes; ``key`` is its sticky key. A request that named its
        version is served as named; one that did not follows the policy of the view it was
        resolved in, with the default (``target``) as its fallback."""
        started = time.perf_counter()
        policy = target.model.policy
        if target.named:
            return Plan(target, started)
        if policy is None:
            self._forget(target.name)
            return Plan(target, started)
        traffic = self._traffic(target.name, policy)
        choice = policy.choose(target.name, target.version, key, self._rng)
        traffic.count("default", *(("canary",) if choice.canary is not None else ()))
        if choice.canary is not None:
            return Plan(target, started, canary=choice.canary, traffic=traffic)
        return Plan(target, started, shadow=choice.shadow, traffic=traffic)

    def fell_back(self, plan: Plan) -> None:
        """The canary could not take a request (not serving, or refused its input): the default answers."""
        if plan.traffic is not None:
            plan.traffic.count("fallbacks")

    # --- figures ------------------------------------------------------------------------------

    def stats(self, name: str, policy: TrafficPolicy | None) -> RolloutStats | None:
        """The running figures of ``name`` under ``policy`` (None without a policy)."""
        if policy is None:
            self._forget(name)
            return None
        return self._traffic(name, policy).stats()

    def disagreements(self, name: str, policy: TrafficPolicy | None) -> list[Disagreement]:
        """The last disagreements of ``name`` under ``policy`` (none without one)."""
        return [] if policy is None else self._traffic(name, policy).disagreements()

    def with_rollout(self, status: ModelStatus) -> ModelStatus:
        """A model's status with its running rollout figures."""
        return replace(status, rollout=self.stats(status.name, status.traffic))

    def _traffic(self, name: str, policy: TrafficPolicy) -> ModelTraffic:
        """The figures of ``name``, started afresh when its policy changed (here or in another process)."""
        with self._lock:
            traffic = self._models.get(name)
            if traffic is None or traffic.policy != policy:
                traffic = self._models[name] = ModelTraffic(policy, self.keep)
            return traffic

    def _forget(self, name: str) -> None:
        """The policy was cleared: the next one, even an equal one, starts its figures afresh."""
        if name in self._models:  # a plain read first: most models never have a policy
            with self._lock:
                self._models.pop(name, None)

    def close(self) -> None:
        self.runner.close()

    # --- shadows ------------------------------------------------------------------------------

    def shadow(self, plan: Plan, described: VersionDescription, x: np.ndarray, pending: Future,
               remake: Callable[[VersionDescription], np.ndarray],
               filenames: list[str | None] | None = None) -> None:
        """Once the real answer is ready, queue its shadow run (when the plan has one)."""
        if plan.shadow is None or plan.traffic is None:
            return
        files = tuple(filenames) if filenames else None
        shadow, traffic = plan.shadow, plan.traffic

        def real_done(done: Future) -> None:  # the real call's thread: only queue, never wait
            try:
                if done.cancelled() or done.exception() is not None:
                    return
                real_ms = (time.perf_counter() - plan.started) * 1000
                run = ShadowRun(plan.target.model, shadow, described, x, remake, files, done.result(), real_ms,
                                traffic)
                if self.runner.offer(run):
                    traffic.count("runs")
                else:
                    traffic.count("dropped")
            except Exception:  # pragma: no cover - never let a shadow disturb the real call's thread
                log.exception("queueing a shadow run failed")

        pending.add_done_callback(real_done)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
