"""The typed results every layer shares: states, statuses, descriptions, predictions.

Why one module: the registry, the data plane, the REST handlers, the HTTP client, the
dashboard and the metrics all speak about the same facts (a version's state, a model's
default, a prediction's labels). Each fact is defined here once, as an enum or a frozen
dataclass, and each type writes its own JSON (``to_json``) and, where a client reads it
back, parses it (``from_json``). JSON is made at the edge; the layers pass these types.

The rules for names, versions and version labels live here too (:func:`check_name`,
:func:`parse_version`, :func:`check_label`, :func:`parse_version_ref`), so every front end
refuses the same inputs with the same words.

For scripts that index replies as dicts, every result also reads like its JSON
(``status["versions"]["2"]["state"]``): :class:`JsonView` maps ``[]`` and ``get`` onto
``to_json()``. Code inside yyai uses the attributes.

This module imports only numpy and the errors: every layer may import it.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError

if TYPE_CHECKING:  # rollout.py imports this module; ModelStatus only refers to its types
    from .rollout import RolloutStats, TrafficPolicy

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
NAME_RE = re.compile(NAME_PATTERN)
MAX_VERSION_DIGITS = 9
# A label starts with a letter, so that it never reads as a version number: wherever a
# version is accepted (``/predictions/m/stable``, ``/v2/models/m/versions/stable/infer``,
# ``?version=stable``), a label is accepted in its place.
LABEL_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
LABEL_RE = re.compile(LABEL_PATTERN)


def check_name(name: str) -> str:
    """A model name, checked: 1-64 characters of a-z, 0-9, '_', '.', '-', and no '..'."""
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise InvalidInputError(
            f"{name!r} is not a model name: names are 1-64 characters of a-z, 0-9, '_', '.', '-'."
        )
    return name


def parse_version(version: Any) -> int | None:
    """A version from a URL, a body or a caller: None, or a positive integer.

    Accepts an int or a string of digits only ("2"); refuses booleans, signs, spaces,
    fractions and zero, so ``+1`` and `` 7 `` mean the same thing everywhere: nothing.
    """
    if version is None:
        return None
    if isinstance(version, (int, np.integer)) and not isinstance(version, bool):
        value = int(version)
    elif isinstance(version, str) and version.isdigit() and version.isascii() and len(version) <= MAX_VERSION_DIGITS:
        value = int(version)
    else:
        raise InvalidInputError(f"Version must be a positive integer, not {version!r}.")
    if value < 1:
        raise InvalidInputError(f"Version must be a positive integer, not {version!r}.")
    return value


def check_label(label: str) -> str:
    """A version label, checked: 1-32 characters of a-z, 0-9, '_', '-', starting with a letter."""
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise InvalidInputError(
            f"{label!r} is not a version label: labels are 1-32 characters of a-z, 0-9, '_', '-', "
            "starting with a letter (such as 'stable' or 'canary')."
        )
    return label


def parse_version_ref(version: Any) -> int | str | None:
    """What a request names in the version's place: None, a version number, or a label.

    Digits are a version (:func:`parse_version`); a string that starts with a letter is a
    label (:func:`check_label`); anything else is refused with both rules in the message.
    """
    if isinstance(version, str) and version[:1].isalpha():
        if LABEL_RE.match(version):
            return version
        raise InvalidInputError(
            f"Version must be a positive integer or a label (1-32 characters of a-z, 0-9, '_', '-', "
            f"starting with a letter), not {version!r}."
        )
    try:
        return parse_version(version)
    except InvalidInputError:
        raise InvalidInputError(
            f"Version must be a positive integer or a label (such as 'stable'), not {version!r}."
        ) from None


class JsonView:
    """Read access to a result through its JSON form, for scripts that index dicts."""

    def to_json(self) -> Any:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __getitem__(self, key):
        return self.to_json()[key]

    def get(self, key, default=None):
        return self.to_json().get(key, default)

    def __contains__(self, key) -> bool:
        return key in self.to_json()


# --- states ---------------------------------------------------------------------------


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


# --- statuses ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Percentiles of the recent latencies of one version, in milliseconds (None: no data)."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None

    def to_json(self) -> dict:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99}

    @classmethod
    def of(cls, latencies_ms) -> "Latency":
        """The percentiles of a window of latencies (milliseconds), rounded to microseconds."""
        if not len(latencies_ms):
            return cls()
        values = np.asarray(latencies_ms, dtype=np.float64)
        return cls(*(round(float(np.percentile(values, q)), 3) for q in (50, 90, 99)))


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

    @property
    def ready(self) -> bool:
        return self.state is VersionState.READY

    def to_json(self) -> dict:
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
        }

    @classmethod
    def from_json(cls, d: dict) -> "VersionStatus":
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
        )


@dataclass(frozen=True)
class ModelStatus(JsonView):
    """Everything about one model: its versions, which one is the default, and why.

    ``labels`` and ``traffic`` (the canary and shadow policy) come from the store;
    ``rollout`` (the running canary counts and shadow agreement) from the data plane.
    """

    name: str
    default: int | None
    pinned: bool
    versions: dict[int, VersionStatus]
    last_error: str | None = None
    default_reason: str = ""
    labels: dict[str, int] = field(default_factory=dict)
    traffic: TrafficPolicy | None = None
    rollout: RolloutStats | None = None

    def version(self, version: int) -> VersionStatus | None:
        return self.versions.get(version)

    @property
    def loaded(self) -> list[int]:
        return sorted(v for v, s in self.versions.items() if s.ready)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "default": self.default,
            "pinned": self.pinned,
            "default_reason": self.default_reason,
            "last_error": self.last_error,
            "versions": {str(v): s.to_json() for v, s in sorted(self.versions.items())},
            "labels": dict(sorted(self.labels.items())),
            "traffic": None if self.traffic is None else self.traffic.to_json(),
            "rollout": None if self.rollout is None else self.rollout.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict) -> "ModelStatus":
        from .rollout import RolloutStats, TrafficPolicy  # rollout imports this module

        return cls(
            name=d["name"],
            default=d.get("default"),
            pinned=bool(d.get("pinned")),
            versions={int(k): VersionStatus.from_json(v) for k, v in (d.get("versions") or {}).items()},
            last_error=d.get("last_error"),
            default_reason=d.get("default_reason", ""),
            labels={str(k): int(v) for k, v in (d.get("labels") or {}).items()},
            traffic=TrafficPolicy.from_json(d["traffic"]) if d.get("traffic") else None,
            rollout=RolloutStats.from_json(d["rollout"]) if d.get("rollout") else None,
        )


@dataclass(frozen=True)
class ModelSummary(JsonView):
    """One line of ``GET /models``: the versions in the store, the default, the loaded ones."""

    name: str
    versions: tuple[int, ...]
    default: int | None
    loaded: tuple[int, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "versions": list(self.versions), "default": self.default,
                "loaded": list(self.loaded)}

    @classmethod
    def from_json(cls, d: dict) -> "ModelSummary":
        return cls(d["name"], tuple(d["versions"]), d.get("default"), tuple(d.get("loaded", ())))


@dataclass(frozen=True)
class StoreProblemInfo:
    """An archive the store skipped (``kind``: unreadable or duplicate)."""

    path: str
    kind: str
    error: str

    def to_json(self) -> dict:
        return {"path": self.path, "kind": self.kind, "error": self.error}


@dataclass(frozen=True)
class ServerStatus(JsonView):
    """Every model's status, plus the store's skipped archives and state-file error."""

    models: dict[str, ModelStatus]
    problems: tuple[StoreProblemInfo, ...] = ()
    state_error: str | None = None

    def to_json(self) -> dict:
        return {
            "models": {n: m.to_json() for n, m in self.models.items()},
            "problems": [p.to_json() for p in self.problems],
            "state_error": self.state_error,
        }

    @classmethod
    def from_json(cls, d: dict) -> "ServerStatus":
        return cls(
            models={n: ModelStatus.from_json(m) for n, m in (d.get("models") or {}).items()},
            problems=tuple(StoreProblemInfo(p["path"], p["kind"], p["error"]) for p in d.get("problems") or ()),
            state_error=d.get("state_error"),
        )


@dataclass(frozen=True)
class ModelRemoved(JsonView):
    """The reply when a model's last version was purged: the model is gone."""

    name: str

    def to_json(self) -> dict:
        return {"name": self.name, "removed": True}


