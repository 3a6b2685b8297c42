"""Rollout types: the traffic policy (canary and shadow), what the canary and shadow saw.

A model's traffic policy says what happens to the requests that name no version:

* ``canary``: ``percent`` of them are answered by ``version`` instead of the default;
* ``shadow``: ``percent`` of the rest are also run on ``version``, off the reply's path,
  and the shadow's output is compared with the answer that was sent;
* ``sticky``: a request that carries a key (the ``X-Yyai-Sticky`` header, or a v2
  request ``id``) is placed by a hash of that key, so the same key always lands on the
  same side; requests without a key are drawn at random.

Requests that name a version or a label are never rerouted. The policy is persisted by
the store (``.yyai-state.json``) and parsed here, by one parser, whether it comes from a
client's body or from the state file. The running figures (:class:`RolloutStats`, with
:class:`ShadowStats` and :class:`Disagreement`) are computed by ``rollout/traffic.py``; the
comparison of two outputs lives in ``rollout/compare.py``.

This module imports only numpy, the errors and its sibling type modules; the store, the
registry and the data plane all use it.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import Any

from yyai_kernel.errors import InvalidInputError
from yyai_kernel.hints import Hint, Step
from yyai_kernel.types.jsonview import JsonView
from yyai_kernel.types.latency import Latency
from yyai_kernel.types.refs import require_version

POLICY_EXAMPLE = '{"canary": {"version": 3, "percent": 10}, "shadow": {"version": 4, "percent": 100}, "sticky": true}'
SPLITS = ("canary", "shadow")
STICKY_HEADER = "X-Yyai-Sticky"
_BUCKETS = 2 ** 64


@dataclass(frozen=True)
class TrafficSplit:
    """One side of the policy: ``percent`` (0-100) of the default requests, for ``version``."""

    version: int
    percent: float

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "percent": self.percent}

    @classmethod
    def parse(cls, doc: Any, where: str) -> TrafficSplit:
        if not isinstance(doc, dict):
            raise InvalidInputError(f"{where} must be an object such as {{\"version\": 3, \"percent\": 10}}.",
                                    field=where)
        unknown = sorted(set(doc) - {"version", "percent"})
        if unknown:
            raise InvalidInputError(f"Unknown field(s) {', '.join(map(repr, unknown))} in {where}; "
                                    "it takes 'version' and 'percent'.", field=where)
        for key in ("version", "percent"):
            if key not in doc:
                raise InvalidInputError(f"{where} needs {key!r}, such as {{\"version\": 3, \"percent\": 10}}.",
                                        field=f"{where}.{key}")
        try:
            version = require_version(doc["version"])
        except InvalidInputError as error:
            raise InvalidInputError(f"{where}.version: {error.message}", field=f"{where}.version") from None
        return cls(version, _percent(doc["percent"], f"{where}.percent"))


def _percent(value: Any, where: str) -> float:
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not 0 <= number <= 100:
        raise InvalidInputError(f"{where} must be a number from 0 to 100, not {value!r}.", field=where)
    return float(number)


@dataclass(frozen=True)
class Choice:
    """Where one default request goes: the canary version (None: the default), and a shadow version."""

    canary: int | None = None
    shadow: int | None = None


@dataclass(frozen=True)
class TrafficPolicy(JsonView):
    """A model's canary and shadow split of the requests that name no version."""

    canary: TrafficSplit | None = None
    shadow: TrafficSplit | None = None
    sticky: bool = False

    def versions(self) -> dict[str, int]:
        """``{"canary": N, "shadow": M}`` for the sides that are set."""
        return {side: split.version for side in SPLITS if (split := getattr(self, side)) is not None}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {side: split.to_json() for side in SPLITS if (split := getattr(self, side)) is not None}
        body["sticky"] = self.sticky
        return body

    @classmethod
    def parse(cls, doc: Any) -> TrafficPolicy:
        """A policy from a JSON document (a client's body or the state file), checked field by field."""
        if not isinstance(doc, dict):
            raise InvalidInputError(f"The traffic policy must be a JSON object such as {POLICY_EXAMPLE}.")
        unknown = sorted(set(doc) - {*SPLITS, "sticky"})
        if unknown:
            raise InvalidInputError(f"Unknown field(s) {', '.join(map(repr, unknown))} in the traffic policy; "
                                    "it takes 'canary', 'shadow' and 'sticky'.", field=unknown[0])
        sticky = doc.get("sticky", False)
        if not isinstance(sticky, bool):
            raise InvalidInputError(f"'sticky' must be true or false, not {sticky!r}.", field="sticky")
        splits = {side: TrafficSplit.parse(doc[side], side) for side in SPLITS if doc.get(side) is not None}
        if not splits:
            raise InvalidInputError("The traffic policy names neither a canary nor a shadow, such as "
                                    f"{POLICY_EXAMPLE}; to clear the policy, send DELETE instead.")
        return cls(splits.get("canary"), splits.get("shadow"), sticky)

    from_json = parse

    def check_default(self, name: str, default: int | None) -> None:
        """InvalidInputError when a side names the default: there would be nothing to compare or split."""
        for side, version in self.versions().items():
            if version == default:
                raise InvalidInputError(
                    f"The {side} would be v{version}, which is already the default of {name!r}; name another "
                    "version", field=f"{side}.version", hint=Hint(Step.PIN, name))

    def choose(self, name: str, default: int, key: str | None, rng: random.Random) -> Choice:
        """Where a request for ``name``'s default goes. A side equal to the default is idle.

        A request sent to the canary is not shadowed: the shadow compares against the
        default's answers only.
        """
        key = key if self.sticky and key else None
        canary = self.canary
        if canary is not None and canary.version != default and _drawn(canary.percent, name, "canary", key, rng):
            return Choice(canary=canary.version)
        shadow = self.shadow
        if shadow is not None and shadow.version != default and _drawn(shadow.percent, name, "shadow", key, rng):
            return Choice(shadow=shadow.version)
        return Choice()


