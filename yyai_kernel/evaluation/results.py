"""The typed result of an evaluation: scores per version, disagreements, per-item rows.

Frozen dataclasses, so a result can be handed to any front end (CLI table, REST job,
dashboard) as it is; `to_json()` makes the JSON at the edge and `to_csv()` the per-item
export. `Evaluation.residual_plot()` draws the regression residuals on demand, so a
result never carries PNG bytes it may not need.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import cast

from yyai_kernel.evaluation.metrics import Scores, residual_plot, scores_from_json
from yyai_kernel.evaluation.sets import BadItem
from yyai_kernel.types.specs import OutputKind

Truth = str | float


@dataclass(frozen=True)
class VersionResult:
    """One version's scores; `output` says whose output they score ("combined" or a member).

    `members` holds each member's own scores when the version is an ensemble (else empty).
    """

    version: int
    output: str
    scores: Scores
    members: dict[str, Scores]

    def to_json(self) -> dict:
        return {"version": self.version, "output": self.output, "scores": self.scores.to_json(),
                "members": {name: s.to_json() for name, s in self.members.items()}}

    @classmethod
    def from_json(cls, body: dict) -> VersionResult:
        return cls(int(body["version"]), str(body["output"]), scores_from_json(body["scores"]),
                   {name: scores_from_json(s) for name, s in body["members"].items()})


@dataclass(frozen=True)
class Disagreement:
    """An item on which two versions answer differently: the truth and each answer, and for a
    table set the row's features as given (``inputs``), so that a person sees the row."""

    key: str
    truth: Truth
    a: Truth
    b: Truth
    inputs: dict[str, str] | None = None

    def to_json(self) -> dict:
        body = {"key": self.key, "truth": self.truth, "a": self.a, "b": self.b}
        return body if self.inputs is None else {**body, "inputs": dict(self.inputs)}

    @classmethod
    def from_json(cls, body: dict) -> Disagreement:
        return cls(body["key"], body["truth"], body["a"], body["b"], body.get("inputs"))


@dataclass(frozen=True)
class VersionPair:
    """Versions `a` and `b` and the items where they disagree (top-1 differs, or |a - b| > tolerance)."""

    a: int
    b: int
    disagreements: tuple[Disagreement, ...]

    def keys(self) -> set[str]:
        return {d.key for d in self.disagreements}

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "count": len(self.disagreements),
                "disagreements": [d.to_json() for d in self.disagreements]}

    @classmethod
    def from_json(cls, body: dict) -> VersionPair:
        return cls(int(body["a"]), int(body["b"]), tuple(Disagreement.from_json(d) for d in body["disagreements"]))


@dataclass(frozen=True)
class ItemResult:
    """One scored item: its truth, and per evaluated version (in order) the answer and its probability.

    `probability` is the top-1 probability for classification and None for regression.
    """

    key: str
    truth: Truth
    predicted: tuple[Truth, ...]
    probability: tuple[float | None, ...]

    def to_json(self) -> dict:
        return {"key": self.key, "truth": self.truth, "predicted": list(self.predicted),
                "probability": list(self.probability)}

    @classmethod
    def from_json(cls, body: dict) -> ItemResult:
        return cls(body["key"], body["truth"], tuple(body["predicted"]), tuple(body["probability"]))


@dataclass(frozen=True)
class Evaluation:
    """The whole result: which model and set, each version's scores, the pairs, every item.

    `bad_items` are the rows left out of every score (unreadable image, unknown label...):
    all versions are scored on the same items, so their scores compare.
    """

    model: str
    kind: OutputKind
    dataset: str
    versions: tuple[VersionResult, ...]
    pairs: tuple[VersionPair, ...]
    items: tuple[ItemResult, ...]
    bad_items: tuple[BadItem, ...]
    tolerance: float | None = None

    def version(self, version: int) -> VersionResult:
        """The result of one evaluated version; KeyError when it was not evaluated."""
        for result in self.versions:
            if result.version == version:
                return result
        raise KeyError(version)

    def pair(self, a: int, b: int) -> VersionPair:
        """The disagreements of two evaluated versions, in either order."""
        for pair in self.pairs:
            if {pair.a, pair.b} == {a, b}:
                return pair
        raise KeyError((a, b))

    def to_json(self) -> dict:
        return {
            "model": self.model, "kind": self.kind.value, "dataset": self.dataset, "n_items": len(self.items),
            "tolerance": self.tolerance,
            "versions": [v.to_json() for v in self.versions],
            "pairs": [p.to_json() for p in self.pairs],
            "bad_items": [b.to_json() for b in self.bad_items],
            "items": [i.to_json() for i in self.items],
        }

    @classmethod
    def from_json(cls, body: dict) -> Evaluation:
        """The result a ``to_json()`` wrote (an HTTP reply, a job's file): equal to the original."""
        return cls(
            body["model"], OutputKind(body["kind"]), body["dataset"],
            tuple(VersionResult.from_json(v) for v in body["versions"]),
            tuple(VersionPair.from_json(p) for p in body["pairs"]),
            tuple(ItemResult.from_json(i) for i in body["items"]),
            tuple(BadItem(b["key"], b["reason"]) for b in body["bad_items"]),
            body.get("tolerance"),
        )

    def cell(self, version: int, truth: str, predicted: str) -> list[ItemResult]:
        """The items of one confusion-matrix cell of a version: true ``truth``, answered ``predicted``."""
        index = [v.version for v in self.versions].index(version)
        return [item for item in self.items if item.truth == truth and item.predicted[index] == predicted]

    def to_csv(self) -> str:
        """Per-item predictions: file, truth, each version's answer and its probability (or
        residual), then a problem column that explains the rows left out."""
        classify = self.kind is OutputKind.CLASSIFICATION
        extra = "probability" if classify else "residual"
        header = ["file", "label" if classify else "target"]
        for v in self.versions:
            header += [f"v{v.version}", f"v{v.version}_{extra}"]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header + ["problem"])
        for item in self.items:
            row: list[str | float | None] = [item.key, item.truth]
            for predicted, probability in zip(item.predicted, item.probability):
                row += [predicted, probability if classify else cast(float, predicted) - cast(float, item.truth)]
            writer.writerow(row + [""])
        blank = [""] * (len(header) - 1)
        for bad in self.bad_items:
            writer.writerow([bad.key, *blank, bad.reason])
        return buffer.getvalue()

    def residual_plot(self) -> bytes:
        """PNG bytes: residual against prediction for every evaluated version (regression only)."""
        if self.kind is OutputKind.CLASSIFICATION:
            raise ValueError("a residual plot needs a regression evaluation")
        truth = [item.truth for item in self.items]
        series = {f"v{v.version}": [item.predicted[i] for item in self.items] for i, v in enumerate(self.versions)}
        return residual_plot(truth, series, title=f"{self.model}: residuals on {len(self.items)} items")
