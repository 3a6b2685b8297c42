"""v2 gRPC (``yyai serve --grpc-port``), driven by the real ``tritonclient.grpc``.

One server serves REST and gRPC from one process and one registry. Every gRPC output is
compared with the same request over REST (``tritonclient.http``) and with the Keras models
called directly in this process. Typed ``contents`` (which tritonclient never sends: it
always uses ``raw_input_contents``) go through the generated stub. The body limit is set
low (1 MiB), so that an oversized message is cheap to send.
"""

from __future__ import annotations

import asyncio
import functools
import threading

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from builders import install, pack_models, reference, sample_inputs
from serving import start_server
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from yyai_kernel.api.context import Api
from yyai_kernel.plane.planes import Planes
from yyai_kernel.registry.registry import Registry
from yyai_kernel.server.grpc_server import GrpcServer
from yyai_kernel.store.store import ModelStore

TOKEN = "grpc-token"
AUTH = {"authorization": f"token {TOKEN}"}
METADATA = (("authorization", f"token {TOKEN}"),)
LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpc-built")
    alpha, alpha_models = pack_models(root, "alpha", 1, [11, 12])
    beta, beta_models = pack_models(root, "beta", 1, [13], combine="each")
    return {"alpha": (alpha, alpha_models), "beta": (beta, beta_models)}


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    store = tmp_path_factory.mktemp("grpc-store")
    for path, _ in built.values():
        install(path, store)
    srv = start_server(store, tmp_path_factory.mktemp("grpc-work"), token=TOKEN,
                       args=["--grpc-port", "0", "--max-body-bytes", str(LIMIT)])
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def client(server):
    triton = grpcclient.InferenceServerClient(server.grpc_address)
    yield triton
    triton.close()


