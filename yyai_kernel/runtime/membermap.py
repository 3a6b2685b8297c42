"""MemberMap and MemberAttribution: one member's explanation, as values that cross processes
without TensorFlow.

``gradcam.py`` computes the maps and ``attributions.py`` the attributions (both import
TensorFlow); the data plane turns them into the typed explanations a reply carries
(``plane/explanations.py``). Under ``yyai serve --workers N`` they travel from the model host
to a front end, which must be able to read them without importing TensorFlow (unpickling a
value imports its module), so they live here, beside nothing that does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MemberMap:
    """One member's Grad-CAM over a batch, or the reason it has none.

    ``heat`` is ``[B, h, w]`` on the explained layer's grid, each map in 0..1; ``target``
    is the output index explained for each row.
    """

    layer: str | None
    heat: np.ndarray | None = None
    target: np.ndarray | None = None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.heat is not None


@dataclass(frozen=True)
class MemberAttribution:
    """One member's integrated gradients over a batch, or the reason it has none.

    ``columns`` is ``[B, width]``: each packed column's share of the change of the answer
    from the baseline (``baseline``, ``[B]``) to the row (``value``, ``[B]``); NaN for columns
    that no gradient reaches. ``target`` is the output index explained for each row.
    """

    columns: np.ndarray | None = None
    target: np.ndarray | None = None
    value: np.ndarray | None = None
    baseline: np.ndarray | None = None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.columns is not None


# what explaining a batch gives, per member: Grad-CAM maps (images) or integrated gradients (tables)
Explained = dict[str, MemberMap] | dict[str, MemberAttribution]