def _drawn(percent: float, name: str, side: str, key: str | None, rng: random.Random) -> bool:
    """Whether a request falls within ``percent``: by the hash of its key, else at random.

    The hash (BLAKE2b of model, side and key) is the same in every process and after a
    restart, and a key within 10% stays within 20% when the percentage grows.
    """
    if percent >= 100:
        return True
    if percent <= 0:
        return False
    if key is None:
        return rng.random() * 100 < percent
    digest = hashlib.blake2b(f"{name}\0{side}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _BUCKETS * 100 < percent


@dataclass(frozen=True)
class CanaryStats:
    """The canary side: requests it answered, and those it could not take (it did not serve)."""

    version: int
    requests: int = 0
    fallbacks: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "requests": self.requests, "fallbacks": self.fallbacks}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CanaryStats:
        return cls(int(d["version"]), d.get("requests", 0), d.get("fallbacks", 0))


@dataclass(frozen=True)
class ShadowStats:
    """The shadow side: runs, agreement with the answers sent, errors, dropped work, latencies.

    ``agreement`` is ``rows_agreed / rows_compared`` (None before any comparison);
    ``max_abs_diff`` and ``mean_abs_diff`` are over the compared rows (probabilities for
    classification, absolute error for regression). ``latency_ms`` is the shadow's,
    ``real_latency_ms`` the real replies' of the same requests.
    """

    version: int
    runs: int = 0
    rows_compared: int = 0
    rows_agreed: int = 0
    errors: int = 0
    dropped: int = 0
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    last_error: str | None = None
    latency_ms: Latency = field(default_factory=Latency)
    real_latency_ms: Latency = field(default_factory=Latency)

    @property
    def agreement(self) -> float | None:
        return self.rows_agreed / self.rows_compared if self.rows_compared else None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "runs": self.runs, "rows_compared": self.rows_compared,
            "rows_agreed": self.rows_agreed, "agreement": self.agreement, "errors": self.errors,
            "dropped": self.dropped, "max_abs_diff": self.max_abs_diff, "mean_abs_diff": self.mean_abs_diff,
            "last_error": self.last_error, "latency_ms": self.latency_ms.to_json(),
            "real_latency_ms": self.real_latency_ms.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ShadowStats:
        return cls(int(d["version"]), d.get("runs", 0), d.get("rows_compared", 0), d.get("rows_agreed", 0),
                   d.get("errors", 0), d.get("dropped", 0), d.get("max_abs_diff"), d.get("mean_abs_diff"),
                   d.get("last_error"), Latency(**(d.get("latency_ms") or {})),
                   Latency(**(d.get("real_latency_ms") or {})))


