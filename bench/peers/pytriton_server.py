"""PyTriton peer: the real Triton server (Python backend) with the dynamic batcher, on the CPU.

Each model is bound with ``max_batch_size`` 32 and ``max_queue_delay_microseconds`` 2000;
Triton answers the v2 protocol itself on 127.0.0.1. compare.py starts this with
``LD_LIBRARY_PATH`` set to the LIBDIR of the interpreter that made the venv: the bundled
Python-backend stub otherwise links the system libpython (3.11.2) against the venv's 3.11.7
standard library and fails with ``'_thread.RLock' object has no attribute '_recursion_count'``.
PyTriton protects Triton's management endpoints (model repository included) with an access
token; compare.py passes one so that the reload test can use Triton's explicit model control
(header ``triton-access-token``).
Usage: python pytriton_server.py MODELS_DIR HTTP_PORT GRPC_PORT METRICS_PORT TOKEN WORKSPACE
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from common import Traced, model_files
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonLifecyclePolicy, TritonSecurityConfig


def make_infer(traced: Traced):
    @batch
    def infer(input):  # the tensor's name
        return {"output": traced(input)}

    return infer


def main() -> None:
    models_dir = sys.argv[1]
    http_port, grpc_port, metrics_port = (int(a) for a in sys.argv[2:5])
    config = TritonConfig(
        http_address="127.0.0.1", http_port=http_port,
        grpc_address="127.0.0.1", grpc_port=grpc_port,
        metrics_port=metrics_port, allow_metrics=False, log_verbose=0,
    )
    security = TritonSecurityConfig(access_token=sys.argv[5])
    # A local model store, so that Triton's own repository API can reload a model from it.
    policy = TritonLifecyclePolicy(launch_triton_on_startup=True, local_model_store=True)
    with Triton(config=config, workspace=sys.argv[6], security_config=security,
                triton_lifecycle_policy=policy) as triton:
        for name, path in model_files(models_dir).items():
            traced = Traced(path)
            triton.bind(
                model_name=name,
                infer_func=make_infer(traced),
                inputs=[Tensor(name="input", dtype=np.float32, shape=traced.input_shape)],
                outputs=[Tensor(name="output", dtype=np.float32, shape=(-1,))],
                config=ModelConfig(max_batch_size=32, batcher=DynamicBatcher(max_queue_delay_microseconds=2000)),
                strict=False,
            )
        print("pytriton ready", flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
