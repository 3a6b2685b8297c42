"""Management operations as values, so that the process that holds the models applies each one.

A management call (upload, reload, default/pin, unpin, load, unload, remove, rescan,
labels, traffic policies) is parsed once, at the edge, into an :class:`Operation`, and
:func:`lead` applies it to a registry. In one process (``yyai serve``) that is the
registry beside the endpoints. Under ``yyai serve --workers N`` the front ends hold no
models: a front end hands the operation to the model host (``host/``), which leads it on
the one registry, writes the store once, and tells every front end the new state before it
replies. There is one truth, and nothing to replay.

The :class:`WorkerReport` of a call says which front ends serve the new state (they
acknowledged it before the reply), which were restarting (a front end that starts reads
the host's current state before it serves) and which did not answer, with the error: a
reply never hides one. A single process reports itself alone.

Types only, plus :func:`lead` and :func:`local_worker`: no framework, no process code.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any, TypedDict, TypeVar

from yyai_kernel.errors import InvalidInputError
from yyai_kernel.hints import Hint, Step
from yyai_kernel.registry.protocol import ModelRegistry
from yyai_kernel.types import (
    InstallOptions,
    InstallResult,
    ModelError,
    ModelRemoved,
    ModelStatus,
    TrafficPolicy,
    check_label,
    check_name,
    parse_version,
    parse_version_ref,
)

_Arg = TypeVar("_Arg")
_Kind = TypeVar("_Kind", InstallResult, ModelStatus)

Reloaded = dict[str, ModelStatus | ModelError]  # a reload of every model: each one's status, or its error
Led = InstallResult | ModelStatus | ModelRemoved | Reloaded  # what leading an operation gives (see lead)


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
    SYNC = "sync"  # the state file changed: re-read the store (a failed upload's or removal's aftermath)


@dataclass(frozen=True)
class Operation:
    """One management operation: its kind and arguments. ``archive`` is a file to install, on
    this machine (a front end's spooled upload, which the model host reads)."""

    kind: OpKind
    name: str | None = None
    version: int | str | None = None  # a label where one is accepted (load, unload, remove)
    force: bool = False
    purge: bool = False
    archive: str | None = None
    label: str | None = None  # SET_LABEL, DELETE_LABEL; INSTALL: a label to point at the new version
    policy: dict[str, Any] | None = None  # SET_TRAFFIC: the policy's JSON document
    promote: bool | None = None  # INSTALL: make it the default (True), stage it (False), or the server's rule
    replace: bool = False  # INSTALL: replace different content under the same version

    def checked(self) -> Operation:
        """The same operation with its name, version and label checked (400 on a bad one).
        A version may be a label where one is accepted (load, unload, remove)."""
        name = None if self.name is None else check_name(self.name)
        label = None if self.label is None else check_label(self.label)
        parse = parse_version if self.kind in (OpKind.SET_DEFAULT, OpKind.SET_LABEL) else parse_version_ref
        return replace(self, name=name, version=parse(self.version), label=label)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v not in (None, False)}
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Operation:
        return cls(**{**data, "kind": OpKind(data["kind"])})


def lead(registry: ModelRegistry, op: Operation) -> Led:
    """Apply ``op`` to ``registry`` (any ModelRegistry): the registry's own result.

    ``op`` was checked at the edge (:meth:`Operation.checked`). A promotion pins the
    candidate (the canary, else the shadow) and clears the policy. An argument the kind
    needs and ``op`` lacks is refused (400); the edge always sets them.
    """
    name, version = op.name, op.version
    if op.kind is OpKind.INSTALL:
        archive = _needs(op.archive, "the archive to install", op)
        return registry.install(archive, InstallOptions(op.promote, op.label, op.replace))
    if op.kind is OpKind.RELOAD:
        return registry.reload(name, force=op.force)
    if op.kind is OpKind.SYNC:
        return registry.reload(name, force=False)  # what the state file says now
    if op.kind is OpKind.PROMOTE:
        if name is None:
            raise InvalidInputError("Say which model's candidate to promote.")
        return _promote(registry, name)
    name = _needs(name, "the model's name", op)
    if op.kind is OpKind.LOAD:
        return registry.load(name, version)
    if op.kind is OpKind.UNLOAD:
        return registry.unload(name, version)
    if op.kind is OpKind.SET_DEFAULT:
        if version is None:
            raise InvalidInputError("Say which version becomes the default, such as {\"version\": 2}.")
        return registry.set_default(name, version)
    if op.kind is OpKind.FOLLOW_LATEST:
        return registry.follow_latest(name)
    if op.kind is OpKind.REMOVE:
        if version is None:
            raise InvalidInputError("Say which version to remove, such as {\"version\": 2}.")
        return registry.remove(name, version, purge=op.purge)
    if op.kind is OpKind.SET_LABEL:
        if version is None:
            raise InvalidInputError("Say which version the label names, such as {\"version\": 2}.")
        return registry.set_label(name, _needs(op.label, "the label", op), version)
    if op.kind is OpKind.DELETE_LABEL:
        return registry.delete_label(name, _needs(op.label, "the label", op))
    if op.kind is OpKind.SET_TRAFFIC:
        return registry.set_traffic(name, TrafficPolicy.parse(op.policy))
    return registry.clear_traffic(name)  # CLEAR_TRAFFIC, the one kind left


