"""StoreState: what the store persists besides archives, in ``.yyai-state.json``.

Three sections, each ``{model name: ...}``:

* ``pins``: the version pinned as the default;
* ``labels``: version labels (``{"stable": 2, "canary": 3}``);
* ``traffic``: the canary and shadow policy (:class:`~yyai_kernel.types.rollout.TrafficPolicy`).

and ``recent``, the versions that answered requests, most recently used first
(``[["digits", 2], ...]``), which the registry loads first at the next start
(``registry/registry.py``, the warm set). It is a hint: a bad one is ignored.

A file written before labels existed holds only ``pins`` and reads the same; sections
that are empty are not written, so such a file is also what this version writes until a
label or a policy is set. Top-level keys this version does not know are kept as they
are when the file is rewritten. Reading is forgiving, section by section: a section that
does not parse is reported and ignored, and the others still apply (the store logs it
and serves the latest versions where a pin was lost). The store writes the file
atomically; this module only turns it into values and back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from yyai_kernel.errors import InvalidInputError
from yyai_kernel.types import LABEL_RE, TrafficPolicy

SECTIONS = ("pins", "labels", "traffic", "recent")


@dataclass(frozen=True)
class StoreState:
    """Pins, labels and traffic policies by model name, plus keys kept for other writers."""

    pins: dict[str, int] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    traffic: dict[str, TrafficPolicy] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    recent: tuple[tuple[str, int], ...] = ()

    # --- reading and writing ------------------------------------------------------------

    @classmethod
    def parse(cls, data: Any) -> tuple[StoreState, list[str]]:
        """The state a parsed file holds, and a line per section that was ignored ("does not hold ...")."""
        if not isinstance(data, dict):
            return cls(), ['does not hold {"pins": {name: version}}']
        problems: list[str] = []
        pins = data.get("pins", {})
        if not _versions_by_key(pins, lambda k: isinstance(k, str)):
            problems.append('does not hold {"pins": {name: version}}')
            pins = {}
        labels = data.get("labels", {})
        if not isinstance(labels, dict) or not all(
            isinstance(name, str) and _versions_by_key(by, lambda k: isinstance(k, str) and LABEL_RE.match(k))
            for name, by in labels.items()
        ):
            problems.append('does not hold "labels" as {name: {label: version}}')
            labels = {}
        traffic = {}
        try:
            traffic = {str(name): TrafficPolicy.parse(doc) for name, doc in _object(data.get("traffic", {})).items()}
        except InvalidInputError as error:
            problems.append(f'does not hold a "traffic" section that parses: {error.message}')
        extra = {k: v for k, v in data.items() if k not in SECTIONS}
        recent = data.get("recent", [])
        if not (isinstance(recent, list) and all(
                isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and type(e[1]) is int for e in recent)):
            recent = []  # a hint only: dropped without a word
        return cls(dict(pins), {n: dict(by) for n, by in labels.items() if by}, traffic, extra,
                   tuple((n, v) for n, v in recent)), problems

    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {"pins": dict(sorted(self.pins.items()))}
        if self.labels:
            body["labels"] = {n: dict(sorted(by.items())) for n, by in sorted(self.labels.items())}
        if self.traffic:
            body["traffic"] = {n: p.to_json() for n, p in sorted(self.traffic.items())}
        if self.recent:
            body["recent"] = [[n, v] for n, v in self.recent]
        body.update(self.extra)
        return (json.dumps(body, indent=2) + "\n").encode("utf-8")

    # --- changes (each returns a new state) ----------------------------------------------

    def with_pin(self, name: str, version: int | None) -> StoreState:
        pins = {k: v for k, v in self.pins.items() if k != name}
        return replace(self, pins=pins if version is None else {**pins, name: int(version)})

    def with_label(self, name: str, label: str, version: int | None) -> StoreState:
        by = {k: v for k, v in self.labels.get(name, {}).items() if k != label}
        if version is not None:
            by[label] = int(version)
        labels = {k: v for k, v in self.labels.items() if k != name}
        return replace(self, labels={**labels, name: by} if by else labels)

    def with_traffic(self, name: str, policy: TrafficPolicy | None) -> StoreState:
        traffic = {k: v for k, v in self.traffic.items() if k != name}
        return replace(self, traffic=traffic if policy is None else {**traffic, name: policy})

    def with_recent(self, recent: list[tuple[str, int]]) -> StoreState:
        return replace(self, recent=tuple(recent))

    # --- questions -------------------------------------------------------------------------

    def references(self, name: str, version: int) -> list[str]:
        """What points at a version besides a pin: its labels and its place in the traffic policy."""
        found = [f"the label {label!r}" for label, v in sorted(self.labels.get(name, {}).items()) if v == version]
        policy = self.traffic.get(name)
        if policy is not None:
            found += [f"the {side} of the traffic policy" for side, v in policy.versions().items() if v == version]
        return found


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError("it is not an object of {name: policy}")
    return value


def _versions_by_key(value: Any, key_ok: Callable[[Any], object]) -> bool:
    return isinstance(value, dict) and all(key_ok(k) and type(v) is int and v >= 1 for k, v in value.items())
