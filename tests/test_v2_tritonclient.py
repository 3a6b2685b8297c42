"""The Open Inference Protocol v2 endpoints, driven by the real ``tritonclient[http]``.

Every output is compared with the same Keras models called directly in this process.
tritonclient sends binary tensors and asks for binary outputs by default, so a plain
``infer()`` exercises the binary tensor data extension; the JSON form is tested too.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from builders import install, pack_models, reference, sample_inputs
from serving import start_server
from tritonclient.utils import InferenceServerException

TOKEN = "triton-token"


class _Auth(dict):
    """Fresh auth headers on every use: tritonclient writes Inference-Header-Content-Length and
    Content-Encoding into the headers dict it is given, which would leak into the next call."""

    def __init__(self):
        super().__init__({"Authorization": f"token {TOKEN}"})




@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton-built")
    alpha, alpha_models = pack_models(root, "alpha", 1, [11, 12])
    beta, beta_models = pack_models(root, "beta", 1, [13], combine="each")
    return {"alpha": (alpha, alpha_models), "beta": (beta, beta_models)}


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def server(built, tmp_path_factory, request):
    """One server, then ``--workers 2`` (tritonclient's pooled connections reach both workers)."""
    store = tmp_path_factory.mktemp("triton-store")
    for path, _ in built.values():
        install(path, store)
    srv = start_server(store, tmp_path_factory.mktemp("triton-work"), token=TOKEN,
                       args=["--workers", str(request.param)])
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def client(server):
    triton = httpclient.InferenceServerClient(server.url.removeprefix("http://"), concurrency=8)
    yield triton
    triton.close()


def _inputs(x: np.ndarray, *, binary: bool) -> list:
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return [tensor]


def test_server_health_and_metadata(client):
    assert client.is_server_live(headers=_Auth())
    assert client.is_server_ready(headers=_Auth())
    meta = client.get_server_metadata(headers=_Auth())
    assert meta["name"] == "yyai" and "binary_tensor_data" in meta["extensions"]


def test_model_ready_and_metadata(client):
    assert client.is_model_ready("alpha", headers=_Auth())
    assert client.is_model_ready("alpha", "1", headers=_Auth())
    assert not client.is_model_ready("alpha", "7", headers=_Auth())
    assert not client.is_model_ready("nosuch", headers=_Auth())
    meta = client.get_model_metadata("alpha", headers=_Auth())
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4, 4, 1]}]
    assert [o["name"] for o in meta["outputs"]] == ["output", "m11", "m12"]
    assert client.get_model_metadata("alpha", "1", headers=_Auth())["versions"] == ["1"]
    single = client.get_model_metadata("beta", headers=_Auth())
    assert [o["name"] for o in single["outputs"]] == ["output", "m13"]  # one member: it is the combined output


def test_binary_infer_matches_keras(client, built):
    x = sample_inputs(5, seed=1)
    expected = reference(built["alpha"][1], x)
    result = client.infer("alpha", _inputs(x, binary=True), headers=_Auth())
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_allclose(result.as_numpy("output"), expected["combined"], atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("m11"), expected["members"][0], atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("m12"), expected["members"][1], atol=1e-6)
    assert result.as_numpy("output").dtype == np.float32


def test_json_infer_matches_keras(client, built):
    x = sample_inputs(3, seed=2)
    expected = reference(built["alpha"][1], x)
    outputs = [httpclient.InferRequestedOutput("output", binary_data=False),
               httpclient.InferRequestedOutput("m12", binary_data=False)]
    result = client.infer("alpha", _inputs(x, binary=False), model_version="1", outputs=outputs, headers=_Auth())
    assert [o["name"] for o in result.get_response()["outputs"]] == ["output", "m12"]
    assert all("data" in o for o in result.get_response()["outputs"])
    np.testing.assert_allclose(result.as_numpy("output"), expected["combined"], atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("m12"), expected["members"][1], atol=1e-6)
    assert result.as_numpy("m11") is None


def test_mixed_binary_json_and_compressed_requests(client, built):
    x = sample_inputs(2, seed=3)
    expected = reference(built["alpha"][1], x)
    outputs = [httpclient.InferRequestedOutput("output", binary_data=True),
               httpclient.InferRequestedOutput("m11", binary_data=False)]
    for algorithm in (None, "gzip", "deflate"):
        result = client.infer("alpha", _inputs(x, binary=True), outputs=outputs, headers=_Auth(),
                              request_compression_algorithm=algorithm, response_compression_algorithm=algorithm)
        np.testing.assert_allclose(result.as_numpy("output"), expected["combined"], atol=1e-6)
        np.testing.assert_allclose(result.as_numpy("m11"), expected["members"][0], atol=1e-6)


