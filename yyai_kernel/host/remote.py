"""HostRegistry: a front end's ModelRegistry, which holds no model and reaches the model host(s).

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

With ``--devices`` there is one host per GPU, each the owner of some models
(``placement.py``): the registry holds one :class:`HostLink` per host and sends each
request, status and management call to the owner of its model; listings merge every
host's. A host that is away makes only its own models answer 503; the others' go on.
A reload of every model goes to every host. An upload goes to the owner of the name its
manifest gives.

Locking: each link's views are replaced whole (one reference), under ``_views_lock`` only while a
push or a hello applies; ``_channel`` is one reference. Nothing is held while a request waits.
Pushes that arrive before the hello's snapshot is in place wait in a buffer and are applied
on top of it, in order, so a newer view is never overwritten by an older one.
"""

from __future__ import annotations

import builtins
import dataclasses
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

from yyai_kernel.archive import read_manifest
from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import ModelNotFoundError, ModelNotReadyError, YyaiError
from yyai_kernel.host.channel import Channel, ChannelClosed
from yyai_kernel.host.placement import Placement
from yyai_kernel.plane.operations import Managed, Operation, OpKind, Outcome, WorkerOutcome, WorkerReport
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
    ResidencyStatus,
    ServerStatus,
    StoreProblemInfo,
    TrafficPolicy,
    VersionDescription,
)

log = logging.getLogger("yyai.host")

_Result = TypeVar("_Result")

RECONNECT_S = 0.1
HELLO_TIMEOUT_S = 30.0
RETRY_AFTER_S = 1


def host_unavailable(device: str | None = None) -> ModelNotReadyError:
    """The answer while the model host is away: 503, retry in a second."""
    which = "The model host" if device is None else f"The model host of device {device}"
    error = ModelNotReadyError(f"{which} is restarting; retry in a moment.")
    error.retry_after = RETRY_AFTER_S
    return error


# a pushed change of views: (generation, {name: view}, [names gone])
_Push = tuple[int, dict[str, ModelView], list[str]]


