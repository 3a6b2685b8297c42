"""From the runtime's maps and attributions to the typed explanations a reply carries, one per row and member.

Images get Grad-CAM: the runtime computes the maps (``gradcam.py``, on the layer's grid);
this module names what was explained (the label or output name) and draws each map over
the image as that version sees it (``images.heatmap_overlay``), so that every front end, the
dashboard included, shows the same picture. Tables get integrated gradients
(``attributions.py``, per column); this module adds each feature's columns up into one
number per feature (a tensor among several inputs: one number for the whole tensor). Each
method fits one kind of input, and asking the other is a 400 that names the right one.
It imports no TensorFlow: the maps arrive as arrays. :class:`Explainer` is the data plane's
bounded step for ``?explain=``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TypeVar

import numpy as np

from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import InvalidInputError, PayloadTooLargeError, TooManyRequestsError
from yyai_kernel.registry.protocol import ModelRegistry, Target
from yyai_kernel.runtime.images import heatmap_overlay, model_view, preprocess
from yyai_kernel.runtime.membermap import Explained, MemberAttribution, MemberMap
from yyai_kernel.runtime.tabular import fit
from yyai_kernel.types import (
    Encoding,
    ExplainMethod,
    Explanation,
    Given,
    InputKind,
    InputSpec,
    OutputSpec,
    Prediction,
    explain_method_for,
)

_Kind = TypeVar("_Kind", MemberMap, MemberAttribution)


def check_method(method: ExplainMethod, spec: InputSpec) -> None:
    """Refuse a method that does not fit the input, naming the one that does (400, field ``explain``)."""
    fitting = explain_method_for(spec)
    if method is fitting:
        return
    takes = {InputKind.IMAGE: "images", InputKind.TABLE: "a table of features", InputKind.TENSOR: "a tensor",
             InputKind.SEVERAL: "several inputs"}[spec.kind]
    instead = (f"ask ?explain={fitting.value}" if fitting is not None else
               "explanations cover images (gradcam) and tables (integrated_gradients)")
    raise InvalidInputError(f"{method.value} cannot explain this model: it takes {takes}; {instead}.",
                            field="explain")


class Explainer:
    """Predict and explain every member's answer, in the calling thread and off the batcher.

    Explanations cost a gradient pass per member, so they are bounded: at most
    ``max_explain_images`` images (or table rows) a request (413 beyond) and ``max_concurrent_explains``
    requests at once (429 with Retry-After beyond, never a wait that holds a thread).
    """

    def __init__(self, registry: ModelRegistry, config: ServingConfig) -> None:
        self.registry = registry
        self.config = config
        self._running = threading.BoundedSemaphore(config.max_concurrent_explains)

    def submit(self, method: ExplainMethod, target: Target, images: list[bytes],
               filenames: list[str | None] | None) -> Future[Prediction]:
        """A Future that is already done, like ``DataPlane.submit_images`` without batching."""
        described = target.description
        check_method(method, described.input)
        self._check_rows(len(images), "images")
        pixels = self.config.max_image_pixels

        def run() -> Prediction:
            batch = np.stack([preprocess(data, described.input, max_pixels=pixels) for data in images])
            prediction, maps = self.registry.explain(target, batch)
            rows = explanation_rows(method, _each_a(MemberMap, maps), images, described.input, described.output,
                                    max_pixels=pixels)
            return _explained(prediction, rows, filenames)

        return self._bounded(run)

    def submit_given(self, method: ExplainMethod, target: Target, given: Given) -> Future[Prediction]:
        """The same for a table's records (``DataPlane.submit_inputs``): each feature's attribution."""
        described = target.description
        check_method(method, described.input)
        batch = fit(given, described.input)
        self._check_rows(len(batch), "rows")

        def run() -> Prediction:
            prediction, maps = self.registry.explain(target, batch)
            rows = attribution_rows(method, _each_a(MemberAttribution, maps), described.input, described.output,
                                    len(batch))
            return _explained(prediction, rows, None)

        return self._bounded(run)

    def _check_rows(self, count: int, what: str) -> None:
        limit = self.config.max_explain_images
        if count > limit:
            raise PayloadTooLargeError(
                f"Explanations are expensive: at most {limit} {what} per explained request; this one holds "
                f"{count}. Send fewer, or predict without ?explain.")

    def _bounded(self, run: Callable[[], Prediction]) -> Future[Prediction]:
        """``run()`` within the concurrency bound, as a done Future (429 when the bound is reached)."""
        if not self._running.acquire(blocking=False):
            error = TooManyRequestsError(f"{self.config.max_concurrent_explains} explanations are running "
                                         "already; retry in a moment.")
            error.retry_after = 1
            raise error
        try:
            prediction = run()
        finally:
            self._running.release()
        done: Future[Prediction] = Future()
        done.set_result(prediction)
        return done


def _each_a(kind: type[_Kind], explained: Explained) -> dict[str, _Kind]:
    """The runtime's explanations, each a ``kind``: the method fits the input (:func:`check_method`),
    and the runtime explains that input with that method (``ArchiveRuntime.explain``)."""
    found = {member: each for member, each in explained.items() if isinstance(each, kind)}
    if len(found) != len(explained):
        raise TypeError(f"The runtime explained with something other than {kind.__name__}")
    return found


def _explained(prediction: Prediction, rows: tuple[dict[str, Explanation], ...],
               filenames: list[str | None] | None) -> Prediction:
    return Prediction(prediction.name, prediction.version, prediction.members, prediction.combined,
                      prediction.output, tuple(filenames) if filenames else None, rows)


def explanation_rows(method: ExplainMethod, maps: Mapping[str, MemberMap], images: list[bytes], input_spec: InputSpec,
                     output_spec: OutputSpec, *, max_pixels: int) -> tuple[dict[str, Explanation], ...]:
    """Per image, ``{member: Explanation}`` from ``{member: membermap.MemberMap}`` over the batch."""
    names = output_spec.columns
    rows = []
    for i, data in enumerate(images):
        view = model_view(data, input_spec, max_pixels=max_pixels)
        row = {}
        for member, cam in maps.items():
            if not cam.available:
                row[member] = Explanation(method, False, cam.reason, cam.layer)
                continue
            assert cam.heat is not None and cam.target is not None  # available: GradCam sets both together
            target = int(cam.target[i])
            label = names[target] if target < len(names) else f"y{target}"
            row[member] = Explanation(method, True, "", cam.layer, label, cam.heat[i],
                                      heatmap_overlay(view, cam.heat[i]))
        rows.append(row)
    return tuple(rows)


def attribution_rows(method: ExplainMethod, maps: Mapping[str, MemberAttribution], input_spec: InputSpec,
                     output_spec: OutputSpec, count: int) -> tuple[dict[str, Explanation], ...]:
    """Per row (``count`` of them), ``{member: Explanation}`` from ``{member: membermap.MemberAttribution}``:
    one attribution per feature (its columns added up), None where no gradient reaches."""
    names = output_spec.columns
    groups = _groups(input_spec)
    rows: list[dict[str, Explanation]] = []
    for i in range(count):
        row = {}
        for member, found in maps.items():
            if not found.available:
                row[member] = Explanation(method, False, found.reason)
                continue
            # available: IntegratedGradients sets the four arrays together
            assert found.columns is not None and found.target is not None
            assert found.value is not None and found.baseline is not None
            target = int(found.target[i])
            columns = found.columns[i]
            shares: dict[str, float | None] = {}
            for key, start, stop, reachable in groups:
                total = float(np.sum(columns[start:stop]))
                shares[key] = total if reachable and math.isfinite(total) else None
            row[member] = Explanation(method, True, "", None, names[target] if target < len(names) else f"y{target}",
                                      attributions=shares, value=round(float(found.value[i]), 6),
                                      baseline=round(float(found.baseline[i]), 6))
        rows.append(row)
    return tuple(rows)


def _groups(spec: InputSpec) -> list[tuple[str, int, int, bool]]:
    """(record key, first column, stop, whether a gradient reaches it) for each feature and tensor input."""
    groups = []
    for part, start, stop in spec.slices():
        if part.table is None:
            groups.append((part.name, start, stop, True))
            continue
        for feature, first, end in part.table.columns():
            index = feature.categorical_kind and feature.encoding is Encoding.INDEX
            groups.append((feature.name, start + first, start + end, not index))
    return groups