@dataclass(frozen=True)
class ModelError(JsonView):
    """One model's failure inside a reply about several (a rescan)."""

    name: str
    error: str

    def to_json(self) -> dict:
        return {"name": self.name, "error": self.error}


@dataclass(frozen=True)
class InstallResult(JsonView):
    """What an upload did: the name and version installed, the model's status, and a line for people."""

    name: str
    version: int
    model: ModelStatus
    message: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version, "message": self.message, "model": self.model.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> "InstallResult":
        return cls(d["name"], int(d["version"]), ModelStatus.from_json(d["model"]), d.get("message", ""))


# --- descriptions -------------------------------------------------------------------------


COMBINED_OUTPUT = "output"  # the v2 name of an ensemble's combined output


@dataclass(frozen=True)
class VersionDescription(JsonView):
    """What a version takes and gives: the manifest's input and output specs, and its members.

    ``input`` and ``output`` are the manifest's own objects (documented in the archive
    format), so they travel as the manifest writes them.
    """

    name: str
    version: int
    input: dict
    output: dict
    members: tuple[str, ...]
    combine: str = "mean"
    description: str = ""
    status: VersionStatus | None = None

    @property
    def classification(self) -> bool:
        return self.output["kind"] == "classification"

    @property
    def labels(self) -> list[str]:
        """The classification labels, or the regression output names."""
        return list(self.output.get("labels") or self.output.get("names") or [])

    @property
    def output_width(self) -> int:
        return len(self.labels)

    @property
    def has_combined(self) -> bool:
        return self.combine == "mean" or len(self.members) == 1

    @property
    def input_name(self) -> str:
        return self.input.get("name", "input")

    @property
    def output_names(self) -> list[str]:
        """The v2 output names: ``output`` (when combined), then one per member."""
        names = [COMBINED_OUTPUT] if self.has_combined else []
        return names + [m for m in self.members if m != COMBINED_OUTPUT or not names]

    def preprocessing(self) -> str:
        """How image pixels become the model's input, in one line."""
        spec = self.input
        return (f"x = pixel * {spec.get('scale', 1.0):g} + {spec.get('offset', 0.0):g}, "
                f"{spec.get('color', 'rgb')}, shape {list(spec['shape'])} {spec.get('dtype', 'float32')}")

    def with_status(self, status: VersionStatus | None) -> "VersionDescription":
        return VersionDescription(self.name, self.version, self.input, self.output, self.members,
                                  self.combine, self.description, status)

    def to_json(self) -> dict:
        body = {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "input": self.input,
            "output": self.output,
            "output_width": self.output_width,
            "members": list(self.members),
            "combine": self.combine,
            "has_combined": self.has_combined,
        }
        if self.status is not None:
            body["status"] = self.status.to_json()
        return body

    @classmethod
    def from_json(cls, d: dict) -> "VersionDescription":
        status = d.get("status")
        return cls(d["name"], int(d["version"]), d["input"], d["output"], tuple(d["members"]),
                   d.get("combine", "mean"), d.get("description", ""),
                   VersionStatus.from_json(status) if status else None)