def test_float64_and_int_inputs_are_cast(client, built):
    x = (np.arange(32).reshape(2, 4, 4, 1) % 5).astype(np.int32)
    tensor = httpclient.InferInput("input", list(x.shape), "INT32")
    tensor.set_data_from_numpy(x)
    result = client.infer("alpha", [tensor], headers=_Auth())
    expected = reference(built["alpha"][1], x.astype(np.float32))
    np.testing.assert_allclose(result.as_numpy("output"), expected["combined"], atol=1e-6)


def test_concurrent_infers_all_get_their_own_answer_and_a_bad_one_fails_alone(client, built):
    """Requests in flight together are gathered into batches (one hand-over to the batcher per
    loop iteration or channel message, one wake-up back per batch): each still gets its own
    rows, binary or JSON, and a malformed request in the crowd gets its own 400."""
    # tritonclient.http runs on gevent: async_infer is its way to keep 8 requests in flight.
    batches = [sample_inputs(1 + i % 3, seed=100 + i) for i in range(24)]
    bad = {5, 17}
    pending = []
    for i, x in enumerate(batches):
        if i in bad:
            tensor = httpclient.InferInput("input", [1, 16], "FP32")
            tensor.set_data_from_numpy(x[:1].reshape(1, 16))
            pending.append(client.async_infer("alpha", [tensor], headers=_Auth()))
        else:
            pending.append(client.async_infer("alpha", _inputs(x, binary=i % 2 == 0), headers=_Auth()))
    for i, (x, request) in enumerate(zip(batches, pending)):
        if i in bad:
            with pytest.raises(InferenceServerException) as refused:
                request.get_result()
            assert refused.value.status() == "400"
            continue
        got = request.get_result().as_numpy("output")
        np.testing.assert_allclose(got, reference(built["alpha"][1], x)["combined"], atol=1e-6)


def test_errors_come_back_as_inference_server_exceptions(client):
    x = sample_inputs(1)
    with pytest.raises(InferenceServerException) as wrong_shape:
        bad = httpclient.InferInput("input", [1, 16], "FP32")
        bad.set_data_from_numpy(x.reshape(1, 16))
        client.infer("alpha", [bad], headers=_Auth())
    assert wrong_shape.value.status() == "400" and "expected [batch, 4, 4, 1]" in wrong_shape.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nosuch", _inputs(x, binary=True), headers=_Auth())
    assert unknown.value.status() == "404"
    with pytest.raises(InferenceServerException) as no_token:
        client.infer("alpha", _inputs(x, binary=True))
    assert no_token.value.status() == "401"
    with pytest.raises(InferenceServerException) as bad_output:
        client.infer("alpha", _inputs(x, binary=True), outputs=[httpclient.InferRequestedOutput("nope")],
                     headers=_Auth())
    assert bad_output.value.status() == "400"


def test_unload_then_load_through_the_repository_api(client, built):
    client.unload_model("beta", headers=_Auth())
    assert not client.is_model_ready("beta", headers=_Auth())
    index = {(e["name"], e["version"]): e for e in client.get_model_repository_index(headers=_Auth())}
    assert index[("beta", "1")]["state"] == "UNAVAILABLE" and index[("alpha", "1")]["state"] == "READY"
    with pytest.raises(InferenceServerException) as not_ready:
        client.infer("beta", _inputs(sample_inputs(1), binary=True), headers=_Auth())
    assert not_ready.value.status() == "503"
    client.load_model("beta", headers=_Auth())
    assert client.is_model_ready("beta", headers=_Auth())
    x = sample_inputs(2, seed=9)
    result = client.infer("beta", _inputs(x, binary=True), headers=_Auth())
    np.testing.assert_allclose(result.as_numpy("m13"), reference(built["beta"][1], x)["members"][0], atol=1e-6)
    with pytest.raises(InferenceServerException) as override:
        client.load_model("beta", config='{"backend": "python"}', headers=_Auth())
    assert override.value.status() == "400"
