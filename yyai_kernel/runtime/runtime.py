"""ArchiveRuntime: one loaded archive, isolated from every other.

This is the TensorFlow 2 form of "one graph/session pair per model". A runtime owns its
Keras models and one ``tf.function`` traced over the whole ensemble with a fixed input
signature (the batch dimension free). That function has its own graph, so loading,
warming up or dropping one runtime never disturbs another. Nothing here calls
Keras's global session reset or its ``predict`` method: the first would wipe every other
model's state, the second costs ~40 ms a call against ~0.5 ms for the traced call.

The function takes one array ``[batch, *input.shape]``, whatever the input's kind: an
image's or a tensor's numbers, a table's columns, or, for a model with several inputs, the
packed row of all of them (``InputSpec.slices``), which :func:`model_feed` cuts, reshapes and
casts into the model's named inputs inside the traced graph. So batching, the model host
and every front end move one array, and only this module knows a model's inputs.

A runtime is immutable once built. Hot reload builds a new one and swaps the reference
(see registry.py); in-flight calls keep the old one alive until they return. The one
thing built later is the explainer (Grad-CAM for images, ``gradcam.py``; integrated
gradients for tables, ``attributions.py``), traced beside the serving function the first
time someone asks for an explanation, under ``_explain_lock``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from yyai_kernel.archive import Limits, Manifest, open_archive
from yyai_kernel.errors import InvalidInputError, ModelLoadError
from yyai_kernel.runtime.feed import model_feed
from yyai_kernel.types.specs import Combine, InputKind

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from yyai_kernel.runtime.attributions import IntegratedGradients
    from yyai_kernel.runtime.gradcam import GradCam
    from yyai_kernel.runtime.membermap import Explained


@dataclass(frozen=True)
class RuntimeOutput:
    """The outputs of one call: each member's ``[B, K]`` array, and the combined one (or None)."""

    members: dict[str, np.ndarray]
    combined: np.ndarray | None


def warmup_batch_sizes(max_batch_size: int) -> list[int]:
    """Batch sizes worth warming: 1, powers of two, and the maximum itself."""
    sizes, size = [1], 2
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    if max_batch_size > 1:
        sizes.append(max_batch_size)
    return sizes


