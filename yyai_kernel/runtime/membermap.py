"""MemberMap: one member's Grad-CAM maps, as a value that crosses processes without TensorFlow.

``gradcam.py`` computes it (and imports TensorFlow); the data plane turns it into the typed
explanations a reply carries (``plane/explanations.py``). Under ``yyai serve --workers N``
it travels from the model host to a front end, which must be able to read it without
importing TensorFlow, so it lives here, beside nothing that does.
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
