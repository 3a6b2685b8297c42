"""From Grad-CAM maps to the typed explanations a reply carries, one per image and member.

The runtime computes the maps (``gradcam.py``, on the layer's grid); this module names
what was explained (the label or output name) and draws each map over the image as that
version sees it (``images.heatmap_overlay``), so that every front end, the dashboard
included, shows the same picture. It imports no TensorFlow: the maps arrive as arrays.
"""

from __future__ import annotations

from .images import heatmap_overlay, model_view
from .types import Explanation


def explanation_rows(method: str, maps: dict, images: list[bytes], input_spec: dict, output_spec: dict, *,
                     max_pixels: int) -> tuple[dict[str, Explanation], ...]:
    """Per image, ``{member: Explanation}`` from ``{member: gradcam.MemberMap}`` over the batch."""
    names = _output_names(output_spec)
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


def _output_names(output_spec: dict) -> list[str]:
    if output_spec.get("kind") == "classification":
        return [str(label) for label in output_spec["labels"]]
    return [str(name) for name in output_spec.get("names") or []]