class ArchiveRuntime:
    """Every member model of one archive behind one traced, thread-safe function.

    Build it with :meth:`load`. Call it with a ``[B, *input.shape]`` array that
    :meth:`validate` accepted; it returns a :class:`RuntimeOutput`.
    """

    def __init__(self, manifest: Manifest, models: list[keras.Model], *, sha256: str | None = None):
        import tensorflow as tf  # imported here so that lower layers stay TensorFlow-free

        self.manifest = manifest
        self.sha256 = sha256
        self.member_names = [member.name for member in manifest.members]
        self.input_shape = manifest.input.shape
        self.dtype = np.dtype(manifest.input.dtype)
        self.load_time_s = 0.0
        self.warmup_time_s = 0.0
        self._models = models
        combine_mean = manifest.combine is Combine.MEAN and len(models) > 1
        signature = [tf.TensorSpec([None, *self.input_shape], tf.as_dtype(self.dtype))]
        feed = model_feed(manifest.input)

        def serve(x: tf.Tensor) -> list[tf.Tensor]:
            outputs = []
            fed = feed(x)
            for model in models:
                y = tf.cast(model(fed, training=False), tf.float32)
                outputs.append(tf.reshape(y, [tf.shape(y)[0], -1]))
            if combine_mean:
                outputs.append(tf.reduce_mean(tf.stack(outputs), axis=0))
            return outputs

        self._serve: Callable[[np.ndarray], list[tf.Tensor]] = tf.function(serve, input_signature=signature)
        self._combined = combine_mean or len(models) == 1
        self._explainer: GradCam | IntegratedGradients | None = None  # built on the first explanation
        self._explain_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        trusted: bool = False,
        warmup_sizes: list[int] | None = None,
        limits: Limits | None = None,
        sha256: str | None = None,
    ) -> ArchiveRuntime:
        """Open, verify and load an archive, then trace and warm its function.

        Raises the archive's typed errors (ArchiveError subclasses) when the archive is
        unsafe, inconsistent or holds something that is not a loadable Keras model.
        """
        from yyai_kernel.archive.kerasload import load_member

        started = time.perf_counter()
        with open_archive(path, limits) as opened:
            models = []
            for member in opened.manifest.members:
                try:
                    models.append(load_member(opened.member_path(member), trusted=trusted,
                                              model_name=opened.manifest.name))
                except ModelLoadError:
                    raise
                except Exception as error:  # noqa: BLE001 - a loader bug must still read as a load failure
                    raise ModelLoadError(f"Member {member.name!r} failed to load: {error}") from None
            runtime = cls(opened.manifest, models, sha256=sha256)
        runtime.load_time_s = time.perf_counter() - started
        runtime.warmup(warmup_sizes or [1])
        return runtime

    def warmup(self, batch_sizes: list[int]) -> None:
        """Trace the function and run it once on zero batches of each size."""
        started = time.perf_counter()
        for size in sorted(set(batch_sizes)):
            self(np.zeros((size, *self.input_shape), dtype=self.dtype))
        self.warmup_time_s = time.perf_counter() - started

    def validate(self, inputs: object, *, finite: bool = False) -> np.ndarray:
        """Check and cast a request's input to ``[B, *input.shape]`` of the model dtype.

        ``finite=True`` says the caller checked the values already (the v2 codec, which
        checks after its cast), so they are not scanned again. Raises InvalidInputError with a
        message that names the expected shape.
        """
        try:
            array = np.asarray(inputs)
        except Exception:  # noqa: BLE001 - whatever numpy refuses is bad input
            raise InvalidInputError("The input is not a numeric array.") from None
        if array.dtype.kind not in "biuf":
            raise InvalidInputError(f"The input must be numeric, not {array.dtype}.")
        if array.shape[1:] != self.input_shape or array.ndim != len(self.input_shape) + 1:
            expected = ", ".join(str(d) for d in self.input_shape)
            raise InvalidInputError(
                f"The input has shape {list(array.shape)}; expected [batch, {expected}]."
            )
        if array.shape[0] == 0:
            raise InvalidInputError("The input batch is empty.")
        if not finite and array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInputError("The input holds NaN or infinite values.")
        return array.astype(self.dtype, copy=False)

    def __call__(self, batch: np.ndarray) -> RuntimeOutput:
        """Run the traced ensemble on a validated batch."""
        outputs = [tensor.numpy() for tensor in self._serve(batch)]
        members = dict(zip(self.member_names, outputs))
        combined = outputs[-1] if self._combined else None
        return RuntimeOutput(members=members, combined=combined)

    def explain(self, batch: np.ndarray) -> tuple[RuntimeOutput, Explained]:
        """Run a validated batch, then explain each member's answer: (output, {member: explanation}).

        An image input gets each member's Grad-CAM (``gradcam.MemberMap``), a table (or several
        inputs) each member's integrated gradients per column (``membermap.MemberAttribution``).
        The output explained is the version's answer: for classification, each row's top
        class of the combined output (of the member itself when there is none); for
        regression, the first output. It runs in the calling thread, off the batcher.
        """
        output = self(batch)
        with self._explain_lock:
            if self._explainer is None:
                members = dict(zip(self.member_names, self._models))
                if self.manifest.input.kind is InputKind.IMAGE:
                    from yyai_kernel.runtime.gradcam import GradCam

                    self._explainer = GradCam(members, self.input_shape, self.dtype)
                else:
                    from yyai_kernel.runtime.attributions import IntegratedGradients

                    self._explainer = IntegratedGradients(members, self.manifest.input)
        return output, self._explainer(batch, self._targets(output))

    def _targets(self, output: RuntimeOutput) -> dict[str, np.ndarray]:
        """The output index each member explains, row by row."""
        rows = len(next(iter(output.members.values())))
        if not self.manifest.output.classification:
            return {member: np.zeros(rows, np.int32) for member in output.members}
        if output.combined is not None:
            top = np.argmax(output.combined, axis=1)
            return dict.fromkeys(output.members, top)
        return {member: np.argmax(array, axis=1) for member, array in output.members.items()}

    def split(self, output: RuntimeOutput, bounds: list[tuple[int, int]]) -> list[RuntimeOutput]:
        """Cut one batched output into per-request outputs by row ranges."""
        return [
            RuntimeOutput(
                members={name: array[start:stop] for name, array in output.members.items()},
                combined=None if output.combined is None else output.combined[start:stop],
            )
            for start, stop in bounds
        ]
