"""Shadow runs: a request's input run again on another version, off the reply's path, and compared.

A run is queued when the real answer is ready (:meth:`ShadowRunner.offer`, called from the
real call's done-callback, only appends to a queue). A thread of the runner's own drains
the queue in batches, after gathering runs for up to ``GATHER_S``: the runs for one version
are stacked into one input and submitted as one call on that version's batcher, and
compared in one pass when it returns, so a busy stream of shadows costs a model call and a
thread hop per batch rather than per request.
At most ``max_pending`` runs are queued or running; past that ``offer`` refuses and the
caller counts the run as dropped, so a busy server sheds shadow work first.

A shadow version that raises, is unloaded, or cannot take the input fails its runs (each
run's ``traffic.failed`` is told why), never the real reply; a batched call that raises
fails every run in it. Locking: the runner's lock guards its queue and pending count;
the drain waits on it (a condition) while runs gather; nothing is held while a model runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from yyai_kernel.errors import YyaiError
from yyai_kernel.registry.protocol import ModelView
from yyai_kernel.rollout.compare import RowComparison, compare_outputs
from yyai_kernel.runtime.images import thumbnail_png
from yyai_kernel.types import (
    Disagreement,
    InputReference,
    OutputSpec,
    Prediction,
    VersionDescription,
)

log = logging.getLogger("yyai.traffic")

MAX_BATCH_ROWS = 128  # rows stacked into one shadow call
# How long queued runs wait for company before their call. Shadows are off the reply's path,
# so waiting costs nothing there, and one call of many rows takes far less of the cores the
# real requests need than many small ones. A 100% shadow at c=8 on two cores, measured side
# by side (bench/RESULTS.md, Shadow traffic cost): each run called at once added 35-50% to
# the real p50; 20 ms windows of up to 64 rows, 17%; 50 ms windows of up to 128 rows, 11-12%
# (none dropped: max_pending must hold more than a window of runs).
GATHER_S = 0.05


@dataclass(frozen=True)
class ShadowRun:
    """One request's shadow: its input as the default saw it, the answer that was sent, and
    ``traffic`` (``compared(...)`` and ``failed(message)``) to report to."""

    model: ModelView
    version: int
    described: VersionDescription
    x: np.ndarray
    remake: Callable[[VersionDescription], np.ndarray]
    filenames: tuple[str | None, ...] | None
    real: Prediction
    real_ms: float
    traffic: Any


class ShadowRunner:
    """Runs queued shadows on one thread, a batch per version at a time (see the module doc)."""

    def __init__(self, registry, max_pending: int):
        self.registry = registry
        self.max_pending = max(0, int(max_pending))
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="yyai-shadow")
        self._lock = threading.Lock()
        self._gathered = threading.Condition(self._lock)
        self._queue: deque[ShadowRun] = deque()
        self._rows = 0
        self._pending = 0
        self._draining = False

    @property
    def pending(self) -> int:
        return self._pending

    def offer(self, run: ShadowRun) -> bool:
        """Queue a run; False (dropped) when ``max_pending`` runs are already queued or running."""
        with self._lock:
            if self._pending >= self.max_pending:
                return False
            self._pending += 1
            self._queue.append(run)
            self._rows += len(run.x)
            if self._rows >= MAX_BATCH_ROWS:
                self._gathered.notify()
            if self._draining:
                return True
            self._draining = True
        return self._post(self._drain, [run])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _post(self, work: Callable[[], None], runs: list[ShadowRun]) -> bool:
        """Run ``work`` on the runner's thread; once it is shut down, the runs are abandoned."""
        try:
            self._pool.submit(work)
            return True
        except RuntimeError:
            self._release(len(runs))
            return False

    def _release(self, count: int) -> None:
        with self._lock:
            self._pending -= count

    def _drain(self) -> None:
        with self._gathered:
            self._gathered.wait_for(lambda: self._rows >= MAX_BATCH_ROWS, timeout=GATHER_S)
            runs, self._draining, self._rows = list(self._queue), False, 0
            self._queue.clear()
        groups: dict[tuple[str, int], list[ShadowRun]] = {}
        for run in runs:
            groups.setdefault((run.model.name, run.version), []).append(run)
        for group in groups.values():
            batch: list[ShadowRun] = []
            rows = 0
            for run in group:
                if batch and rows + len(run.x) > MAX_BATCH_ROWS:
                    self._start(batch)
                    batch, rows = [], 0
                batch.append(run)
                rows += len(run.x)
            self._start(batch)

    def _start(self, runs: list[ShadowRun]) -> None:
        """The runs' inputs as the shadow's manifest says, stacked, submitted as one call."""
        try:
            target = runs[0].model.target(runs[0].version)
            shadow = target.description
        except Exception as error:  # noqa: BLE001 - not in the store
            self._fail(runs, error)
            return
        ready, inputs = [], []
        for run in runs:
            try:
                inputs.append(run.x if shadow.input == run.described.input else run.remake(shadow))
                ready.append(run)
            except Exception as error:  # noqa: BLE001 - this input does not fit the shadow
                self._fail([run], error)
        if not ready:
            return
        started = time.perf_counter()
        try:
            pending = self.registry.submit(target, inputs[0] if len(inputs) == 1 else np.concatenate(inputs))
        except Exception as error:  # noqa: BLE001 - unloaded, refused the input: counted, nothing more
            self._fail(ready, error)
            return
        sizes = [len(x) for x in inputs]

        def shadow_done(done: Future) -> None:  # the shadow's batcher thread: hand back, never compare here
            shadow_ms = (time.perf_counter() - started) * 1000
            self._post(lambda: self._compare(ready, sizes, done, shadow_ms), ready)

        pending.add_done_callback(shadow_done)

    def _compare(self, runs: list[ShadowRun], sizes: list[int], done: Future, shadow_ms: float) -> None:
        try:
            answer = done.result()
            best = answer.best()
        except Exception as error:  # noqa: BLE001 - the shadow raised
            self._fail(runs, error)
            return
        start = 0
        for run, size in zip(runs, sizes):
            part, start = best[start:start + size], start + size
            try:
                rows = compare_outputs(run.real.best(), run.real.output, part, answer.output)
            except Exception as error:  # noqa: BLE001 - outputs that cannot be compared
                self._fail([run], error)
                continue
            try:
                run.traffic.compared(rows, run.real_ms, shadow_ms,
                                     lambda id_, i, r, run=run, part=part: _disagreement(run, part, answer.output,
                                                                                         id_, i, r))
            except Exception:  # pragma: no cover - a bug here must not stop the runner
                log.exception("recording a shadow comparison failed")
            finally:
                self._release(1)

    def _fail(self, runs: list[ShadowRun], error: BaseException) -> None:
        message = _short(error)
        for run in runs:
            run.traffic.failed(f"v{run.version}: {message}")
        self._release(len(runs))


def _short(error: BaseException) -> str:
    """An error in one line: a yyai error's message, else its type and its last telling line
    (TensorFlow's messages carry a trace of where the op was defined)."""
    if isinstance(error, YyaiError):
        return error.message
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.strip().startswith("[[")]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:300]


def _disagreement(run: ShadowRun, shadow: np.ndarray, shadow_spec: OutputSpec, id_: int, row: int,
                  r: RowComparison) -> Disagreement:
    """A ring entry: a thumbnail and summary of the row's input, and both outputs."""
    x = np.asarray(run.x[row], dtype=np.float64)
    filename = run.filenames[row] if run.filenames and row < len(run.filenames) else None
    reference = InputReference(tuple(int(d) for d in x.shape), float(x.min()), float(x.max()), float(x.mean()),
                               thumbnail_png(run.x[row], run.described.input), filename)
    labels, shadow_labels = run.real.output.columns, shadow_spec.columns
    return Disagreement(id_, time.time(), run.real.version, run.version, reference,
                        tuple(float(v) for v in run.real.best()[row]), tuple(float(v) for v in shadow[row]),
                        tuple(labels), tuple(shadow_labels), r.top, r.shadow_top,
                        None if r.abs_diff is None else round(float(r.abs_diff), 6))
