"""States and statuses: where each version stands, a model's status, the server's, what an upload did.

Each fact is an enum or a frozen dataclass that writes its own JSON (``to_json``) and,
where a client reads it back, parses it (``from_json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from yyai_kernel.hints import REST_WORDS, Hint, Step, Words, with_hints
from yyai_kernel.types.jsonview import JsonView
from yyai_kernel.types.latency import Latency
from yyai_kernel.types.refs import check_label
from yyai_kernel.types.rollout import RolloutStats, TrafficPolicy


class VersionState(str, Enum):
    """Where one version of a model stands in this server."""

    AVAILABLE = "available"  # in the store, never loaded here
    LOADING = "loading"  # a first load is running
    READY = "ready"  # loaded and serving
    FAILED = "failed"  # its last load failed and nothing older serves
    UNLOADED = "unloaded"  # an operator (or a deleted archive) stopped it
    REMOVED = "removed"  # its archive left the store; a request in flight may still finish

    def __str__(self) -> str:
        return self.value

    @property
    def triton(self) -> str:
        """The state name of Triton's repository extension."""
        return _TRITON_STATES.get(self, "UNAVAILABLE")


_TRITON_STATES = {VersionState.READY: "READY", VersionState.LOADING: "LOADING"}


class DefaultWhy(str, Enum):
    """Why a version is a model's default (the registry decides which applies)."""

    NO_VERSION = "no_version"  # the store holds no version of the model
    PINNED = "pinned"  # an operator pinned it
    LATEST = "latest"  # it is the latest version
    WAITING = "waiting"  # it answers until the latest, which should take over, serves

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class DefaultReason:
    """Which version answers requests that name none, and why: data each front end words.

    ``say(words)`` is the sentence with the next step (such as following the latest again
    when a newer version waits behind a pin) in an interface's words; ``str()`` is the
    sentence alone, for a front end with no words for the step.
    """

    why: DefaultWhy
    name: str
    default: int | None = None
    latest: int | None = None

    @property
    def hints(self) -> tuple[Hint, ...]:
        if self.why is DefaultWhy.PINNED and self.latest is not None and self.latest != self.default:
            return (Hint(Step.FOLLOW_LATEST, self.name),)
        return ()

    def __str__(self) -> str:
        if self.why is DefaultWhy.NO_VERSION:
            return "no version is in the store"
        if self.why is DefaultWhy.PINNED:
            newer = f" (v{self.latest} is newer)" if self.hints else ""
            return f"v{self.default} is the default: pinned{newer}"
        if self.why is DefaultWhy.WAITING:
            return f"v{self.default} stays the default until v{self.latest}, the latest, serves"
        return f"v{self.default} is the default: the latest version"

    def say(self, words: Words) -> str:
        """The sentence and its next step in ``words``, with no final period."""
        return with_hints(str(self), self.hints, words).rstrip(".")

    def to_json(self) -> dict[str, Any]:
        return {"why": self.why.value, "name": self.name, "default": self.default, "latest": self.latest}

    @classmethod
    def from_json(cls, d: object) -> DefaultReason | None:
        if not isinstance(d, dict):
            return None
        try:
            why = DefaultWhy(d.get("why"))
        except ValueError:
            return None
        return cls(why, str(d.get("name", "")), d.get("default"), d.get("latest"))




@dataclass(frozen=True)
class VersionStatus(JsonView):
    """One version of one model: state, load figures, traffic and its manifest's headline."""

    version: int
    state: VersionState
    in_store: bool = True
    load_time_s: float | None = None
    warmup_time_s: float | None = None
    loaded_at: float | None = None
    last_error: str | None = None
    requests: int = 0
    errors: int = 0
    latency_ms: Latency = field(default_factory=Latency)
    batch_sizes: dict[int, int] = field(default_factory=dict)
    description: str = ""
    created: str | None = None
    members: tuple[str, ...] = ()
    reason: str = ""
    memory_bytes: int | None = None  # measured at its last load (registry/memory.py)
    used_at: float | None = None  # when it last answered a request (wall time)

    @property
    def ready(self) -> bool:
        return self.state is VersionState.READY

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "state": self.state.value,
            "reason": self.reason,
            "in_store": self.in_store,
            "load_time_s": self.load_time_s,
            "warmup_time_s": self.warmup_time_s,
            "loaded_at": self.loaded_at,
            "last_error": self.last_error,
            "requests": self.requests,
            "errors": self.errors,
            "latency_ms": self.latency_ms.to_json(),
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "description": self.description,
            "created": self.created,
            "members": list(self.members),
            "memory_bytes": self.memory_bytes,
            "used_at": self.used_at,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VersionStatus:
        return cls(
            version=int(d["version"]),
            state=VersionState(d["state"]),
            in_store=d.get("in_store", True),
            load_time_s=d.get("load_time_s"),
            warmup_time_s=d.get("warmup_time_s"),
            loaded_at=d.get("loaded_at"),
            last_error=d.get("last_error"),
            requests=d.get("requests", 0),
            errors=d.get("errors", 0),
            latency_ms=Latency(**(d.get("latency_ms") or {})),
            batch_sizes={int(k): v for k, v in (d.get("batch_sizes") or {}).items()},
            description=d.get("description", ""),
            created=d.get("created"),
            members=tuple(d.get("members", ())),
            reason=d.get("reason", ""),
            memory_bytes=d.get("memory_bytes"),
            used_at=d.get("used_at"),
        )