@pytest.fixture(scope="module")
def rest(server):
    triton = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    yield triton
    triton.close()


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_address)
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def _grpc_inputs(x: np.ndarray, datatype: str = "FP32") -> list:
    tensor = grpcclient.InferInput("input", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return [tensor]


def _rest_inputs(x: np.ndarray) -> list:
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    return [tensor]


def _refused(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


# --- health and metadata ---------------------------------------------------------------


def test_live_ready_and_server_metadata(client, server):
    assert client.is_server_live(headers=AUTH) and client.is_server_ready(headers=AUTH)
    meta = client.get_server_metadata(headers=AUTH, as_json=True)
    assert meta == {**server.get("/v2").json(), "version": meta["version"]}
    assert meta["name"] == "yyai" and meta["extensions"] == ["binary_tensor_data", "model_repository"]


def test_model_ready_and_metadata_match_rest(client, server):
    assert client.is_model_ready("alpha", headers=AUTH) and client.is_model_ready("alpha", "1", headers=AUTH)
    # Triton's answer for a version or a model it does not serve: ready false, not an error.
    assert not client.is_model_ready("alpha", "7", headers=AUTH)
    assert not client.is_model_ready("nosuch", headers=AUTH)
    for name, version in (("alpha", ""), ("alpha", "1"), ("beta", "")):
        meta = client.get_model_metadata(name, version, headers=AUTH, as_json=True)
        over_rest = server.get(f"/v2/models/{name}" + (f"/versions/{version}" if version else "")).json()
        over_rest.pop("parameters")  # the protobuf message has no parameters field
        for tensor in meta["inputs"] + meta["outputs"]:
            tensor["shape"] = [int(d) for d in tensor["shape"]]  # int64 goes as a JSON string
        assert meta == over_rest
    assert [o["name"] for o in meta["outputs"]] == ["output", "m13"]


# --- inference -------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2, 5, 8, 13])
def test_infer_matches_rest_and_keras(client, rest, built, batch):
    x = sample_inputs(batch, seed=batch)
    expected = reference(built["alpha"][1], x)
    got = client.infer("alpha", _grpc_inputs(x), headers=AUTH)
    over_rest = rest.infer("alpha", _rest_inputs(x), headers={"Authorization": f"token {TOKEN}"})
    response = got.get_response()
    assert (response.model_name, response.model_version) == ("alpha", "1")
    assert [o.name for o in response.outputs] == ["output", "m11", "m12"]
    for name, want in (("output", expected["combined"]), ("m11", expected["members"][0]),
                       ("m12", expected["members"][1])):
        assert got.as_numpy(name).dtype == np.float32 and got.as_numpy(name).shape == (batch, 3)
        np.testing.assert_allclose(got.as_numpy(name), want, atol=1e-6)
        np.testing.assert_allclose(got.as_numpy(name), over_rest.as_numpy(name), rtol=0, atol=1e-6)
    parameters = got.get_response(as_json=True)["parameters"]
    assert parameters == {"combined": {"string_param": "output"}, "members": {"string_param": "m11,m12"}}


def test_infer_a_version_chosen_outputs_and_an_id(client, built):
    x = sample_inputs(3, seed=21)
    outputs = [grpcclient.InferRequestedOutput("m12"), grpcclient.InferRequestedOutput("output")]
    got = client.infer("alpha", _grpc_inputs(x), model_version="1", outputs=outputs, request_id="r-7",
                       headers=AUTH)
    assert [o.name for o in got.get_response().outputs] == ["m12", "output"] and got.get_response().id == "r-7"
    np.testing.assert_allclose(got.as_numpy("m12"), reference(built["alpha"][1], x)["members"][1], atol=1e-6)


def test_integer_and_float64_inputs_are_cast(client, built):
    x = (np.arange(32).reshape(2, 4, 4, 1) % 5).astype(np.int32)
    expected = reference(built["alpha"][1], x.astype(np.float32))["combined"]
    np.testing.assert_allclose(client.infer("alpha", _grpc_inputs(x, "INT32"), headers=AUTH).as_numpy("output"),
                               expected, atol=1e-6)
    np.testing.assert_allclose(client.infer("alpha", _grpc_inputs(x.astype(np.float64), "FP64"),
                                            headers=AUTH).as_numpy("output"), expected, atol=1e-6)


def test_typed_contents_are_read_like_raw_contents(stub, built):
    x = sample_inputs(2, seed=5)
    request = service_pb2.ModelInferRequest(model_name="alpha")
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape)).contents.fp32_contents.extend(x.ravel())
    whole = (np.arange(32).reshape(2, 4, 4, 1) % 3).astype(np.int32)
    ints = service_pb2.ModelInferRequest(model_name="alpha", model_version="1")
    ints.inputs.add(name="input", datatype="INT32", shape=list(whole.shape)).contents.int_contents.extend(whole.ravel())
    for sent, values in ((request, x), (ints, whole.astype(np.float32))):
        reply = grpcclient.InferResult(stub.ModelInfer(sent, metadata=METADATA, timeout=60))
        assert not any(o.HasField("contents") for o in reply.get_response().outputs)  # raw_output_contents
        np.testing.assert_allclose(reply.as_numpy("output"), reference(built["alpha"][1], values)["combined"],
                                   atol=1e-6)


# --- the repository extension --------------------------------------------------------


