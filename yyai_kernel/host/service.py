"""HostService: the model host's side of every front end's channel.

What a front end asks, and how the host answers it:

* ``hello``: the front end's number; the reply is every model's view (what requests
  resolve in), its generation, and whether the host finished loading its warm set.
* ``submit``: a resolved version and its input tensor. Handled on the channel's reader
  thread, which only queues it on the version's batcher (or starts its cold load), so
  requests from every front end meet in one batcher: batches form across front ends. The
  submits of one message (a front end's bundle) reach each batcher in one hand-over; the
  replies go out from the batcher's thread when the batch ran, a batch's replies to one
  front end in one send (``runtime/handoff.py``). With batching off the model runs on the
  host's pool instead.
* ``explain``, ``call`` (the registry's reads: status, list): on the host's pool.
* ``manage``: an :class:`~yyai_kernel.plane.operations.Operation`, led here once
  (:func:`~yyai_kernel.plane.operations.lead`) on the one registry, which writes the store.
  Before the reply goes out the host pushes the changed views to every front end and waits
  for each to acknowledge them (up to ``ack_timeout``), so that the next request through
  any front end sees the change. The reply's :class:`WorkerReport` says which front ends
  acknowledged, which are restarting (not connected) and which did not answer.

Changes that no call made (a cold load that lets a new default take over, the store
watcher's reload) are pushed too, without waiting, by a publisher thread that the
registry's table wakes whenever it rebuilds its views.

Locking: ``_publish_lock`` orders every push of views and the hello snapshot, so a front
end never applies an older picture over a newer one; ``_lock`` (with its condition) guards
the channel table and the acknowledged generations.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Listener
from typing import Any

import numpy as np

from yyai_kernel.errors import ModelNotFoundError, YyaiError
from yyai_kernel.host.channel import Channel, ChannelClosed, SharedArray
from yyai_kernel.plane.operations import (
    Managed,
    Operation,
    Outcome,
    WorkerOutcome,
    WorkerReport,
    lead,
)
from yyai_kernel.registry.protocol import ModelView, Target, unknown_name
from yyai_kernel.registry.registry import Registry

log = logging.getLogger("yyai.host")

HOST_THREADS = 8
ACK_TIMEOUT_S = 10.0
READS = frozenset({"status", "list", "names", "residency_status"})


class HostService:
    """Serves the front ends' channels over one registry (see the module docstring)."""

    def __init__(self, registry: Registry, front_ends: int, *, ack_timeout: float = ACK_TIMEOUT_S):
        self.registry = registry
        self.front_ends = front_ends
        self.ack_timeout = ack_timeout
        self.ready = False
        self._lock = threading.Condition()
        self._channels: dict[Channel, int] = {}  # channel -> front-end number
        self._acked: dict[Channel, int] = {}  # channel -> newest generation it applied
        self._publish_lock = threading.Lock()
        self._published: dict[str, ModelView] = {}
        self._generation = 0
        self._pool = ThreadPoolExecutor(HOST_THREADS, thread_name_prefix="yyai-host")
        self._dirty = threading.Event()
        self._stopped = threading.Event()
        registry.table.listeners.append(self._dirty.set)
        self.publish(wait=False)
        threading.Thread(target=self._publisher, name="yyai-publish", daemon=True).start()

    # --- connections -----------------------------------------------------------------------

    def serve(self, listener: Listener) -> None:
        """Accept front ends on ``listener`` (each proves it knows the key) on a thread of its own."""
        threading.Thread(target=self._accept, args=(listener,), name="yyai-accept", daemon=True).start()

    def _accept(self, listener: Listener) -> None:
        while not self._stopped.is_set():
            try:
                conn = listener.accept()
            except OSError:
                if self._stopped.is_set():
                    return
                time.sleep(0.05)  # a listener being closed, or a file-descriptor shortage: try again
                continue
            except Exception as error:  # noqa: BLE001 - a client that does not know the key (AuthenticationError), or went
                log.warning("Refused a connection to the model host: %s", error)
                continue
            Channel(conn, name="host-channel", handle=self._handle, on_push=self._pushed,
                    on_close=self._gone).start()

    def _gone(self, channel: Channel) -> None:
        with self._lock:
            number = self._channels.pop(channel, None)
            self._acked.pop(channel, None)
            self._lock.notify_all()
        if number is not None:
            log.info("Front end %d disconnected", number)

    def stop(self) -> None:
        self._stopped.set()
        self._dirty.set()
        with self._lock:
            channels = list(self._channels)
        for channel in channels:
            channel.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- requests ------------------------------------------------------------------------------

    def _pushed(self, channel: Channel, kind: str, payload: Any) -> None:
        if kind == "ack":
            self._ack(channel, payload)

    def _handle(self, channel: Channel, ident: int, kind: str, payload: Any) -> None:
        if kind == "submit":
            name, version, inputs, finite = payload
            try:
                self._submit(channel, ident, name, version, inputs, finite)
            except YyaiError as error:  # 404, not ready, bad input: the asker's answer, not a fault here
                channel.reply(ident, error=error, gather=True)
        elif kind == "hello":
            self._hello(channel, ident, payload)
        elif kind == "explain":
            name, version, inputs = payload
            self._on_pool(channel, ident, lambda: self.registry.explain(self._target(name, version), _array(inputs)))
        elif kind == "call":
            method, args = payload
            if method not in READS:
                raise ValueError(f"the model host does not answer {method!r}")
            self._on_pool(channel, ident, lambda: getattr(self.registry, method)(*args))
        elif kind == "manage":
            self._on_pool(channel, ident, lambda: self._manage(payload))
        else:
            raise ValueError(f"unknown request {kind!r}")

    def _target(self, name: str, version: int) -> Target:
        view = self.registry.table.view(name)
        if view is None:
            raise ModelNotFoundError(unknown_name(name, self.registry.names()))
        return view.target(version)

    def _submit(self, channel: Channel, ident: int, name: str, version: int, sent: np.ndarray | SharedArray,
                finite: bool) -> None:
        target = self._target(name, version)
        inputs = _array(sent)
        model = self.registry.table.versions(name)
        serving = model.serving(version) if model is not None else None
        if serving is not None and serving.batcher is None:  # the model would run on this reader thread
            self._on_pool(channel, ident, lambda: self.registry.submit(target, inputs, finite=finite).result())
            return
        # a batcher queues it; a version not loaded starts (or joins) its load: neither blocks this thread
        pending = self.registry.submit(target, inputs, finite=finite)
        pending.add_done_callback(lambda done: _answer(channel, ident, done))

    def _on_pool(self, channel: Channel, ident: int, work: Callable[[], object]) -> None:
        def run() -> None:
            try:
                value = work()
            except BaseException as error:  # noqa: BLE001 - the front end's request raises it
                channel.reply(ident, error=error)
                return
            channel.reply(ident, value)

        try:
            self._pool.submit(run)
        except RuntimeError:  # stopping
            channel.reply(ident, error=YyaiError("The model host is stopping."))

    def _manage(self, op: Operation) -> Managed:
        """Lead ``op``, then have every front end apply the views it left (also when it failed:
        what reached the store is seen everywhere); the result and who applied it."""
        try:
            result = lead(self.registry, op)
        finally:
            report = self.publish(wait=True)
        return Managed(result, report)

    # --- views and readiness ------------------------------------------------------------------

    def _hello(self, channel: Channel, ident: int, payload: dict[str, Any]) -> None:
        number = int(payload.get("index", -1))
        self.publish(wait=False)  # the snapshot below is the registry's current picture
        with self._publish_lock:
            with self._lock:
                self._channels[channel] = number
                self._acked[channel] = self._generation
            channel.reply(ident, (dict(self._published), self._generation, self.ready))
        log.info("Front end %d connected (pid %s)", number, payload.get("pid"))

    def _ack(self, channel: Channel, generation: int) -> None:
        with self._lock:
            if channel in self._acked:
                self._acked[channel] = max(self._acked[channel], generation)
                self._lock.notify_all()

    def publish(self, *, wait: bool) -> WorkerReport:
        """Push the views that changed since the last push to every front end; with ``wait``,
        wait until each acknowledged them (or ``ack_timeout``). Who sees the state now."""
        with self._publish_lock:
            views = self.registry.table.views()
            changed = {name: view for name, view in views.items() if self._published.get(name) != view}
            gone = [name for name in self._published if name not in views]
            if changed or gone:
                self._generation += 1
                self._published = views
                with self._lock:
                    channels = list(self._channels)
                for channel in channels:
                    try:
                        channel.push("views", (self._generation, changed, gone))
                    except ChannelClosed:
                        pass
            generation = self._generation
        deadline = time.monotonic() + (self.ack_timeout if wait else 0)
        with self._lock:
            while wait and any(acked < generation for acked in self._acked.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            by_number = {number: self._acked.get(channel, 0) for channel, number in self._channels.items()}
        outcomes = []
        for number in range(self.front_ends):
            if number not in by_number:
                outcomes.append(WorkerOutcome(number, Outcome.RESTARTING))
            elif by_number[number] >= generation:
                outcomes.append(WorkerOutcome(number, Outcome.APPLIED))
            else:
                outcomes.append(WorkerOutcome(number, Outcome.FAILED,
                                              f"it did not confirm the new state within {self.ack_timeout:g} s"))
        return WorkerReport(tuple(outcomes))

    def mark_ready(self) -> None:
        """The warm set is loaded: tell every front end (readiness), now and at each hello."""
        self.publish(wait=False)
        with self._publish_lock:
            self.ready = True
            with self._lock:
                channels = list(self._channels)
            for channel in channels:
                try:
                    channel.push("ready", True)
                except ChannelClosed:
                    pass

    def _publisher(self) -> None:
        while True:
            self._dirty.wait()
            if self._stopped.is_set():
                return
            self._dirty.clear()
            try:
                self.publish(wait=False)
            except Exception:  # a push that fails must not stop the next (logged)
                log.exception("Pushing the models' views to the front ends failed")
            time.sleep(0.01)  # refreshes come in bursts (a reload of every model): one push for a burst


def _array(value: np.ndarray | SharedArray) -> np.ndarray:
    """The request's input: a shared-memory segment is copied out and removed at once (its sender
    removes it too, once the reply came; whichever comes first)."""
    if not isinstance(value, SharedArray):
        return value
    try:
        return value.take()
    finally:
        value.remove()


def _answer(channel: Channel, ident: int, done: Future[Any]) -> None:
    error = done.exception()
    if error is not None:
        channel.reply(ident, error=error, gather=True)
    else:
        channel.reply(ident, done.result(), gather=True)
