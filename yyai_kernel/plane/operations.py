"""Management operations as values, so that every worker process can apply the same change.

``yyai serve --workers N`` runs N processes, each with its own registry over the same
store. A management call (upload, reload, default/pin, unpin, load, unload, remove,
rescan, labels, traffic policies) reaches one of them. That worker *leads* it (``DataPlane.manage``): it changes the
store once, since the store and its state file are the truth, and loads what must serve.
Then every other worker *follows* it (:func:`follow`), through the supervisor
(``server/supervisor.py``): it re-reads the store and loads what the store says serves or,
for the operations that touch only a process's runtimes (load, unload), does the same to
its own registry. Following never writes the store, and it is idempotent: applied twice,
or after a worker restarted and read the store afresh, it changes nothing more.

:data:`OpKind.SYNC` is the generic form: "the store's state file changed, re-read it and
load what it says serves". Everything kept in the state file (pins, labels, traffic
policies) is followed that way: the follower loads the default and every version a label
or the policy names, so that a request by label never meets a version it did not load.

The :class:`WorkerReport` of a call says which workers applied it, which were restarting
(a worker that starts reads the current store, so it will serve the new state when it
joins the port) and which failed, with the error: a reply never hides one.

Types only, plus :func:`follow` and :func:`local_worker`: no framework, no process code.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from enum import Enum

from yyai_kernel.types import check_label, check_name, parse_version, parse_version_ref


class OpKind(str, Enum):
    """What a management operation does."""

    INSTALL = "install"  # an archive entered the store: load that version
    LOAD = "load"  # load a version (default: the default)
    UNLOAD = "unload"  # stop serving a version (or every version)
    RELOAD = "reload"  # re-read the store and reload one model, or all (name None: a rescan)
    SET_DEFAULT = "set_default"  # pin a version as the default
    FOLLOW_LATEST = "follow_latest"  # forget the pin
    REMOVE = "remove"  # unload a version; with purge, delete its archive
    SET_LABEL = "set_label"  # point a label at a version (loaded first)
    DELETE_LABEL = "delete_label"
    SET_TRAFFIC = "set_traffic"  # the canary and shadow policy (its versions loaded first)
    CLEAR_TRAFFIC = "clear_traffic"
    PROMOTE = "promote"  # the canary (else the shadow) becomes the pinned default; the policy is cleared
    SYNC = "sync"  # the state file changed: re-read the store and load what it says serves


@dataclass(frozen=True)
class Operation:
    """One management operation: its kind and arguments. ``archive`` (a file to install)
    is the leading worker's only; followers get the installed name and version instead."""

    kind: OpKind
    name: str | None = None
    version: int | str | None = None  # a label where one is accepted (load, unload, remove)
    force: bool = False
    purge: bool = False
    archive: str | None = None
    label: str | None = None  # SET_LABEL, DELETE_LABEL; INSTALL: a label to point at the new version
    policy: dict | None = None  # SET_TRAFFIC: the policy's JSON document
    promote: bool | None = None  # INSTALL: make it the default (True), stage it (False), or the server's rule
    replace: bool = False  # INSTALL: replace different content under the same version

    def checked(self) -> Operation:
        """The same operation with its name, version and label checked (400 on a bad one).
        A version may be a label where one is accepted (load, unload, remove)."""
        name = None if self.name is None else check_name(self.name)
        label = None if self.label is None else check_label(self.label)
        parse = parse_version if self.kind in (OpKind.SET_DEFAULT, OpKind.SET_LABEL) else parse_version_ref
        return replace(self, name=name, version=parse(self.version), label=label)

    def to_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if v not in (None, False)}
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_json(cls, data: dict) -> Operation:
        return cls(**{**data, "kind": OpKind(data["kind"])})


