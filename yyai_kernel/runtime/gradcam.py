"""Grad-CAM heat maps for the members of one archive, following the Keras Grad-CAM recipe.

The recipe (keras.io/examples/vision/grad_cam): a model from the input to the last
convolutional layer's output and the predictions; a ``tf.GradientTape`` over the score of
the class being explained; the gradients averaged over the layer's grid give one weight
per channel; the channels weighted and summed, with negatives cut and the peak scaled to
1, are the heat map. Two changes make it fit a server:

* It runs batched. Each image's gradients are pooled over its own grid (the recipe pools
  over the batch too, because it explains one image), so one call explains every image.
* It never mutates the served model. The recipe turns the last layer's softmax off to
  read logits; here, when the last layer is a ``Dense`` with a softmax, its logits are
  computed from that layer's input and weights instead (softmax gradients vanish once a
  probability is near 1). Otherwise the model's output is the score.

Each convolutional member gets its own ``tf.function`` with a fixed input signature,
traced on first use, beside (never inside) the runtime's serving function: the prediction
path is untouched. A member without a 2-D convolutional layer, or one whose layers cannot
be reached (a subclassed model), gets a reason instead of a function. Imported only by
:class:`~yyai_kernel.runtime.runtime.ArchiveRuntime` when an explanation is asked for, so it may
import TensorFlow at the top. Built once per runtime under the runtime's lock; the traced
functions are then safe to call from any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import keras
import numpy as np
import tensorflow as tf

from yyai_kernel.runtime.membermap import MemberMap

# x -> (the explained layer's output, the scores)
_Forward = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]

NO_CONV = "not available: this member has no 2-D convolutional layer (Grad-CAM needs one)"


@dataclass(frozen=True)
class _Member:
    """A member's traced Grad-CAM function and its layer, or why it has none."""

    layer: str | None
    function: Callable[[np.ndarray, np.ndarray], tf.Tensor] | None
    reason: str = ""


class GradCam:
    """The Grad-CAM functions of one archive's members (``{name: keras model}``)."""

    def __init__(self, models: dict[str, Any], input_shape: tuple[int, ...], dtype: np.dtype[Any]):
        signature = [tf.TensorSpec([None, *input_shape], tf.as_dtype(dtype)), tf.TensorSpec([None], tf.int32)]
        self._members = {name: _member(model, signature) for name, model in models.items()}

    def __call__(self, batch: np.ndarray, targets: dict[str, np.ndarray]) -> dict[str, MemberMap]:
        """Each member's maps for ``batch``, explaining output ``targets[member][i]`` for row i."""
        maps: dict[str, MemberMap] = {}
        for name, member in self._members.items():
            if member.function is None:
                maps[name] = MemberMap(member.layer, reason=member.reason)
                continue
            target = targets[name].astype(np.int32)
            heat = member.function(batch, target).numpy()
            maps[name] = MemberMap(member.layer, heat=heat, target=target)
        return maps


def last_conv_layer(model: keras.Model) -> keras.layers.Layer | None:
    """The last layer of ``model`` that is a 2-D convolution (its output is ``[B, h, w, c]``), or None."""
    for layer in reversed(getattr(model, "layers", [])):
        if "conv" not in type(layer).__name__.lower():
            continue
        try:
            rank = len(layer.output.shape)
        except (AttributeError, ValueError):  # a layer never called, or called more than once
            continue
        if rank == 4:
            return layer
    return None


def _member(model: keras.Model, signature: list[tf.TensorSpec]) -> _Member:
    """The traced function of one member, or the reason it cannot have one."""
    layer = last_conv_layer(model)
    if layer is None:
        return _Member(None, None, NO_CONV)
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or len(inputs) != 1 or not outputs or len(outputs) != 1:
        return _Member(layer.name, None, "not available: Grad-CAM here needs a model with one input and one output")
    try:
        forward = _forward(model, layer)
    except Exception as error:  # noqa: BLE001 - a graph Keras cannot cut at that layer
        return _Member(layer.name, None, f"not available: {type(error).__name__}: {error}")
    return _Member(layer.name, _traced(forward, getattr(layer, "data_format", "channels_last"), signature))


def _forward(model: keras.Model, layer: keras.layers.Layer) -> _Forward:
    """``x -> (the layer's output, the scores)``: logits when the head is a softmax ``Dense``.

    A Sequential model is walked layer by layer: its layers' symbolic outputs may belong
    to an earlier build of the model than its ``inputs`` (Keras rebuilds a Sequential's
    graph), so a model cut at ``layer.output`` would compute the two apart and the
    gradient between them would be None. A functional model is cut as the recipe does.
    """
    head = model.layers[-1]
    logits = isinstance(head, keras.layers.Dense) and getattr(head.activation, "__name__", "") == "softmax"

    def score(h: tf.Tensor) -> tf.Tensor:
        if not logits:
            return h
        h = tf.matmul(h, head.kernel)
        return h + head.bias if head.use_bias else h

    if isinstance(model, keras.Sequential):
        body = model.layers[:-1] if logits else model.layers

        def walk(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            h = features = x
            for each in body:
                h = each(h, training=False)
                if each is layer:
                    features = h
            return features, score(h)

        return walk
    cut = keras.Model(model.inputs, [layer.output, head.input if logits else model.outputs[0]])
    return lambda x: (lambda f, h: (f, score(h)))(*cut(x, training=False))


def _traced(forward: _Forward, data_format: str,
            signature: list[tf.TensorSpec]) -> Callable[[np.ndarray, np.ndarray], tf.Tensor]:
    """The traced recipe for one member: (x [B, ...], target [B]) -> heat maps [B, h, w]."""

    def cam(x: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)  # records the graph even when the weights are not trainable
            features, scores = forward(x)
            scores = tf.reshape(tf.cast(scores, tf.float32), [tf.shape(x)[0], -1])
            chosen = tf.gather(scores, target, batch_dims=1)
        grads = tape.gradient(chosen, features)  # rows are independent: each row's own gradient
        features, grads = tf.cast(features, tf.float32), tf.cast(grads, tf.float32)
        if data_format == "channels_first":
            features, grads = tf.transpose(features, [0, 2, 3, 1]), tf.transpose(grads, [0, 2, 3, 1])
        weights = tf.reduce_mean(grads, axis=[1, 2])  # one weight per channel, per image
        heat = tf.nn.relu(tf.einsum("bhwc,bc->bhw", features, weights))
        return tf.math.divide_no_nan(heat, tf.reduce_max(heat, axis=[1, 2], keepdims=True))

    return cast(Callable[[np.ndarray, np.ndarray], tf.Tensor], tf.function(cam, input_signature=signature))
