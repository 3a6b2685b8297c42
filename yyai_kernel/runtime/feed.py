"""How a runtime's one input array reaches its Keras models.

The serving function (``runtime.py``) and the explainers (``attributions.py``) take one array
``[batch, *input.shape]`` for any input; for a model with several inputs that is the packed
row of them all (``InputSpec.slices``). :func:`model_feed` turns it into what the models are
called with, inside a traced graph. TensorFlow is imported when a feed is made, never at
import time here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from yyai_kernel.types.specs import InputKind, InputSpec

if TYPE_CHECKING:
    import tensorflow as tf


def model_feed(spec: InputSpec) -> Callable[[tf.Tensor], tf.Tensor | dict[str, tf.Tensor]]:
    """``x -> what the models are called with``: the batch itself for one input; for several, a dict
    of each named input, cut from the packed row, reshaped and cast (TensorFlow ops, traceable)."""
    import tensorflow as tf

    if spec.kind is not InputKind.SEVERAL:
        return lambda x: x
    spans = spec.slices()

    def feed(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {part.name: tf.cast(tf.reshape(x[:, start:stop], [-1, *part.shape]), tf.as_dtype(part.dtype))
                for part, start, stop in spans}

    return feed