def test_unload_then_load_through_the_repository_extension(client, stub, built):
    client.unload_model("beta", headers=AUTH)
    assert not client.is_model_ready("beta", headers=AUTH)
    index = {(m["name"], m["version"]): m
             for m in client.get_model_repository_index(headers=AUTH, as_json=True)["models"]}
    assert index[("beta", "1")]["state"] == "UNAVAILABLE" and index[("alpha", "1")]["state"] == "READY"
    ready_only = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True), metadata=METADATA, timeout=60)
    assert [(m.name, m.state) for m in ready_only.models] == [("alpha", "READY")]
    x = sample_inputs(2, seed=9)
    assert _refused(lambda: client.infer("beta", _grpc_inputs(x), headers=AUTH)).status() == "StatusCode.UNAVAILABLE"
    client.load_model("beta", headers=AUTH)
    assert client.is_model_ready("beta", headers=AUTH)
    got = client.infer("beta", _grpc_inputs(x), headers=AUTH)
    np.testing.assert_allclose(got.as_numpy("m13"), reference(built["beta"][1], x)["members"][0], atol=1e-6)
    override = _refused(lambda: client.load_model("beta", config='{"backend": "python"}', headers=AUTH))
    assert override.status() == "StatusCode.INVALID_ARGUMENT" and "overrides are not accepted" in override.message()
    index = client.get_model_repository_index(headers=AUTH, as_json=True)["models"]
    assert {(m["name"], m["state"]) for m in index} == {("alpha", "READY"), ("beta", "READY")}
    assert _refused(lambda: client.unload_model("nosuch", headers=AUTH)).status() == "StatusCode.NOT_FOUND"


# --- refusals ------------------------------------------------------------------------


def test_no_token_or_a_wrong_token_is_unauthenticated(client, server):
    x = sample_inputs(1)
    calls = {
        "live": lambda h: client.is_server_live(headers=h),
        "ready": lambda h: client.is_server_ready(headers=h),
        "metadata": lambda h: client.get_model_metadata("alpha", headers=h),
        "infer": lambda h: client.infer("alpha", _grpc_inputs(x), headers=h),
        "index": lambda h: client.get_model_repository_index(headers=h),
        "unload": lambda h: client.unload_model("alpha", headers=h),
        "config": lambda h: client.get_model_config("alpha", headers=h),  # not implemented: still refused
    }
    for what, call in calls.items():
        for headers in ({}, {"authorization": "token wrong"}, {"authorization": TOKEN}, {"other": f"token {TOKEN}"}):
            refusal = _refused(functools.partial(call, headers))
            assert refusal.status() == "StatusCode.UNAUTHENTICATED", (what, headers)
        assert "Invalid token" in _refused(functools.partial(call, {"authorization": "Bearer wrong"})).message()
    assert "Authentication required" in _refused(lambda: calls["live"]({})).message()
    assert client.is_model_ready("alpha", headers={"authorization": f"Bearer {TOKEN}"})  # and it is still loaded
    assert _refused(lambda: calls["config"](AUTH)).status() == "StatusCode.UNIMPLEMENTED"


def test_bad_shapes_and_datatypes_are_invalid_argument(client, stub):
    def refusal(inputs, **kwargs):
        error = _refused(lambda: client.infer("alpha", inputs, headers=AUTH, **kwargs))
        assert error.status() == "StatusCode.INVALID_ARGUMENT", error.message()
        return error.message()

    x = sample_inputs(1)
    assert "expected [batch, 4, 4, 1]" in refusal(_grpc_inputs(x.reshape(1, 16)))
    assert "expected [batch, 4, 4, 1]" in refusal(_grpc_inputs(x.reshape(4, 4, 1)))
    wrong_name = grpcclient.InferInput("pixels", list(x.shape), "FP32")
    wrong_name.set_data_from_numpy(x)
    assert "the model's input is named 'input'" in refusal([wrong_name])
    text = grpcclient.InferInput("input", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"cat"], dtype=object))
    assert "yyai models take numbers" in refusal([text])
    flags = grpcclient.InferInput("input", list(x.shape), "BOOL")
    flags.set_data_from_numpy(x > 0.5)
    assert "yyai models take numbers" in refusal([flags])
    assert "Unknown output 'nope'" in refusal(_grpc_inputs(x), outputs=[grpcclient.InferRequestedOutput("nope")])
    assert "NaN or infinite" in refusal(_grpc_inputs(np.full((1, 4, 4, 1), np.nan, np.float32)))

    def raw(datatype, shape, data, field=None):
        request = service_pb2.ModelInferRequest(model_name="alpha")
        tensor = request.inputs.add(name="input", datatype=datatype, shape=shape)
        if field:
            getattr(tensor.contents, field).extend(data)
        else:
            request.raw_input_contents.append(data)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request, metadata=METADATA, timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        return info.value.details()

    assert "has 60 bytes but shape [1, 4, 4, 1] of FP32 needs 64" in raw("FP32", [1, 4, 4, 1], b"\0" * 60)
    assert "has 15 values but shape [1, 4, 4, 1] needs 16" in raw("FP32", [1, 4, 4, 1], [0.5] * 15, "fp32_contents")
    assert "whose values go in contents.fp32_contents" in raw("FP32", [1, 4, 4, 1], [1] * 16, "int_contents")
    assert "unknown datatype 'FP8'" in raw("FP8", [1, 4, 4, 1], b"\0" * 16)
    assert "empty batch" in raw("FP32", [0, 4, 4, 1], b"")