@dataclass(frozen=True)
class RolloutStats(JsonView):
    """A model's running rollout figures since its traffic policy was last set (``since``)."""

    since: float
    default_requests: int = 0
    canary: CanaryStats | None = None
    shadow: ShadowStats | None = None
    disagreements: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since, "default_requests": self.default_requests,
                "canary": None if self.canary is None else self.canary.to_json(),
                "shadow": None if self.shadow is None else self.shadow.to_json(),
                "disagreements": self.disagreements}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RolloutStats:
        return cls(d["since"], d.get("default_requests", 0),
                   CanaryStats.from_json(d["canary"]) if d.get("canary") else None,
                   ShadowStats.from_json(d["shadow"]) if d.get("shadow") else None,
                   d.get("disagreements", 0))


@dataclass(frozen=True)
class InputReference:
    """What a disagreement's input looked like: a thumbnail (PNG) and a summary of the tensor."""

    shape: tuple[int, ...]
    minimum: float
    maximum: float
    mean: float
    png: bytes | None = None
    filename: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "min": self.minimum, "max": self.maximum, "mean": self.mean,
                "png_base64": None if self.png is None else base64.b64encode(self.png).decode("ascii"),
                "filename": self.filename}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InputReference:
        png = d.get("png_base64")
        return cls(tuple(d["shape"]), d["min"], d["max"], d["mean"], base64.b64decode(png) if png else None,
                   d.get("filename"))


@dataclass(frozen=True)
class Disagreement(JsonView):
    """One input row on which the shadow disagreed with the answer sent: the input and both outputs."""

    id: int
    time: float
    version: int
    shadow_version: int
    input: InputReference
    output: tuple[float, ...]
    shadow_output: tuple[float, ...]
    labels: tuple[str, ...]
    shadow_labels: tuple[str, ...]
    top: str | None
    shadow_top: str | None
    abs_diff: float | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "version": self.version, "shadow_version": self.shadow_version,
                "input": self.input.to_json(), "output": list(self.output), "shadow_output": list(self.shadow_output),
                "labels": list(self.labels), "shadow_labels": list(self.shadow_labels), "top": self.top,
                "shadow_top": self.shadow_top, "abs_diff": self.abs_diff}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Disagreement:
        return cls(d["id"], d["time"], d["version"], d["shadow_version"], InputReference.from_json(d["input"]),
                   tuple(d["output"]), tuple(d["shadow_output"]), tuple(d["labels"]), tuple(d["shadow_labels"]),
                   d.get("top"), d.get("shadow_top"), d.get("abs_diff"))


@dataclass(frozen=True)
class VersionLabel(JsonView):
    """One label of one model and the version it names (``GET /models/{m}/labels/{label}``)."""

    name: str
    label: str
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "version": self.version}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VersionLabel:
        return cls(d["name"], d["label"], int(d["version"]))


@dataclass(frozen=True)
class TrafficReport(JsonView):
    """A model's traffic policy and its running figures (``GET /models/{m}/traffic``)."""

    name: str
    policy: TrafficPolicy | None
    rollout: RolloutStats | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "policy": None if self.policy is None else self.policy.to_json(),
                "rollout": None if self.rollout is None else self.rollout.to_json()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrafficReport:
        return cls(d["name"], TrafficPolicy.parse(d["policy"]) if d.get("policy") else None,
                   RolloutStats.from_json(d["rollout"]) if d.get("rollout") else None)

