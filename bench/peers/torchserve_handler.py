"""TorchServe peer: a custom handler that calls the traced Keras model (no torch model at all).

TorchServe batches up to 32 requests with a 2 ms delay and hands them over as a list;
each request body is the v2 JSON body every peer gets (TorchServe has already parsed it
into a dict when the Content-Type is JSON). ``common.py`` and the ``.keras`` file travel
inside the .mar.
"""

from __future__ import annotations

import glob
import os

import numpy as np
from common import Traced, decode_v2, encode_v2

_traced = None
_name = None


def handle(data, context):
    """TorchServe's module-level entry point: initialise once, then one reply per request."""
    global _traced, _name  # noqa: PLW0603 - TorchServe calls a module-level function
    if _traced is None:
        model_dir = context.system_properties.get("model_dir")
        _traced = Traced(glob.glob(os.path.join(model_dir, "*.keras"))[0])
        _name = context.manifest["model"]["modelName"]
    if data is None:
        return None
    xs = []
    for row in data:
        body = row.get("body") if row.get("body") is not None else row.get("data")
        xs.append(decode_v2(body if isinstance(body, dict) else bytes(body)))
    out = _traced(np.concatenate(xs))
    bounds = np.cumsum([len(x) for x in xs])[:-1]
    return [encode_v2(_name, part).decode() for part in np.split(out, bounds)]
