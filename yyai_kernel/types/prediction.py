"""Predictions and explanations: one answer of a version, labelled for people.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from yyai_kernel.errors import InvalidInputError
from yyai_kernel.types.jsonview import JsonView
from yyai_kernel.types.specs import InputKind, InputSpec, OutputSpec

COLD_START_HEADER = "X-Yyai-Cold-Start"  # seconds a reply waited for its version to load
PROBABILITY_DECIMALS = 6  # a reply's probabilities are rounded to this; labels equal after it tie


class ExplainMethod(StrEnum):
    """How yyai explains an answer (``?explain=``): each method fits one kind of input."""

    GRADCAM = "gradcam"  # where a convolutional model looked, as a heat map over the image
    INTEGRATED_GRADIENTS = "integrated_gradients"  # how much each feature of a table row moved the answer


def explain_method_for(spec: InputSpec) -> ExplainMethod | None:
    """The method that explains a model with this input: Grad-CAM for images, integrated gradients
    for tables (and several inputs); None for a bare tensor."""
    return {InputKind.IMAGE: ExplainMethod.GRADCAM, InputKind.TABLE: ExplainMethod.INTEGRATED_GRADIENTS,
            InputKind.SEVERAL: ExplainMethod.INTEGRATED_GRADIENTS}.get(spec.kind)


def check_explain(method: str | None) -> ExplainMethod | None:
    """An explanation method from a request (``?explain=``): None for none, else a known one."""
    if method is None or method == "":
        return None
    try:
        return ExplainMethod(method)
    except ValueError:
        known = ", ".join(m.value for m in ExplainMethod)
        raise InvalidInputError(f"Unknown explanation {method!r}; yyai explains with: {known}.",
                                field="explain") from None


@dataclass(frozen=True)
class Explanation(JsonView):
    """Why one member answered as it did for one row, or why it cannot say.

    Grad-CAM (an image): ``heatmap`` is on the explained layer's grid, in 0..1, and
    ``overlay_png`` draws it over the image as the model sees it. Integrated gradients (a
    table): ``attributions`` holds each feature's share of the change of the answer from the
    baseline row (``baseline``) to this row (``value``); None for a feature no gradient
    reaches (a category sent as an index). ``label`` is the class (or output) explained: the
    version's answer for that row.
    """

    method: ExplainMethod
    available: bool
    reason: str = ""
    layer: str | None = None
    label: str | None = None
    heatmap: np.ndarray | None = None
    overlay_png: bytes | None = None
    attributions: dict[str, float | None] | None = None
    value: float | None = None
    baseline: float | None = None

    def to_json(self) -> dict[str, Any]:
        if not self.available:
            return {"method": self.method.value, "available": False, "reason": self.reason}
        if self.attributions is not None:
            return {"method": self.method.value, "available": True, "label": self.label,
                    "attributions": {k: None if v is None else round(v, PROBABILITY_DECIMALS)
                                     for k, v in self.attributions.items()},
                    "value": self.value, "baseline": self.baseline}
        assert self.heatmap is not None and self.overlay_png is not None  # an available Grad-CAM has both
        return {"method": self.method.value, "available": True, "layer": self.layer, "label": self.label,
                "heatmap": np.round(self.heatmap.astype(float), 4).tolist(),
                "overlay_png": base64.b64encode(self.overlay_png).decode("ascii")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Explanation:
        method = ExplainMethod(data["method"])
        if not data.get("available"):
            return cls(method, False, data.get("reason", ""))
        if "attributions" in data:
            return cls(method, True, "", None, data.get("label"), attributions=dict(data["attributions"]),
                       value=data.get("value"), baseline=data.get("baseline"))
        return cls(method, True, "", data.get("layer"), data.get("label"),
                   np.asarray(data["heatmap"], dtype=np.float32), base64.b64decode(data["overlay_png"]))


@dataclass(frozen=True)
class Prediction(JsonView):
    """One answer: the version that gave it, each member's ``[B, K]`` output and the combined one.

    It owns how outputs read for people: labelled rows, the top label, the top k.
    ``filenames`` names the images of an image request (or a table request's rows), row by row, when known;
    ``explanations`` holds, row by row, each member's :class:`Explanation` when one was asked for.
    ``cold_start_s`` says the version was not loaded and how long the request waited for its
    load; replies carry it as a header (``X-Yyai-Cold-Start``), not in their body.
    """

    name: str
    version: int
    members: dict[str, np.ndarray]
    combined: np.ndarray | None
    output: OutputSpec
    filenames: tuple[str | None, ...] | None = None
    explanations: tuple[dict[str, Explanation], ...] | None = None  # per row: member -> Explanation
    cold_start_s: float | None = None  # how long it waited for its version to load (None: it was loaded)

    def __len__(self) -> int:
        return len(next(iter(self.members.values())))

    @property
    def classification(self) -> bool:
        return self.output.classification

    def best(self) -> np.ndarray:
        """The output that answers for the whole model: combined, else the first member's."""
        return self.combined if self.combined is not None else next(iter(self.members.values()))

    def label(self, row: np.ndarray) -> list[dict[str, Any]] | dict[str, float]:
        """One output row for people: labels by probability (highest first), or named values."""
        values = row.tolist()  # plain floats: indexing a numpy row per entry costs more than the row
        if self.classification:
            labels = self.output.labels
            if any(v != v for v in values):  # noqa: PLR0124 - NaN: NumPy's order puts it last
                order = np.argsort(-row, kind="stable").tolist()
            else:  # highest first; a stable sort keeps ties in label order
                order = sorted(range(len(values)), key=values.__getitem__, reverse=True)
            return [{"label": labels[j], "probability": round(values[j], PROBABILITY_DECIMALS)} for j in order]
        names = self.output.names or [f"y{j}" for j in range(len(values))]
        rounding = self.output.rounding
        return {n: round(v, rounding) for n, v in zip(names, values)}

    def top(self, i: int = 0) -> tuple[str, float] | None:
        """The best (label, probability) of row ``i``: from the combined output, or the only member."""
        k = self.top_k(i, 1)
        return k[0] if k else None

    def tied(self, i: int = 0) -> list[str]:
        """The labels that share row ``i``'s best probability as a reply shows it (rounded to
        :data:`PROBABILITY_DECIMALS`): one label, or several when they tie; empty when
        :meth:`top` is None. A five-way tie at 0.2 names no winner."""
        ranked = self.top_k(i, self.output.width)
        if not ranked:
            return []
        best = round(ranked[0][1], PROBABILITY_DECIMALS)
        return [label for label, p in ranked if round(p, PROBABILITY_DECIMALS) == best]

    def top_k(self, i: int = 0, k: int = 5) -> list[tuple[str, float]]:
        """The k best (label, probability) of row ``i``.

        Empty for regression, or for an ensemble without a combined output.
        """
        if not self.classification or (self.combined is None and len(self.members) != 1):
            return []
        row = self.best()[i]
        order = np.argsort(-row, kind="stable")[:k]
        labels = self.output.labels
        return [(labels[j], float(row[j])) for j in order]

    def rows(self) -> list[dict[str, Any]]:
        """Per input row, each member's output and the combined one, labelled for people."""
        return [
            {
                "members": {name: self.label(out[i]) for name, out in self.members.items()},
                "combined": None if self.combined is None else self.label(self.combined[i]),
            }
            for i in range(len(self))
        ]

    def to_json(self, *, raw: bool = False) -> dict[str, Any]:
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
    def from_json(cls, reply: dict[str, Any], output: OutputSpec | dict[str, Any]) -> Prediction:
        """A Prediction from a ``POST /predictions?raw=true`` reply and the version's output spec
        (its JSON, or the described version's :class:`OutputSpec`)."""
        if not isinstance(output, OutputSpec):
            output = OutputSpec.from_json(output)
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