def test_unknown_models_and_versions_are_not_found(client):
    x = sample_inputs(1)
    for call in (lambda: client.infer("nosuch", _grpc_inputs(x), headers=AUTH),
                 lambda: client.infer("alpha", _grpc_inputs(x), model_version="7", headers=AUTH),
                 lambda: client.get_model_metadata("nosuch", headers=AUTH),
                 lambda: client.load_model("nosuch", headers=AUTH)):
        assert _refused(call).status() == "StatusCode.NOT_FOUND"
    assert "No model named 'nosuch'" in _refused(lambda: client.get_model_metadata("nosuch", headers=AUTH)).message()
    bad_name = _refused(lambda: client.infer("../etc", _grpc_inputs(x), headers=AUTH))
    assert bad_name.status() == "StatusCode.INVALID_ARGUMENT"
    bad_version = _refused(lambda: client.get_model_metadata("alpha", "1.5", headers=AUTH))
    assert bad_version.status() == "StatusCode.INVALID_ARGUMENT"
    unknown_label = _refused(lambda: client.get_model_metadata("alpha", "one", headers=AUTH))  # a label's syntax
    assert unknown_label.status() == "StatusCode.NOT_FOUND" and "no label 'one'" in unknown_label.message()


def test_a_message_over_the_body_limit_is_refused(client, server):
    x = sample_inputs(LIMIT // 64 + 1)  # 64 bytes an item: just over the limit
    refusal = _refused(lambda: client.infer("alpha", _grpc_inputs(x), headers=AUTH))
    assert refusal.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert server.post("/v2/models/alpha/infer", data=b"x" * (LIMIT + 1)).status_code == 413  # the same limit
    fits = sample_inputs(LIMIT // 64 - 64)
    assert client.infer("alpha", _grpc_inputs(fits), headers=AUTH).as_numpy("output").shape == (len(fits), 3)


# --- under load ----------------------------------------------------------------------


def test_grpc_and_rest_clients_together_while_the_model_reloads(server, built):
    clients_while_reloading(server, built["alpha"][1])


def clients_while_reloading(server, models: list, *, front_ends: int = 1, reloads: int = 4) -> None:
    """8 gRPC and 8 REST clients, each with its own connection, run until ``reloads`` reloads of
    alpha are done (and at least 10 requests each, at most 2000); every answer must be right.

    ``test_workers`` runs it against ``--workers 2`` (``front_ends``): the REST clients are
    spread over the front ends (each reply must come from its client's), every reload
    reply says that every front end serves it, and each front end says alpha is ready at the end."""
    inputs = [sample_inputs(1 + i % 4, seed=300 + i) for i in range(32)]
    expected = [reference(models, x)["combined"] for x in inputs]
    done = threading.Event()
    failures: list[str] = []
    counts: list[int] = []
    auth = {"authorization": f"token {server.token}"}

    def grpc_client(seed: int) -> None:
        triton = grpcclient.InferenceServerClient(server.grpc_address)
        try:
            loop(seed, lambda x: triton.infer("alpha", _grpc_inputs(x), headers=auth).as_numpy("output"))
        finally:
            triton.close()

    def rest_client(seed: int) -> None:
        worker = str(seed % front_ends)
        with server.session_to(worker) as session:
            def call(x):
                body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                    "data": x.ravel().tolist()}], "outputs": [{"name": "output"}]}
                reply = session.post(f"{server.url}/v2/models/alpha/infer", json=body, timeout=120,
                                     headers=server.headers)
                assert reply.status_code == 200, reply.text
                assert reply.headers["X-Yyai-Worker"] == worker, (reply.headers["X-Yyai-Worker"], worker)
                return np.reshape(reply.json()["outputs"][0]["data"], (len(x), 3))

            loop(seed, call)

    def loop(seed: int, call) -> None:
        rng = np.random.default_rng(seed)
        n = 0
        while (n < 10 or not done.is_set()) and n < 2000:
            pick = int(rng.integers(len(inputs)))
            try:
                np.testing.assert_allclose(call(inputs[pick]), expected[pick], atol=1e-6)
            except Exception as exc:  # noqa: BLE001 - every failure is collected and reported
                failures.append(f"{type(exc).__name__}: {exc}"[:300])
            n += 1
        counts.append(n)

    def reloader() -> None:
        try:
            for _ in range(reloads):
                reply = server.post("/models/alpha/reload", timeout=180)
                if reply.status_code != 200:
                    failures.append(f"reload: {reply.status_code} {reply.text[:200]}")
                elif front_ends > 1 and reply.headers.get("X-Yyai-Applied") != f"{front_ends}/{front_ends}":
                    failures.append(f"reload: applied {reply.headers.get('X-Yyai-Applied')}")
        finally:
            done.set()

    threads = [threading.Thread(target=grpc_client, args=(i,)) for i in range(8)]
    threads += [threading.Thread(target=rest_client, args=(100 + i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    reloading = threading.Thread(target=reloader)
    reloading.start()
    for thread in [reloading, *threads]:
        thread.join(600)
        assert not thread.is_alive()
    assert failures == []
    assert len(counts) == 16 and min(counts) >= 10
    for worker in range(front_ends):
        with server.session_to(worker) as session:
            status = session.get(server.url + "/models/alpha", headers=server.headers, timeout=60).json()
        assert status["versions"]["1"]["state"] == "ready", (worker, status)


# --- SO_REUSEPORT --------------------------------------------------------------------


def test_a_port_is_shared_only_when_reuse_port_is_asked_for(tmp_path):
    """One process owns its gRPC port (grpc.aio would share it by default on Linux); the
    worker processes of ``--workers`` ask for SO_REUSEPORT and share one."""
    registry = Registry(ModelStore(tmp_path))
    state = Api(Planes.over(registry), [], str(tmp_path))

    def live(port: int) -> bool:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            return stub.ServerLive(service_pb2.ServerLiveRequest(), metadata=METADATA, timeout=30).live

    async def main() -> None:
        alone = GrpcServer(state, token=TOKEN)
        port = await alone.start("127.0.0.1", 0)
        with pytest.raises(RuntimeError, match="Failed to bind"):
            await GrpcServer(state, token=TOKEN, reuse_port=True).start("127.0.0.1", port)
        await alone.stop(None)
        first = GrpcServer(state, token=TOKEN, reuse_port=True)
        port = await first.start("127.0.0.1", 0)
        second = GrpcServer(state, token=TOKEN, reuse_port=True)
        assert await second.start("127.0.0.1", port) == port
        assert await asyncio.to_thread(live, port)
        await first.stop(None)
        assert await asyncio.to_thread(live, port)  # the second one still answers on the port
        await second.stop(None)

    try:
        asyncio.run(main())
    finally:
        registry.close()
        state.shutdown()
