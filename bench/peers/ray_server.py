"""Ray Serve peer: one deployment per model with ``@serve.batch`` (32, 2 ms), HTTP on 127.0.0.1.

Each deployment answers ``POST /v2/models/<name>/infer`` with the v2 JSON body, like every
other peer. The driver stays up until it is terminated. Ray reads RAY_worker_niceness=0,
RAY_USAGE_STATS_ENABLED=0 and RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 from the environment
(compare.py sets them).
Usage: python ray_server.py MODELS_DIR PORT
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

PEERS = str(Path(__file__).resolve().parent)
sys.path.insert(0, PEERS)
import numpy as np  # noqa: E402
import ray  # noqa: E402
from common import model_files  # noqa: E402
from ray import serve  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402


def _loopback_only_replica_grpc() -> None:
    """Keep the replica's inter-deployment gRPC server on 127.0.0.1.

    Ray Serve 2.60 binds it to ``[::]:0`` (all interfaces) with no setting to change that
    (``ray/serve/_private/replica.py``); the bench keeps every socket on loopback, so the
    replica's module-level helper is wrapped before the replica starts that server.
    """
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server
    if getattr(original, "_loopback", False):
        return

    def loopback(server, address):
        return original(server, address.replace("[::]", "127.0.0.1").replace("0.0.0.0", "127.0.0.1"))

    loopback._loopback = True
    replica.add_port_to_grpc_server = loopback


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
class KerasModel:
    """One traced Keras model; concurrent requests are batched by ``@serve.batch``."""

    def __init__(self, peers_dir: str, path: str, name: str):
        sys.path.insert(0, peers_dir)
        _loopback_only_replica_grpc()
        from common import Traced, decode_v2, encode_v2

        self.decode, self.encode = decode_v2, encode_v2
        self.traced = Traced(path)
        self.name = name

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def infer(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        out = self.traced(np.concatenate(xs))
        bounds = np.cumsum([len(x) for x in xs])[:-1]
        return np.split(out, bounds)

    async def __call__(self, request: Request) -> Response:
        x = self.decode(await request.body())
        out = await self.infer(x)
        return Response(self.encode(self.name, out), media_type="application/json")


def main() -> None:
    models_dir, port = sys.argv[1], int(sys.argv[2])
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"log_level": "WARNING"})
    for name, path in model_files(models_dir).items():
        serve.run(KerasModel.bind(PEERS, str(path), name), name=name, route_prefix=f"/v2/models/{name}")
    print("ray serve ready", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.5)
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
