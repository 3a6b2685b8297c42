"""From Grad-CAM maps to the typed explanations a reply carries, one per image and member.

The runtime computes the maps (``gradcam.py``, on the layer's grid); this module names
what was explained (the label or output name) and draws each map over the image as that
version sees it (``images.heatmap_overlay``), so that every front end, the dashboard
included, shows the same picture. It imports no TensorFlow: the maps arrive as arrays.
:class:`Explainer` is the data plane's bounded step for ``?explain=``.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np

from yyai_kernel.errors import PayloadTooLargeError, TooManyRequestsError
from yyai_kernel.registry.protocol import Target
from yyai_kernel.runtime.images import heatmap_overlay, model_view, preprocess
from yyai_kernel.types import (
    ExplainMethod,
    Explanation,
    InputSpec,
    OutputSpec,
    Prediction,
)


class Explainer:
    """Predict and explain every member's answer, in the calling thread and off the batcher.

    Explanations cost a gradient pass per member, so they are bounded: at most
    ``max_explain_images`` images a request (413 beyond) and ``max_concurrent_explains``
    requests at once (429 with Retry-After beyond, never a wait that holds a thread).
    """

    def __init__(self, registry, config):
        self.registry = registry  # anything with explain(target, batch) -> (Prediction, maps)
        self.config = config
        self._running = threading.BoundedSemaphore(config.max_concurrent_explains)

    def submit(self, method: ExplainMethod, target: Target, images: list[bytes],
               filenames: list[str | None] | None) -> Future:
        """A Future that is already done, like ``DataPlane.submit_images`` without batching."""
        limit = self.config.max_explain_images
        if len(images) > limit:
            raise PayloadTooLargeError(
                f"Explanations are expensive: at most {limit} images per explained request; this one holds "
                f"{len(images)}. Send fewer, or predict without ?explain.")
        if not self._running.acquire(blocking=False):
            error = TooManyRequestsError(f"{self.config.max_concurrent_explains} explanations are running "
                                         "already; retry in a moment.")
            error.retry_after = 1
            raise error
        described = target.description
        try:
            pixels = self.config.max_image_pixels
            batch = np.stack([preprocess(data, described.input, max_pixels=pixels) for data in images])
            prediction, maps = self.registry.explain(target, batch)
            rows = explanation_rows(method, maps, images, described.input, described.output, max_pixels=pixels)
        finally:
            self._running.release()
        done: Future = Future()
        done.set_result(Prediction(prediction.name, prediction.version, prediction.members, prediction.combined,
                                   prediction.output, tuple(filenames) if filenames else None, rows))
        return done


def explanation_rows(method: ExplainMethod, maps: dict, images: list[bytes], input_spec: InputSpec,
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
            target = int(cam.target[i])
            label = names[target] if target < len(names) else f"y{target}"
            row[member] = Explanation(method, True, "", cam.layer, label, cam.heat[i],
                                      heatmap_overlay(view, cam.heat[i]))
        rows.append(row)
    return tuple(rows)
