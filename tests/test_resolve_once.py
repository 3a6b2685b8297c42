"""A request is resolved once: its model reference parsed at the edge, then one registry lookup.

The REST endpoints (through the Tornado adapter, on a real HTTP server on loopback) and the
gRPC servicer (a real grpc.aio server) serve a real Registry over the demo archives. The
registry's ``resolve`` is wrapped to count its calls; every inference request, by default,
by version, by label, under a canary policy, as JSON, binary tensors, a PNG or a multipart
upload, must resolve exactly once. The count is read per request, so a request that
resolved twice (as the old path did, three times) fails the test.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from builders import DEMO, demo_registry
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from yyai_kernel.api.context import Api
from yyai_kernel.api.table import all_endpoints
from yyai_kernel.plane.planes import Planes
from yyai_kernel.server.auth import YyaiIdentityProvider
from yyai_kernel.server.grpc_server import GrpcServer
from yyai_kernel.server.rest.handlers import rest_handlers

TOKEN = "resolve-once"
HEADERS = {"Authorization": f"token {TOKEN}"}
SAMPLES = DEMO / "samples"


class Served:
    """The REST and gRPC servers of one process, on a loop of their own, and the resolution count."""

    def __init__(self, registry, tmp_dir: str):
        self.registry = registry
        self.planes = Planes.over(registry)
        self.planes.data.mark_ready()
        self.api = Api(self.planes, all_endpoints(), tmp_dir)
        self.counts: Counter = Counter()
        resolve = registry.resolve

        def counting(ref):
            self.counts[str(ref)] += 1
            return resolve(ref)

        registry.resolve = counting  # the real resolution, counted
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(60)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        settings = {"yyai": self.api, "identity_provider": YyaiIdentityProvider(token=TOKEN)}
        app = Application(rest_handlers(self.api.endpoints, lambda path: path), **settings)
        sockets = bind_sockets(0, "127.0.0.1")
        self.http = HTTPServer(app)
        self.http.add_sockets(sockets)
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        self.grpc = GrpcServer(self.api, token=TOKEN)
        self.grpc_port = self.loop.run_until_complete(self.grpc.start("127.0.0.1", 0))
        started.set()
        self.loop.run_forever()

    def resolutions(self, send) -> int:
        """How many times ``send()`` made the registry resolve a reference."""
        self.counts.clear()
        send()
        return sum(self.counts.values())

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.grpc.stop(None), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.http.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.api.shutdown()
        self.planes.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    store = tmp_path_factory.mktemp("resolve-once-store")
    registry = demo_registry(store)
    registry.set_label("digits", "stable", 1)
    server = Served(registry, str(tmp_path_factory.mktemp("resolve-once-tmp")))
    yield server
    server.close()


def _tensor(binary: bool) -> httpclient.InferInput:
    x = np.random.default_rng(3).random((2, 8, 8, 1), dtype=np.float32)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


@pytest.mark.parametrize("version", ["", "1", "stable"], ids=["default", "version", "label"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_v2_infer_request_resolves_once(served, version, binary):
    client = httpclient.InferenceServerClient(served.url.removeprefix("http://"))

    def send():
        result = client.infer("digits", [_tensor(binary)], model_version=version, headers=dict(HEADERS))
        assert result.as_numpy("output").shape == (2, 10)

    assert served.resolutions(send) == 1


def test_an_image_prediction_resolves_once(served):
    png = (SAMPLES / "digit-3.png").read_bytes()

    def raw():
        reply = requests.post(f"{served.url}/predictions/digits", data=png,
                              headers={**HEADERS, "Content-Type": "image/png"}, timeout=60)
        assert reply.status_code == 200 and reply.json()["predictions"][0]["top"] == "3"

    def upload():
        files = [("file", (name, (SAMPLES / name).read_bytes(), "image/png"))
                 for name in ("digit-7.png", "digit-0.png")]
        reply = requests.post(f"{served.url}/predictions/digits/stable", files=files, headers=HEADERS, timeout=60)
        assert reply.status_code == 200 and len(reply.json()["predictions"]) == 2

    assert served.resolutions(raw) == 1
    assert served.resolutions(upload) == 1


def test_a_grpc_model_infer_resolves_once(served):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")
    x = np.random.default_rng(4).random((1, 8, 8, 1), dtype=np.float32)
    tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)

    def send():
        result = client.infer("digits", [tensor], headers={"authorization": f"token {TOKEN}"})
        assert result.as_numpy("output").shape == (1, 10)

    assert served.resolutions(send) == 1


def test_a_request_placed_by_a_canary_still_resolves_once(served):
    served.planes.repository.set_traffic("digits", {"canary": {"version": 1, "percent": 100}})
    client = httpclient.InferenceServerClient(served.url.removeprefix("http://"))
    try:
        def send():
            result = client.infer("digits", [_tensor(True)], headers=dict(HEADERS))
            assert result.get_response()["model_version"] == "1"  # the canary answered

        assert served.resolutions(send) == 1
    finally:
        served.planes.repository.clear_traffic("digits")