# --- predictions --------------------------------------------------------------------------

EXPLAIN_METHODS = ("gradcam",)


def check_explain(method: str | None) -> str | None:
    """An explanation method from a request (``?explain=``): None for none, else a known one."""
    if method is None or method == "":
        return None
    if method not in EXPLAIN_METHODS:
        raise InvalidInputError(f"Unknown explanation {method!r}; yyai explains with: {', '.join(EXPLAIN_METHODS)}.",
                                field="explain")
    return method


@dataclass(frozen=True)
class Explanation(JsonView):
    """Where one member looked for one image (a Grad-CAM heat map), or why it cannot say.

    ``heatmap`` is on the explained layer's grid, in 0..1; ``overlay_png`` draws it over
    the image as the model sees it. ``label`` is the class (or output) explained: the
    version's answer for that image.
    """

    method: str
    available: bool
    reason: str = ""
    layer: str | None = None
    label: str | None = None
    heatmap: np.ndarray | None = None
    overlay_png: bytes | None = None

    def to_json(self) -> dict:
        if not self.available:
            return {"method": self.method, "available": False, "reason": self.reason}
        return {"method": self.method, "available": True, "layer": self.layer, "label": self.label,
                "heatmap": np.round(self.heatmap.astype(float), 4).tolist(),
                "overlay_png": base64.b64encode(self.overlay_png).decode("ascii")}

    @classmethod
    def from_json(cls, data: dict) -> "Explanation":
        if not data.get("available"):
            return cls(data["method"], False, data.get("reason", ""))
        return cls(data["method"], True, "", data.get("layer"), data.get("label"),
                   np.asarray(data["heatmap"], dtype=np.float32), base64.b64decode(data["overlay_png"]))