@dataclass(frozen=True)
class ResidencyStatus(JsonView):
    """What the registry keeps loaded, against its budget, and what loading cost so far.

    ``resident_bytes`` sums the measured cost of the loaded versions; ``process_rss_bytes``
    is the whole process (TensorFlow itself included). Counters run from the registry's start.
    """

    budget_bytes: int | None = None
    max_loaded: int | None = None
    loaded: int = 0
    resident_bytes: int = 0
    process_rss_bytes: int = 0
    loads: int = 0
    load_failures: int = 0
    evictions: int = 0
    cold_starts: int = 0
    cold_start_wait_s: float = 0.0
    cold_start_timeouts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}

    @classmethod
    def summed(cls, parts: list[ResidencyStatus]) -> ResidencyStatus | None:
        """Several registries' as one (a model host per GPU): every field added up, the budgets
        too (each host has its own; a budget is unset when any host has none)."""
        if not parts:
            return None
        fields = [key for key in cls.__dataclass_fields__ if key not in ("budget_bytes", "max_loaded")]
        budgets = [p.budget_bytes for p in parts]
        counts = [p.max_loaded for p in parts]
        return cls(budget_bytes=None if None in budgets else sum(b for b in budgets if b is not None),
                   max_loaded=None if None in counts else sum(c for c in counts if c is not None),
                   **{key: sum(getattr(p, key) for p in parts) for key in fields})

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ResidencyStatus:
        return cls(**{key: d[key] for key in cls.__dataclass_fields__ if key in d})


@dataclass(frozen=True)
class ModelStatus(JsonView):
    """Everything about one model: its versions, which one is the default, and why.

    ``labels`` and ``traffic`` (the canary and shadow policy) come from the store;
    ``rollout`` (the running canary counts and shadow agreement) from the data plane.
    ``default_why`` says why the default is the default, as data each front end words
    (``default_why.say(words)``); ``default_reason`` is that sentence with no next step.
    The JSON's ``default_reason`` is in the REST API's words, and ``default_why`` travels
    beside it as data.
    """

    name: str
    default: int | None
    pinned: bool
    versions: dict[int, VersionStatus]
    last_error: str | None = None
    default_why: DefaultReason | None = None
    labels: dict[str, int] = field(default_factory=dict)
    traffic: TrafficPolicy | None = None
    rollout: RolloutStats | None = None
    device: str | None = None  # the GPU of the model host that serves it (--devices, several); None: the only one

    def version(self, version: int) -> VersionStatus | None:
        return self.versions.get(version)

    @property
    def loaded(self) -> list[int]:
        return sorted(v for v, s in self.versions.items() if s.ready)

    @property
    def default_reason(self) -> str:
        return "" if self.default_why is None else str(self.default_why)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "default": self.default,
            "pinned": self.pinned,
            "default_reason": "" if self.default_why is None else self.default_why.say(REST_WORDS),
            "default_why": None if self.default_why is None else self.default_why.to_json(),
            "last_error": self.last_error,
            "versions": {str(v): s.to_json() for v, s in sorted(self.versions.items())},
            "labels": dict(sorted(self.labels.items())),
            "traffic": None if self.traffic is None else self.traffic.to_json(),
            "rollout": None if self.rollout is None else self.rollout.to_json(),
            **({} if self.device is None else {"device": self.device}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelStatus:
        return cls(
            name=d["name"],
            default=d.get("default"),
            pinned=bool(d.get("pinned")),
            versions={int(k): VersionStatus.from_json(v) for k, v in (d.get("versions") or {}).items()},
            last_error=d.get("last_error"),
            default_why=DefaultReason.from_json(d.get("default_why")),
            labels={str(k): int(v) for k, v in (d.get("labels") or {}).items()},
            traffic=TrafficPolicy.from_json(d["traffic"]) if d.get("traffic") else None,
            rollout=RolloutStats.from_json(d["rollout"]) if d.get("rollout") else None,
            device=d.get("device"),
        )


@dataclass(frozen=True)
class ModelSummary(JsonView):
    """One line of ``GET /models``: the versions in the store, the default, the loaded ones."""

    name: str
    versions: tuple[int, ...]
    default: int | None
    loaded: tuple[int, ...]
    device: str | None = None  # as ModelStatus.device

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "versions": list(self.versions), "default": self.default,
                "loaded": list(self.loaded), **({} if self.device is None else {"device": self.device})}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelSummary:
        return cls(d["name"], tuple(d["versions"]), d.get("default"), tuple(d.get("loaded", ())), d.get("device"))