class HostLink:
    """One model host as a front end reaches it: the connection, kept up, and that host's views.

    ``on_ready`` is called (on the channel's thread) each time the host says its warm set is
    loaded: at the first connection, and again after a restart.
    """

    def __init__(self, address: str, authkey: bytes, *, front_end: int, device: str | None = None,
                 on_ready: Callable[[], None] | None = None):
        self.address = address
        self.device = device
        self._authkey = authkey
        self.front_end = front_end
        self.on_ready = on_ready
        self.views: dict[str, ModelView] = {}
        self._views_lock = threading.Lock()
        self._synced = False  # the current connection's hello snapshot is in place
        self._early: list[_Push] = []  # pushes that came before it
        self._channel: Channel | None = None
        self._host_ready = False
        self.connected = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._connect, name="yyai-host-link", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def ready(self) -> bool:
        """Whether the host is connected and has loaded its warm set."""
        return self._channel is not None and self._host_ready

    def close(self) -> None:
        self._stopped.set()
        channel = self._channel
        if channel is not None:
            channel.close()

    def unavailable(self) -> ModelNotReadyError:
        return host_unavailable(self.device)

    def ask(self) -> Channel:
        channel = self._channel
        if channel is None:
            raise self.unavailable()
        return channel

    def call(self, kind: str, payload: object = None) -> Any:
        try:
            return self.ask().call(kind, payload)
        except ChannelClosed:
            raise self.unavailable() from None

    def _connect(self) -> None:
        while not self._stopped.is_set():
            try:
                conn = Client(self.address, "AF_UNIX", authkey=self._authkey)
            except (OSError, EOFError):  # not listening yet (starting, restarting)
                time.sleep(RECONNECT_S)
                continue
            with self._views_lock:
                self._synced, self._early = False, []
            channel = Channel(conn, name=f"front-end-{self.front_end}", on_push=self._pushed,
                              lost=self.unavailable).start()
            try:
                views, generation, ready = channel.call("hello", {"index": self.front_end, "pid": os.getpid()},
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
                self.views, self._synced, self._early = views, True, []
            channel.push("ack", generation)
            self._host_ready, self._channel = bool(ready), channel
            self.connected.set()
            log.info("Connected to the model host%s (%d models)",
                     "" if self.device is None else f" of device {self.device}", len(views))
            if ready and self.on_ready is not None:
                self.on_ready()
            channel.closed.wait()
            self._channel, self._host_ready = None, False
            self.connected.clear()
            if not self._stopped.is_set():
                log.warning("The model host%s went away; answering 503 for its models until it is back",
                            "" if self.device is None else f" of device {self.device}")

    def _pushed(self, channel: Channel, kind: str, payload: Any) -> None:
        if kind == "views":
            generation, changed, gone = payload
            with self._views_lock:
                if not self._synced:  # the hello's snapshot is not in place yet: apply on top of it
                    self._early.append((generation, changed, gone))
                    return
                views = dict(self.views)
                _apply(views, changed, gone)
                self.views = views
            channel.push("ack", generation)
        elif kind == "ready":
            self._host_ready = bool(payload)
            if self._host_ready and self.on_ready is not None:
                self.on_ready()


class HostRegistry:
    """The :class:`~yyai_kernel.registry.protocol.ModelRegistry` of a front end (see the module docstring).

    ``addresses``: each model host's socket, by host index (one per device, ``placement``).
    ``on_ready`` is called each time a host says its warm set is loaded.
    """

    def __init__(self, addresses: list[str], authkey: bytes, config: ServingConfig, *, index: int = 0,
                 on_ready: Callable[[], None] | None = None, placement: Placement | None = None):
        self.config = config
        self.index = index
        self.placement = placement or Placement.of([])
        if self.placement.hosts != len(addresses):
            raise ValueError(f"{len(addresses)} host addresses for {self.placement.hosts} devices")
        several = self.placement.hosts > 1
        self.links = [HostLink(address, authkey, front_end=index, on_ready=on_ready,
                               device=self.placement.devices[host] if several else None)
                      for host, address in enumerate(addresses)]

    def start(self) -> HostRegistry:
        for link in self.links:
            link.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Whether every host answered within ``timeout`` seconds (their views are here then)."""
        deadline = time.monotonic() + timeout
        return all(link.connected.wait(max(0.0, deadline - time.monotonic())) for link in self.links)

    @property
    def host_ready(self) -> bool:
        """Whether every host is connected and has loaded its warm set."""
        return all(link.ready for link in self.links)

    def close(self) -> None:
        for link in self.links:
            link.close()

    def link_for(self, name: str) -> HostLink:
        """The link to the host that owns model ``name``."""
        return self.links[self.placement.owner(name)]

    def _view(self, name: str) -> ModelView | None:
        return self.link_for(name).views.get(name)

    # --- reading -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        if len(self.links) == 1:
            return sorted(self.links[0].views)
        return sorted(name for host, link in enumerate(self.links) for name in link.views
                      if self.placement.owner(name) == host)

    def list(self) -> list[ModelSummary]:
        """Every model, each from its owner; a host that is away lists its models from their
        last views, with nothing loaded (it holds nothing)."""
        if len(self.links) == 1:
            return self.hosted(0)
        summaries: builtins.list[ModelSummary] = []
        for host, link in enumerate(self.links):
            try:
                summaries += self.hosted(host)
            except ModelNotReadyError:
                summaries += [ModelSummary(view.name, tuple(sorted(view.stored or view.records)), view.default, (),
                                           link.device)
                              for view in link.views.values() if self.placement.owner(view.name) == host]
        return sorted(summaries, key=lambda s: s.name)

    def hosted(self, host: int) -> builtins.list[ModelSummary]:
        """The models host ``host`` owns, as it lists them (503 while it is away)."""
        link = self.links[host]
        listed = cast("list[ModelSummary]", link.call("call", ("list", ())))
        if link.device is None:
            return listed
        return [dataclasses.replace(s, device=link.device) for s in listed if self.placement.owner(s.name) == host]

    @overload
    def status(self, name: None = None) -> ServerStatus: ...

    @overload
    def status(self, name: str) -> ModelStatus: ...

    def status(self, name: str | None = None) -> ModelStatus | ServerStatus:
        if name is not None:
            link = self.link_for(name)
            found = cast(ModelStatus, link.call("call", ("status", (name,))))
            return found if link.device is None else dataclasses.replace(found, device=link.device)
        if len(self.links) == 1:
            return cast(ServerStatus, self.links[0].call("call", ("status", ())))
        return _merged([(link, cast(ServerStatus, link.call("call", ("status", ())))) for link in self.links],
                       self.placement)

    def resolve(self, ref: ModelRef) -> Target:
        view = self._view(ref.name)
        if view is None:
            raise ModelNotFoundError(unknown_name(ref.name, self.names()))
        return view.resolve(ref)

    def describe(self, name: str, version: int | str | None = None) -> VersionDescription:
        return self.resolve(ref_of(name, version)).description

    # --- predicting ------------------------------------------------------------------------------

    def submit(self, target: Target, inputs: np.ndarray, *, finite: bool = False) -> Future[Prediction]:
        """Send the request to its owner's batcher; a Future of its Prediction (never blocks on the host).
        A thread that gathers (an event loop) sends its submits together, in one message."""
        link = self.link_for(target.name)
        try:
            return link.ask().request("submit", (target.name, target.version, inputs, finite), share=inputs,
                                      gather=True)
        except ChannelClosed:
            raise link.unavailable() from None

    def explain(self, target: Target, inputs: np.ndarray) -> tuple[Prediction, Explained]:
        link = self.link_for(target.name)
        try:
            pending = link.ask().request("explain", (target.name, target.version, inputs), share=inputs)
            return cast("tuple[Prediction, Explained]", pending.result())
        except ChannelClosed:
            raise link.unavailable() from None

    def batches(self, target: Target) -> bool:
        """Always: the host batches, and :meth:`submit` never blocks."""
        return True

    def predict(self, name: str, inputs: np.ndarray, version: int | str | None = None) -> Prediction:
        return self.submit(self.resolve(ModelRef.parse(name, version)), inputs).result()

    # --- managing: the owner leads every change ---------------------------------------------------

    def manage(self, op: Operation) -> Managed:
        """Have the model's owner lead ``op`` (every host, for a reload or re-read of them all);
        it replies once every front end serves the new state."""
        name = op.name
        if name is None and op.kind is OpKind.INSTALL and op.archive is not None and len(self.links) > 1:
            name = _archive_name(op.archive)
        if name is not None or len(self.links) == 1:
            link = self.links[0] if name is None else self.link_for(name)
            return _placed(cast(Managed, link.call("manage", op)), link.device)
        return _merged_managed([cast(Managed, link.call("manage", op)) for link in self.links])

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


def _archive_name(path: str) -> str | None:
    """The model name an uploaded archive's manifest gives (None when it does not read: the host
    that gets it then says why)."""
    try:
        return read_manifest(path).name
    except (YyaiError, OSError):
        return None


def _merged(statuses: list[tuple[HostLink, ServerStatus]], placement: Placement) -> ServerStatus:
    """Every host's status as one: each model from its owner (with its device), the store's
    problems once, the residency summed over the hosts."""
    models: dict[str, ModelStatus] = {}
    problems: dict[str, StoreProblemInfo] = {}
    state_error = None
    for host, (link, status) in enumerate(statuses):
        models.update({name: dataclasses.replace(model, device=link.device) for name, model in status.models.items()
                       if placement.owner(name) == host})
        problems.update({problem.path: problem for problem in status.problems})
        state_error = state_error or status.state_error
    residency = ResidencyStatus.summed([s.residency for _, s in statuses if s.residency is not None])
    return ServerStatus(dict(sorted(models.items())), tuple(problems.values()), state_error, residency)


def _merged_managed(results: list[Managed]) -> Managed:
    """A reload of every model, led by every host: each one's result, and for each front end
    the worst of what the hosts said of it."""
    merged: dict[str, ModelStatus | ModelError] = {}
    for result in results:
        if isinstance(result.result, dict):
            merged.update(result.result)
    worst: dict[int, WorkerOutcome] = {}
    rank = {Outcome.APPLIED: 0, Outcome.RESTARTING: 1, Outcome.FAILED: 2}
    for result in results:
        for outcome in result.report.outcomes:
            if outcome.worker not in worst or rank[outcome.outcome] > rank[worst[outcome.worker].outcome]:
                worst[outcome.worker] = outcome
    return Managed(dict(sorted(merged.items())), WorkerReport(tuple(worst[w] for w in sorted(worst))))


def _placed(managed: Managed, device: str | None) -> Managed:
    """A model's result with the device of the host that led it (as its status says it)."""
    result = managed.result
    if device is None:
        return managed
    if isinstance(result, ModelStatus):
        return dataclasses.replace(managed, result=dataclasses.replace(result, device=device))
    if isinstance(result, InstallResult):
        placed = dataclasses.replace(result.model, device=device)
        return dataclasses.replace(managed, result=dataclasses.replace(result, model=placed))
    return managed
