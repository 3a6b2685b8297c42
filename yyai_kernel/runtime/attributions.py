"""Integrated gradients: how much each column of a table row moved a member's answer.

Why integrated gradients (Sundararajan et al., 2017) and not gradient x input: gradient x
input multiplies each value by the local slope of the answer, which is exact only for a
linear model; once a softmax saturates, the slope is near zero and every feature seems to
count for nothing. Integrated gradients average the gradient along the straight path from
a baseline row to the row itself, so their sum is the whole change of the answer between
the two (completeness): a bar reads as "this much of the probability came from this
feature". The cost is ``STEPS + 1`` gradient rows per row, which for a table model (a few
dense layers over tens of columns) is one small batched call.

The baseline is the all-zero model input. For a feature normalised with ``(value - mean) /
std`` that is its training mean, so the explanation answers "why this answer rather than
the answer for an average row"; a one-hot feature's baseline is no category at all; a raw
numeric feature's is 0. Each member's answer is its output as served (the probability of
the explained class, or the regression output), and the reply also carries that answer at
the baseline and at the row, so that anyone can check that the attributions add up.

Columns that no gradient can reach get no attribution: an input part of an integer dtype
(category indices into an ``Embedding``, say) is cast to integers before the model sees it.
A whole member without a float input is "not available", with the reason.

Each member gets a ``tf.function`` with a fixed input signature, traced on first use beside
(never inside) the runtime's serving function. Imported only by
:class:`~yyai_kernel.runtime.runtime.ArchiveRuntime` when an explanation is asked for, so it may
import TensorFlow at the top. Built once per runtime under the runtime's lock; the traced
functions are then safe to call from any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from yyai_kernel.runtime.feed import model_feed
from yyai_kernel.runtime.membermap import MemberAttribution
from yyai_kernel.types.specs import InputSpec

STEPS = 32  # the path integral's trapezoid steps: far below 1% of the change for small dense models
NOT_FLOAT = "not available: the model's input is {dtype}; gradients need a float input"


class IntegratedGradients:
    """The integrated-gradients functions of one archive's members (``{name: keras model}``) over ``spec``."""

    def __init__(self, models: dict[str, Any], spec: InputSpec):
        self.spec = spec
        dtype = tf.as_dtype(spec.dtype)
        self._reason = "" if dtype.is_floating else NOT_FLOAT.format(dtype=spec.dtype)
        self._blind = _unreachable(spec)
        signature = [tf.TensorSpec([None, spec.size], dtype), tf.TensorSpec([None], tf.int32)]
        feed = model_feed(spec)
        self._functions = {name: _traced(model, feed, signature) for name, model in models.items()} \
            if dtype.is_floating else {}

    def __call__(self, batch: np.ndarray, targets: dict[str, np.ndarray]) -> dict[str, MemberAttribution]:
        """Each member's attributions for ``batch``, explaining output ``targets[member][i]`` for row i."""
        rows = batch.reshape(len(batch), -1)
        found: dict[str, MemberAttribution] = {}
        for name in targets:
            function = self._functions.get(name)
            if function is None:
                found[name] = MemberAttribution(reason=self._reason)
                continue
            target = targets[name].astype(np.int32)
            columns, value, baseline = (t.numpy().astype(np.float64) for t in function(rows, target))
            columns[:, self._blind] = np.nan
            found[name] = MemberAttribution(columns, target, value, baseline)
        return found


def _unreachable(spec: InputSpec) -> np.ndarray:
    """The packed columns of integer parts, which the model receives cast to integers."""
    blind = np.zeros(spec.size, dtype=bool)
    for part, start, stop in spec.slices():
        if not tf.as_dtype(part.dtype).is_floating:
            blind[start:stop] = True
    return blind


def _traced(model: Any, feed: Callable[[tf.Tensor], Any],
            signature: list[tf.TensorSpec]) -> Callable[[np.ndarray, np.ndarray], tuple[tf.Tensor, ...]]:
    """``(rows [B, W], target [B]) -> (attributions [B, W], answer at the row [B], at the baseline [B])``."""

    def attribute(x: tf.Tensor, target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        rows, width = tf.shape(x)[0], tf.shape(x)[1]
        alphas = tf.cast(tf.linspace(0.0, 1.0, STEPS + 1), x.dtype)
        path = tf.reshape(alphas[:, None, None] * x[None], [-1, width])  # baseline 0: alpha * x
        with tf.GradientTape() as tape:
            tape.watch(path)
            y = tf.cast(model(feed(path), training=False), tf.float32)
            y = tf.reshape(y, [STEPS + 1, rows, -1])
            answer = tf.reduce_sum(y * tf.one_hot(target, tf.shape(y)[2])[None], axis=2)  # [S+1, B]
            total = tf.reduce_sum(answer)
        grads = tape.gradient(total, path)
        grads = tf.zeros_like(path) if grads is None else grads
        grads = tf.cast(tf.reshape(grads, [STEPS + 1, rows, width]), tf.float32)
        average = tf.reduce_mean((grads[:-1] + grads[1:]) / 2.0, axis=0)  # the trapezoid rule
        return average * tf.cast(x, tf.float32), answer[-1], answer[0]

    return tf.function(attribute, input_signature=signature)  # type: ignore[no-any-return]