@dataclass(frozen=True)
class Prediction(JsonView):
    """One answer: the version that gave it, each member's ``[B, K]`` output and the combined one.

    It owns how outputs read for people: labelled rows, the top label, the top k.
    ``filenames`` names the images of an image request, row by row, when known;
    ``explanations`` holds, row by row, each member's :class:`Explanation` when one was asked for.
    """

    name: str
    version: int
    members: dict[str, np.ndarray]
    combined: np.ndarray | None
    output: dict
    filenames: tuple[str | None, ...] | None = None
    explanations: tuple[dict[str, Explanation], ...] | None = None  # per row: member -> Explanation

    def __len__(self) -> int:
        return len(next(iter(self.members.values())))

    @property
    def classification(self) -> bool:
        return self.output.get("kind") == "classification"

    def best(self) -> np.ndarray:
        """The output that answers for the whole model: combined, else the first member's."""
        return self.combined if self.combined is not None else next(iter(self.members.values()))

    def label(self, row: np.ndarray):
        """One output row for people: labels by probability (highest first), or named values."""
        values = row.tolist()  # plain floats: indexing a numpy row per entry costs more than the row
        if self.classification:
            labels = self.output["labels"]
            if any(v != v for v in values):  # NaN: NumPy's order puts it last
                order = np.argsort(-row, kind="stable").tolist()
            else:  # highest first; a stable sort keeps ties in label order
                order = sorted(range(len(values)), key=values.__getitem__, reverse=True)
            return [{"label": labels[j], "probability": round(values[j], 6)} for j in order]
        names = self.output.get("names") or [f"y{j}" for j in range(len(values))]
        rounding = self.output.get("rounding", 4)
        return {n: round(v, rounding) for n, v in zip(names, values)}

    def top(self, i: int = 0) -> tuple[str, float] | None:
        """The best (label, probability) of row ``i``: from the combined output, or the only member."""
        k = self.top_k(i, 1)
        return k[0] if k else None

    def top_k(self, i: int = 0, k: int = 5) -> list[tuple[str, float]]:
        """The k best (label, probability) of row ``i``; empty for regression or an ensemble without a combined output."""
        if not self.classification or (self.combined is None and len(self.members) != 1):
            return []
        row = self.best()[i]
        order = np.argsort(-row, kind="stable")[:k]
        return [(self.output["labels"][j], float(row[j])) for j in order]

    def rows(self) -> list[dict]:
        """Per input row, each member's output and the combined one, labelled for people."""
        return [
            {
                "members": {name: self.label(out[i]) for name, out in self.members.items()},
                "combined": None if self.combined is None else self.label(self.combined[i]),
            }
            for i in range(len(self))
        ]

    def to_json(self, *, raw: bool = False) -> dict:
        """The reply of ``POST /predictions``: model, version and one labelled row per image."""
        rows = self.rows()
        for i, row in enumerate(rows):
            top = self.top(i)
            row["top"] = top[0] if top else None
            if self.filenames and self.filenames[i] is not None:
                row["filename"] = self.filenames[i]
            if self.explanations is not None:
                row["explanations"] = {m: e.to_json() for m, e in self.explanations[i].items()}
            if raw:
                row["raw"] = {
                    "members": {m: out[i].tolist() for m, out in self.members.items()},
                    "combined": None if self.combined is None else self.combined[i].tolist(),
                }
        return {"model": self.name, "version": self.version, "predictions": rows}

    @classmethod
    def from_json(cls, reply: dict, output: dict) -> "Prediction":
        """A Prediction from a ``POST /predictions?raw=true`` reply and the version's output spec."""
        rows = reply["predictions"]
        names = list(rows[0]["raw"]["members"]) if rows else []
        members = {m: np.array([r["raw"]["members"][m] for r in rows], dtype=np.float32) for m in names}
        combined = None
        if rows and rows[0]["raw"]["combined"] is not None:
            combined = np.array([r["raw"]["combined"] for r in rows], dtype=np.float32)
        filenames = tuple(r.get("filename") for r in rows)
        explanations = None
        if rows and "explanations" in rows[0]:
            explanations = tuple({m: Explanation.from_json(e) for m, e in r["explanations"].items()} for r in rows)
        return cls(reply["model"], int(reply["version"]), members, combined, output,
                   filenames if any(filenames) else None, explanations)
