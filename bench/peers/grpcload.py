"""Closed-loop v2 gRPC load client (``tritonclient.grpc.aio``), run as its own process by compare.py.

The gRPC counterpart of ``loadclient.py``: ``CONCURRENCY`` tasks share one channel (HTTP/2
streams, as a gRPC client application does) and call ``ModelInfer`` back to back for
``SECONDS``. The tensor is the first input of the bench's v2 JSON body, sent as
tritonclient sends it (``raw_input_contents``); the reply is awaited, not decoded.

Prints the same JSON as loadclient.py: {"requests": [[t_start_s, latency_ms, status], ...],
"cpu_s": ..., "wall_s": ...}; status 200 is a successful call, 0 a failed one, whose record
has a fourth item naming the gRPC status and message.
Usage: python grpcload.py HOST:PORT MODEL BODY_JSON CONCURRENCY SECONDS [KEY:VALUE metadata ...]
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException


def inputs_from(body_file: str) -> list:
    """The body's first input as a tritonclient input (its datatype, shape and values)."""
    with open(body_file, "rb") as f:
        first = json.load(f)["inputs"][0]
    x = np.asarray(first["data"], dtype=np.float32).reshape(first["shape"])
    tensor = grpcclient.InferInput(first["name"], list(x.shape), first["datatype"])
    tensor.set_data_from_numpy(x)
    return [tensor]


async def run(address: str, model: str, inputs: list, metadata: dict, concurrency: int, seconds: float) -> list:
    records: list = []
    client = grpcclient.InferenceServerClient(address)
    origin = time.perf_counter()
    stop = origin + seconds

    async def worker():
        while time.perf_counter() < stop:
            started = time.perf_counter()
            error = None
            try:
                await client.infer(model, inputs, headers=metadata, client_timeout=30)
                status = 200
            except InferenceServerException as exc:
                status, error = 0, f"{exc.status()}: {exc.message()}"[:200]
                await asyncio.sleep(0.01)
            record = [round(started - origin, 6), round((time.perf_counter() - started) * 1e3, 4), status]
            if error:
                record.append(error)
            records.append(record)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.close()
    return records


def main() -> None:
    address, model, body_file = sys.argv[1:4]
    concurrency, seconds = int(sys.argv[4]), float(sys.argv[5])
    metadata = dict(item.split(":", 1) for item in sys.argv[6:])
    inputs = inputs_from(body_file)
    wall = time.perf_counter()
    records = asyncio.run(run(address, model, inputs, metadata, concurrency, seconds))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"requests": records, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "wall_s": time.perf_counter() - wall}))


if __name__ == "__main__":
    main()
