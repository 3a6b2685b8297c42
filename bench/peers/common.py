"""Helpers every peer server shares: load the bench's .keras models, trace them, speak v2 JSON.

This module runs inside each peer's own venv (numpy, TensorFlow and Keras only), so the
peers differ in the server around the model and nothing else: every peer except the naive
Flask baseline calls the same kind of traced function that yyai calls (a ``tf.function``
with a fixed input signature), and every peer parses the same v2 JSON request body.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

import numpy as np


def model_files(models_dir: str | Path) -> dict[str, Path]:
    """{model name: .keras path} for every ``<name>.keras`` in the folder."""
    return {p.stem: p for p in sorted(Path(models_dir).glob("*.keras"))}


def load_keras(path: str | Path):
    """The Keras model (safe mode, not compiled)."""
    import keras

    return keras.saving.load_model(str(path), compile=False, safe_mode=True)


class Traced:
    """One model behind a ``tf.function`` traced once for ``[None, *input_shape]`` float32."""

    def __init__(self, path: str | Path):
        import tensorflow as tf

        self.model = load_keras(path)
        self.input_shape = tuple(int(d) for d in self.model.inputs[0].shape[1:])
        spec = tf.TensorSpec([None, *self.input_shape], tf.float32)
        model = self.model
        self.fn = tf.function(lambda x: model(x, training=False), input_signature=[spec], reduce_retracing=True)
        self(np.zeros((1, *self.input_shape), np.float32))  # trace + warm up

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.fn(np.asarray(x, np.float32)).numpy()


def decode_v2(body: bytes | str | dict) -> np.ndarray:
    """The first input tensor of a v2 JSON inference request, as float32 of its declared shape."""
    req = body if isinstance(body, dict) else json.loads(body)
    first = req["inputs"][0]
    return np.asarray(first["data"], dtype=np.float32).reshape(first["shape"])


def encode_v2(model: str, out: np.ndarray, *, name: str = "output") -> bytes:
    """A v2 JSON inference response with one FP32 output."""
    out = np.asarray(out, np.float32)
    return json.dumps({
        "model_name": model,
        "outputs": [{"name": name, "datatype": "FP32", "shape": list(out.shape), "data": out.ravel().tolist()}],
    }).encode()
