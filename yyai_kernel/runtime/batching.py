"""Dynamic batching: stack concurrent requests for one runtime into one model call.

A traced call on a batch of 32 costs little more than on a batch of 1, so under load it
pays to wait a moment for company. Requests queue here; one worker thread takes as many
rows as are waiting (up to ``max_batch_size``), waiting at most ``max_delay_ms`` after
the first arrived for the batch to fill, runs the call once and hands each caller its
own rows. Inputs are validated before they are queued, so a bad request fails alone;
should a batched call fail anyway, its requests are retried one by one so that only the
faulty one sees the error.

Requests and answers cross threads in gatherings (``handoff.py``): a thread that gathers
(an event loop iteration, a channel reader's message) hands its requests over in one
:meth:`DynamicBatcher.hand_over`, one lock and at most one wake-up of the worker, and the
worker makes each batch's answers inside one gathering, so they wake their event loop (or
go down their channel) once per batch. A request held by a gathering is *reserved*: the
batcher, closed meanwhile, still runs it, and its worker does not stop before it arrived.

Locking: ``_cond`` guards the queue, its row count, the reservations and ``_closed``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Generic, TypeVar

import numpy as np

from yyai_kernel.runtime import handoff


class BatcherClosed(RuntimeError):
    """The batcher was closed (its runtime was swapped out); look the runtime up again."""


Out = TypeVar("Out")
_Item = tuple[np.ndarray, "Future[Out]", float]


class DynamicBatcher(Generic[Out]):
    """Queue requests for ``fn`` and run them in batches on one worker thread.

    ``fn(batch)`` runs the model; ``split(output, bounds)`` cuts its output back into
    per-request outputs; ``on_batch(size)`` is told each batch's row count.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], Out],
        split: Callable[[Out, list[tuple[int, int]]], Iterable[Out]],
        *,
        max_batch_size: int,
        max_delay_ms: float,
        on_batch: Callable[[int], None] | None = None,
        name: str = "batcher",
    ):
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_delay_s = max(0.0, float(max_delay_ms)) / 1000.0
        self._fn = fn
        self._split = split
        self._on_batch = on_batch or (lambda size: None)
        self._pending: deque[_Item[Out]] = deque()
        self._rows = 0
        self._last_batch_rows = 0
        self._reserved = 0  # held by gatherings, not handed over yet
        self._closed = False
        self._cond = threading.Condition()
        self._worker = threading.Thread(target=self._run, name=f"yyai-{name}", daemon=True)
        self._worker.start()

    def submit(self, batch: np.ndarray) -> Future[Out]:
        """Queue a validated ``[n, ...]`` array; the Future resolves to its own output. A thread
        that gathers (``handoff.py``) holds it and hands it over with the others it gathered."""
        future: Future[Out] = Future()
        item = (batch, future, time.monotonic())
        with self._cond:
            if self._closed:
                raise BatcherClosed("This runtime is no longer serving.")
            if handoff.hold(self, item):
                self._reserved += 1
            else:
                self._queue([item])
        return future

    def hand_over(self, items: list[_Item[Out]]) -> None:
        """Queue requests a gathering held (reserved by :meth:`submit`), under one lock."""
        with self._cond:
            self._reserved -= len(items)
            self._queue(items)

    def _queue(self, items: list[_Item[Out]]) -> None:
        """Append to the queue; caller holds ``_cond``."""
        was_idle = not self._pending
        self._pending.extend(items)
        for item in items:
            self._rows += len(item[0])
        # Wake the worker only when it has something new to do: the first requests of a
        # batch, or a full batch. While it waits for company it wakes at the deadline
        # anyway, and waking it for every arrival costs a thread switch (and a GIL
        # hand-off) per request.
        if was_idle or self._rows >= self.max_batch_size:
            self._cond.notify()

    def close(self, wait: bool = True) -> None:
        """Stop taking requests; those already queued (or held by a gathering) still run.
        Optionally join the worker: never from a thread whose gathering still holds requests
        for it (the server's threads close with ``wait=False``)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if wait and threading.current_thread() is not self._worker:
            self._worker.join()

    def _take_batch(self) -> list[_Item[Out]] | None:
        """Block until a batch is ready (full, or its first request waited long enough)."""
        with self._cond:
            while not self._pending:
                if self._closed and not self._reserved:
                    return None
                self._cond.wait()
            deadline = self._pending[0][2] + self.max_delay_s
            expect_company = self._rows > 1 or self._last_batch_rows > 1
            while expect_company and self._rows < self.max_batch_size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            taken: list[_Item[Out]] = []
            rows = 0
            while self._pending and (not taken or rows + len(self._pending[0][0]) <= self.max_batch_size):
                item = self._pending.popleft()
                taken.append(item)
                rows += len(item[0])
            self._rows -= rows
            self._last_batch_rows = rows
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take_batch()
            if taken is None:
                return
            with handoff.gathered():  # the batch's answers leave together
                self._execute(taken)
            del taken  # drop references to inputs and futures before waiting again

    def _execute(self, taken: list[_Item[Out]]) -> None:
        arrays = [item[0] for item in taken]
        try:
            output = self._fn(arrays[0] if len(arrays) == 1 else np.concatenate(arrays))
        except BaseException as error:  # noqa: BLE001 - handed to the callers' futures
            if len(taken) == 1:
                taken[0][1].set_exception(error)
            else:  # never let one request poison the others: retry each alone
                for item in taken:
                    self._execute([item])
            return
        self._on_batch(sum(len(a) for a in arrays))
        bounds, start = [], 0
        for array in arrays:
            bounds.append((start, start + len(array)))
            start += len(array)
        for item, part in zip(taken, self._split(output, bounds)):
            item[1].set_result(part)
