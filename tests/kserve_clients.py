"""Run KServe's own Python clients against a yyai server; run as a script (JSON out).

    python kserve_clients.py HTTP_URL GRPC_ADDR TOKEN MODEL X.npy

Its own process: the KServe SDK cannot share one with tritonclient.grpc (both register the
protobuf package `inference`; see tests/kserve_sdk.py). Health and readiness go without
a token (they are what the probes call); everything else carries it. KServe's clients have
no metadata call, so metadata goes through the SDK's generated gRPC stub and plain HTTP.
"""

from __future__ import annotations

import asyncio
import json
import sys

import grpc
import httpx
import numpy as np
from kserve import (
    InferenceGRPCClient,
    InferenceRESTClient,
    InferInput,
    InferRequest,
    RESTConfig,
)
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub


def _request(model: str, x: np.ndarray) -> InferRequest:
    tensor = InferInput(name="input", shape=list(x.shape), datatype="FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    return InferRequest(model_name=model, infer_inputs=[tensor], request_id="kserve-1")


async def _rest(url: str, token: str, model: str, x: np.ndarray) -> dict:
    auth = {"Authorization": f"token {token}"}
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
    try:
        out = {
            "live": await client.is_server_live(url),
            "ready": await client.is_server_ready(url),
            "model_ready": await client.is_model_ready(url, model, headers=auth),
            "model_ready_without_token": await client.is_model_ready(url, model),
        }
        result = await client.infer(url, _request(model, x), model_name=model, headers=dict(auth))
        out["outputs"] = {o.name: o.as_numpy().tolist() for o in result.outputs}
        async with httpx.AsyncClient() as plain:
            out["metadata"] = (await plain.get(f"{url}/v2/models/{model}", headers=auth)).json()
        return out
    finally:
        await client.close()


async def _grpc(addr: str, token: str, model: str, x: np.ndarray) -> dict:
    auth = (("authorization", f"token {token}"),)
    client = InferenceGRPCClient(addr, retries=0, timeout=60)
    try:
        out = {
            "live": await client.is_server_live(),
            "ready": await client.is_server_ready(),
            "model_ready": await client.is_model_ready(model, headers=auth),
        }
        result = await client.infer(_request(model, x), headers=auth)
        out["outputs"] = {o.name: o.as_numpy().tolist() for o in result.outputs}
        meta = await GRPCInferenceServiceStub(client._channel).ModelMetadata(
            pb.ModelMetadataRequest(name=model), metadata=auth
        )
        out["metadata"] = {"name": meta.name, "inputs": [i.name for i in meta.inputs],
                           "outputs": [o.name for o in meta.outputs]}
        out["model_ready_without_token"] = await _code(client.is_model_ready(model))
        out["infer_without_token"] = await _code(client.infer(_request(model, x)))
        return out
    finally:
        await client.close()


async def _code(call) -> str:
    """The gRPC status name a call ends with ("OK" when it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK"


async def main(url: str, addr: str, token: str, model: str, x_path: str) -> None:
    x = np.load(x_path)
    print(json.dumps({"rest": await _rest(url, token, model, x), "grpc": await _grpc(addr, token, model, x)}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
