"""MLServer peer: a custom ``MLModel`` runtime that calls the traced Keras model.

compare.py writes one ``model-settings.json`` per model (``implementation``
``mlserver_runtime.KerasRuntime``, ``parameters.uri`` the .keras path, adaptive batching
``max_batch_size`` 32 / ``max_batch_time`` 0.002) and a ``settings.json`` with
``parallel_workers: 0`` and every address on 127.0.0.1, then runs ``mlserver start DIR``
with this folder on PYTHONPATH.
"""

from __future__ import annotations

from common import Traced
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class KerasRuntime(MLModel):
    """Loads the .keras file named by ``parameters.uri``; predicts on the first input tensor."""

    async def load(self) -> bool:
        self.traced = Traced(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        out = self.traced(x)
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("output", out)])
