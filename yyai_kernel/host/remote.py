"""HostRegistry: a front end's ModelRegistry, which holds no model and reaches the model host.

The data plane, the endpoints, gRPC, evaluations and the traffic router run in a front end
exactly as in one process, over this registry instead of the in-process one. It keeps a
copy of every model's view (pushed by the host whenever one changes, acknowledged before
the host replies to the change that caused it), so that a request resolves here, once,
without a round trip. Everything that needs the models goes to the host over the channel:
predictions (which join the host's batchers with every other front end's), explanations,
statuses, and every management operation (:meth:`manage`), which the host leads once.

While the host is away (it died and the supervisor restarts it) every call that needs it
answers 503 with ``Retry-After``, and requests in flight when it died do too; nothing is
answered from stale state. A thread reconnects as soon as the host listens again, and the
host's hello brings the current views.

Locking: the views are replaced whole (one reference), under ``_views_lock`` only while a
push or a hello applies; ``_channel`` is one reference. Nothing is held while a request waits.
Pushes that arrive before the hello's snapshot is in place wait in a buffer and are applied
on top of it, in order, so a newer view is never overwritten by an older one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Client
from pathlib import Path
from typing import Any, TypeVar, cast, overload

import numpy as np

from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import ModelNotFoundError, ModelNotReadyError
from yyai_kernel.host.channel import Channel, ChannelClosed
from yyai_kernel.plane.operations import Managed, Operation, OpKind
from yyai_kernel.registry.protocol import ModelView, Target, ref_of, unknown_name
from yyai_kernel.runtime.membermap import Explained
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
    TrafficPolicy,
    VersionDescription,
)

log = logging.getLogger("yyai.host")

_Result = TypeVar("_Result")

RECONNECT_S = 0.1
HELLO_TIMEOUT_S = 30.0
RETRY_AFTER_S = 1


def host_unavailable() -> ModelNotReadyError:
    """The answer while the model host is away: 503, retry in a second."""
    error = ModelNotReadyError("The model host is restarting; retry in a moment.")
    error.retry_after = RETRY_AFTER_S
    return error


# a pushed change of views: (generation, {name: view}, [names gone])
_Push = tuple[int, dict[str, ModelView], list[str]]


class HostRegistry:
    """The :class:`~yyai_kernel.registry.protocol.ModelRegistry` of a front end (see the module docstring).

    ``on_ready`` is called (on the channel's thread) each time the host says its warm set is
    loaded: at the first connection, and again after a restart.
    """

    def __init__(self, address: str, authkey: bytes, config: ServingConfig, *, index: int = 0,
                 on_ready: Callable[[], None] | None = None):
        self.config = config
        self.address = address
        self._authkey = authkey
        self.index = index
        self.on_ready = on_ready
        self._views: dict[str, ModelView] = {}
        self._views_lock = threading.Lock()
        self._synced = False  # the current connection's hello snapshot is in place
        self._early: list[_Push] = []  # pushes that came before it
        self._channel: Channel | None = None
        self._host_ready = False
        self._connected = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._connect, name="yyai-host-link", daemon=True)

    def start(self) -> HostRegistry:
        self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Whether the host answered within ``timeout`` seconds (its views are here then)."""
        return self._connected.wait(timeout)

    @property
    def host_ready(self) -> bool:
        """Whether the host is connected and has loaded its warm set."""
        return self._channel is not None and self._host_ready

    def close(self) -> None:
        self._stopped.set()
        channel = self._channel
        if channel is not None:
            channel.close()

    # --- the connection ------------------------------------------------------------------------

    def _connect(self) -> None:
        while not self._stopped.is_set():
            try:
                conn = Client(self.address, "AF_UNIX", authkey=self._authkey)
            except (OSError, EOFError):  # not listening yet (starting, restarting)
                time.sleep(RECONNECT_S)
                continue
            with self._views_lock:
                self._synced, self._early = False, []
            channel = Channel(conn, name=f"front-end-{self.index}", on_push=self._pushed,
                              lost=host_unavailable).start()
            try:
                views, generation, ready = channel.call("hello", {"index": self.index, "pid": os.getpid()},
                                                        timeout=HELLO_TIMEOUT_S)
            except Exception as error:  # noqa: BLE001 - logged; the hello is tried again
                log.warning("The model host did not answer its hello (%s); trying again", error)
                channel.close()
                time.sleep(RECONNECT_S)
                continue
            with self._views_lock:
                views = dict(views)
                for pushed, changed, gone in self._early:
                    if pushed > generation:
                        _apply(views, changed, gone)
                        generation = pushed
                self._views, self._synced, self._early = views, True, []
            channel.push("ack", generation)
            self._host_ready, self._channel = bool(ready), channel
            self._connected.set()
            log.info("Connected to the model host (%d models)", len(views))
            if ready and self.on_ready is not None:
                self.on_ready()
            channel.closed.wait()
            self._channel, self._host_ready = None, False
            self._connected.clear()
            if not self._stopped.is_set():
                log.warning("The model host went away; answering 503 until it is back")

    def _pushed(self, channel: Channel, kind: str, payload: Any) -> None:
        if kind == "views":
            generation, changed, gone = payload
            with self._views_lock:
                if not self._synced:  # the hello's snapshot is not in place yet: apply on top of it
                    self._early.append((generation, changed, gone))
                    return
                views = dict(self._views)
                _apply(views, changed, gone)
                self._views = views
            channel.push("ack", generation)
        elif kind == "ready":
            self._host_ready = bool(payload)
            if self._host_ready and self.on_ready is not None:
                self.on_ready()

    def _ask(self) -> Channel:
        channel = self._channel
        if channel is None:
            raise host_unavailable()
        return channel

    def _call(self, kind: str, payload: object = None) -> Any:
        try:
            return self._ask().call(kind, payload)
        except ChannelClosed:
            raise host_unavailable() from None

    # --- reading -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._views)

    def list(self) -> list[ModelSummary]:
        return cast("list[ModelSummary]", self._call("call", ("list", ())))

    @overload
    def status(self, name: None = None) -> ServerStatus: ...

    @overload
    def status(self, name: str) -> ModelStatus: ...

    def status(self, name: str | None = None) -> ModelStatus | ServerStatus:
        return cast("ModelStatus | ServerStatus", self._call("call", ("status", () if name is None else (name,))))

    def resolve(self, ref: ModelRef) -> Target:
        view = self._views.get(ref.name)
        if view is None:
            raise ModelNotFoundError(unknown_name(ref.name, self.names()))
        return view.resolve(ref)

    def describe(self, name: str, version: int | str | None = None) -> VersionDescription:
        return self.resolve(ref_of(name, version)).description

    # --- predicting ------------------------------------------------------------------------------

    def submit(self, target: Target, inputs: np.ndarray, *, finite: bool = False) -> Future[Prediction]:
        """Send the request to the host's batcher; a Future of its Prediction (never blocks on the host).
        A thread that gathers (an event loop) sends its submits together, in one message."""
        try:
            return self._ask().request("submit", (target.name, target.version, inputs, finite), share=inputs,
                                       gather=True)
        except ChannelClosed:
            raise host_unavailable() from None

    def explain(self, target: Target, inputs: np.ndarray) -> tuple[Prediction, Explained]:
        try:
            pending = self._ask().request("explain", (target.name, target.version, inputs), share=inputs)
            return cast("tuple[Prediction, Explained]", pending.result())
        except ChannelClosed:
            raise host_unavailable() from None

    def batches(self, target: Target) -> bool:
        """Always: the host batches, and :meth:`submit` never blocks."""
        return True

    def predict(self, name: str, inputs: np.ndarray, version: int | str | None = None) -> Prediction:
        return self.submit(self.resolve(ModelRef.parse(name, version)), inputs).result()

    # --- managing: the host leads every change ----------------------------------------------------

    def manage(self, op: Operation) -> Managed:
        """Have the host lead ``op``; it replies once every front end serves the new state."""
        return cast(Managed, self._call("manage", op))

    def _led(self, op: Operation, kind: type[_Result]) -> _Result:
        """:meth:`manage`'s result, which is a ``kind`` (the registry's own result for ``op``)."""
        result = self.manage(op).result
        if not isinstance(result, kind):
            raise TypeError(f"The model host answered {op.kind.value} with a {type(result).__name__}")
        return result

    def load(self, name: str, version: int | str | None = None) -> ModelStatus:
        return self._led(Operation(OpKind.LOAD, name, version), ModelStatus)

    def unload(self, name: str, version: int | str | None = None) -> ModelStatus:
        return self._led(Operation(OpKind.UNLOAD, name, version), ModelStatus)

    def reload(self, name: str | None = None, *,
               force: bool = True) -> ModelStatus | dict[str, ModelStatus | ModelError]:
        result = self.manage(Operation(OpKind.RELOAD, name, force=force)).result
        return cast("ModelStatus | dict[str, ModelStatus | ModelError]", result)

    def set_default(self, name: str, version: int | str) -> ModelStatus:
        return self._led(Operation(OpKind.SET_DEFAULT, name, version), ModelStatus)

    def follow_latest(self, name: str) -> ModelStatus:
        return self._led(Operation(OpKind.FOLLOW_LATEST, name), ModelStatus)

    def remove(self, name: str, version: int | str, *, purge: bool = False) -> ModelStatus | ModelRemoved:
        result = self.manage(Operation(OpKind.REMOVE, name, version, purge=purge)).result
        return cast("ModelStatus | ModelRemoved", result)

    def install(self, path: str | Path, options: InstallOptions | None = None) -> InstallResult:
        options = options or InstallOptions()
        return self._led(Operation(OpKind.INSTALL, archive=str(path), label=options.label, promote=options.promote,
                                   replace=options.replace), InstallResult)

    def set_label(self, name: str, label: str, version: int | str) -> ModelStatus:
        return self._led(Operation(OpKind.SET_LABEL, name, version, label=label), ModelStatus)

    def delete_label(self, name: str, label: str) -> ModelStatus:
        return self._led(Operation(OpKind.DELETE_LABEL, name, label=label), ModelStatus)

    def set_traffic(self, name: str, policy: TrafficPolicy) -> ModelStatus:
        return self._led(Operation(OpKind.SET_TRAFFIC, name, policy=policy.to_json()), ModelStatus)

    def clear_traffic(self, name: str) -> ModelStatus:
        return self._led(Operation(OpKind.CLEAR_TRAFFIC, name), ModelStatus)


def _apply(views: dict[str, ModelView], changed: dict[str, ModelView], gone: list[str]) -> None:
    views.update(changed)
    for name in gone:
        views.pop(name, None)