def follow(registry, op: Operation) -> None:
    """Apply, on a worker that did not receive the call, an operation another worker led.

    Raises the registry's error when this worker cannot serve the new state.
    """
    kind, name, version = op.kind, op.name, op.version
    if kind is OpKind.INSTALL:
        registry.reload(name, force=False)  # the store has the new archive (and state); a new default loads
        registry.load(name, version)  # and the uploaded version serves, default or not
        registry.load_served(name)  # and whatever a label or a pin made of it
    elif kind is OpKind.LOAD:
        registry.load(name, version)
    elif kind is OpKind.UNLOAD:
        registry.unload(name, version)
    elif kind is OpKind.RELOAD:
        registry.reload(name, force=op.force)
    elif kind is OpKind.REMOVE and op.purge:
        registry.forget(name, version)
    elif kind is OpKind.REMOVE:
        registry.unload(name, version)
    else:  # pins, labels, traffic policies, SYNC: what the state file says now, and the versions it names
        registry.reload(name, force=False)
        registry.load_served(name)


# --- what a call did on each worker ---------------------------------------------------------


class Outcome(str, Enum):
    APPLIED = "applied"
    RESTARTING = "restarting"  # not serving now; it reads the store, or applies this, before it serves
    FAILED = "failed"


@dataclass(frozen=True)
class WorkerOutcome:
    worker: int
    outcome: Outcome
    error: str | None = None

    def describe(self) -> str:
        if self.outcome is Outcome.RESTARTING:
            return f"worker {self.worker} is restarting (it applies this change before it serves again)"
        if self.outcome is Outcome.FAILED:
            return f"worker {self.worker} failed: {self.error}"
        return f"worker {self.worker} applied it"


@dataclass(frozen=True)
class WorkerReport:
    """Which workers applied a management call: the one that led it, and every other."""

    outcomes: tuple[WorkerOutcome, ...]

    @classmethod
    def alone(cls, worker: int = 0) -> WorkerReport:
        return cls((WorkerOutcome(worker, Outcome.APPLIED),))

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def applied(self) -> int:
        return sum(o.outcome is Outcome.APPLIED for o in self.outcomes)

    def not_applied(self) -> list[WorkerOutcome]:
        return [o for o in self.outcomes if o.outcome is not Outcome.APPLIED]

    def summary(self) -> str:
        """``2/2``: how many workers serve the new state, of how many."""
        return f"{self.applied}/{self.total}"

    def problems(self) -> str:
        """Every worker that did not apply the call, and why ("" when all did)."""
        return "; ".join(o.describe() for o in self.not_applied())

    def to_json(self) -> dict:
        return {"applied": self.applied, "total": self.total,
                "workers": [{"worker": o.worker, "outcome": o.outcome.value, "error": o.error}
                            for o in self.outcomes]}

    @classmethod
    def from_json(cls, data: dict) -> WorkerReport:
        return cls(tuple(WorkerOutcome(w["worker"], Outcome(w["outcome"]), w.get("error"))
                         for w in data["workers"]))


@dataclass(frozen=True)
class Managed:
    """A management call's result (what the single-process call returns) and its report."""

    result: object
    report: WorkerReport


# --- one worker's state, for the status endpoint -----------------------------------------------


@dataclass(frozen=True)
class WorkerInfo:
    """One worker process as the status endpoint shows it."""

    worker: int
    pid: int | None
    state: str  # "serving", "starting", "restarting"
    rss_bytes: int | None = None
    restarts: int = 0
    models: dict = field(default_factory=dict)  # {name: {"default": v, "loaded": [v, ...]}}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> WorkerInfo:
        return cls(**data)


def local_worker(registry, worker: int, *, ready: bool) -> WorkerInfo:
    """This process as a :class:`WorkerInfo`: its memory and what its registry serves."""
    import psutil

    models = {m.name: {"default": m.default, "loaded": list(m.loaded)} for m in registry.list()}
    return WorkerInfo(worker, os.getpid(), "serving" if ready else "starting",
                      psutil.Process().memory_info().rss, models=models)