def led_as(result: Led, kind: type[_Kind]) -> _Kind:
    """``result`` as the one type its operation's kind gives (INSTALL an InstallResult; LOAD,
    UNLOAD, SET_DEFAULT, FOLLOW_LATEST, labels, traffic and PROMOTE a ModelStatus)."""
    if not isinstance(result, kind):
        raise TypeError(f"Expected a {kind.__name__} from a management operation, not a {type(result).__name__}")
    return result


def _needs(value: _Arg | None, what: str, op: Operation) -> _Arg:
    """An argument ``op``'s kind cannot do without (400 when it is missing)."""
    if value is None:
        raise InvalidInputError(f"A {op.kind.value} operation needs {what}.")
    return value


def _promote(registry: ModelRegistry, name: str) -> ModelStatus:
    """Pin the candidate (the canary, else the shadow) and clear the policy."""
    policy = registry.status(name).traffic  # 404 for an unknown model
    candidate = (policy.canary or policy.shadow) if policy is not None else None
    if candidate is None:
        raise InvalidInputError(f"Model {name!r} has no canary or shadow to promote",
                                hint=(Hint(Step.SET_TRAFFIC, name), Hint(Step.PIN, name)))
    registry.set_default(name, candidate.version)
    return registry.clear_traffic(name)


# --- what a call did on each worker ---------------------------------------------------------


class Outcome(str, Enum):
    APPLIED = "applied"
    RESTARTING = "restarting"  # not serving now; it reads the host's state before it serves
    FAILED = "failed"


@dataclass(frozen=True)
class WorkerOutcome:
    worker: int
    outcome: Outcome
    error: str | None = None

    def describe(self) -> str:
        if self.outcome is Outcome.RESTARTING:
            return f"worker {self.worker} is restarting (it reads the new state before it serves again)"
        if self.outcome is Outcome.FAILED:
            return f"worker {self.worker} failed: {self.error}"
        return f"worker {self.worker} applied it"


@dataclass(frozen=True)
class WorkerReport:
    """Which front ends serve the state a management call left: every worker process."""

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

    def to_json(self) -> dict[str, Any]:
        return {"applied": self.applied, "total": self.total,
                "workers": [{"worker": o.worker, "outcome": o.outcome.value, "error": o.error}
                            for o in self.outcomes]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerReport:
        return cls(tuple(WorkerOutcome(w["worker"], Outcome(w["outcome"]), w.get("error"))
                         for w in data["workers"]))


@dataclass(frozen=True)
class Managed:
    """A management call's result (what the single-process call returns) and its report."""

    result: Led
    report: WorkerReport


# --- one worker's state, for the status endpoint -----------------------------------------------


class PlacedModel(TypedDict):
    """A model as a worker holds it: its default and the versions loaded there."""

    default: int | None
    loaded: list[int]


@dataclass(frozen=True)
class WorkerInfo:
    """One process of the server as the status endpoint shows it: a worker (a front end, or the
    single process of ``yyai serve``) or the model host."""

    worker: int
    pid: int | None
    state: str  # "serving", "starting", "restarting"
    rss_bytes: int | None = None
    restarts: int = 0
    models: dict[str, PlacedModel] = field(default_factory=dict)  # where models live
    role: str = "worker"  # "worker" or "host"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerInfo:
        return cls(**data)


def local_worker(registry: ModelRegistry, worker: int, *, ready: bool) -> WorkerInfo:
    """This process as a :class:`WorkerInfo`: its memory and what its registry serves."""
    import psutil

    models = {m.name: PlacedModel(default=m.default, loaded=list(m.loaded)) for m in registry.list()}
    return WorkerInfo(worker, os.getpid(), "serving" if ready else "starting",
                      psutil.Process().memory_info().rss, models=models)