class StoreProblemKind(StrEnum):
    """Why the store skipped an archive."""

    UNREADABLE = "unreadable"  # it is not a valid archive (or could not be read)
    DUPLICATE = "duplicate"  # another archive claims the same name and version


@dataclass(frozen=True)
class StoreProblemInfo:
    """An archive the store skipped, and why."""

    path: str
    kind: StoreProblemKind
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind.value, "error": self.error}


@dataclass(frozen=True)
class ServerStatus(JsonView):
    """Every model's status, plus the store's skipped archives and state-file error, and
    what the registry keeps loaded (``residency``; None where the runtimes live elsewhere, as on Ray)."""

    models: dict[str, ModelStatus]
    problems: tuple[StoreProblemInfo, ...] = ()
    state_error: str | None = None
    residency: ResidencyStatus | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "models": {n: m.to_json() for n, m in self.models.items()},
            "problems": [p.to_json() for p in self.problems],
            "state_error": self.state_error,
            "residency": None if self.residency is None else self.residency.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ServerStatus:
        return cls(
            models={n: ModelStatus.from_json(m) for n, m in (d.get("models") or {}).items()},
            problems=tuple(StoreProblemInfo(p["path"], StoreProblemKind(p["kind"]), p["error"])
                           for p in d.get("problems") or ()),
            state_error=d.get("state_error"),
            residency=ResidencyStatus.from_json(d["residency"]) if d.get("residency") else None,
        )


@dataclass(frozen=True)
class ModelRemoved(JsonView):
    """The reply when a model's last version was purged: the model is gone."""

    name: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "removed": True}


@dataclass(frozen=True)
class ModelError(JsonView):
    """One model's failure inside a reply about several (a rescan)."""

    name: str
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "error": self.error}


@dataclass(frozen=True)
class InstallOptions:
    """How an upload enters: ``promote`` (True: it becomes the default, pinned; False: it is
    staged, the default stays; None: the server's rule), a ``label`` to point at it, and
    whether it may ``replace`` different content under the same name and version."""

    promote: bool | None = None
    label: str | None = None
    replace: bool = False

    @classmethod
    def parse(cls, promote: bool | None = None, label: str | None = None, replace: bool = False) -> InstallOptions:
        """The options of a request, checked (a bad label is a 400)."""
        return cls(promote, None if label is None else check_label(label), bool(replace))

    def to_json(self) -> dict[str, Any]:
        return {"promote": self.promote, "label": self.label, "replace": self.replace}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> InstallOptions:
        d = d or {}
        return cls(d.get("promote"), d.get("label"), bool(d.get("replace", False)))


@dataclass(frozen=True)
class InstallResult(JsonView):
    """What an upload did: the name and version installed, the model's status, and a line for people.

    ``staged``: the version serves by its number (and label) while another stays the default;
    ``changed`` is False when the same content was there already (nothing was done).
    ``message`` names no interface's steps; the JSON's adds the default's next step (such
    as following the latest again) in the REST API's words. Another front end words it
    from ``model.default_why``.
    """

    name: str
    version: int
    model: ModelStatus
    message: str = ""
    staged: bool = False
    changed: bool = True

    @property
    def hints(self) -> tuple[Hint, ...]:
        """The next steps: promote a staged version, and the default's own (such as following the latest)."""
        promote = (Hint(Step.PIN, self.name, self.version),) if self.staged else ()
        return promote + (self.model.default_why.hints if self.model.default_why is not None else ())

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "message": with_hints(self.message, self.hints, REST_WORDS),
                "staged": self.staged, "changed": self.changed, "default": self.model.default,
                "model": self.model.to_json()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InstallResult:
        return cls(d["name"], int(d["version"]), ModelStatus.from_json(d["model"]), d.get("message", ""),
                   bool(d.get("staged", False)), bool(d.get("changed", True)))

