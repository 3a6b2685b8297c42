"""Labels, canary splits and shadow traffic against a real ``yyai serve``.

One server runs over three versions of ``toy``: v1 (the default, pinned), v2 (other
weights: it disagrees with v1 on some inputs) and v3 (a trusted model that raises on any
input over 0.5). Every reply is checked against the Keras models called directly here;
the shadow's reported agreement against the agreement computed here on the same inputs.
The last test restarts the server on the same store: labels and the policy survive.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from builders import (
    clear_cut,
    install,
    pack_models,
    pack_raising,
    reference,
    sample_inputs,
)
from prometheus_client.parser import text_string_to_metric_families
from serving import start_server
from typer.testing import CliRunner

from yyai_kernel.cli import app

TOKEN = "rollout-token"
X = sample_inputs(240, seed=11)  # the known inputs: narrowed by ``built`` to 120 clear-cut ones


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """v1, v2 and the raising v3; and the inputs on which neither v1 nor v2 has a near tie
    for its top label (a tie would let float noise from batching decide agreement)."""
    global X  # noqa: PLW0603 - set once by the module's fixture
    out = tmp_path_factory.mktemp("rollout-server-built")
    (a1, m1), (a2, m2) = pack_models(out, "toy", 1, [1]), pack_models(out, "toy", 2, [2])
    ref1, ref2 = reference(m1, X)["combined"], reference(m2, X)["combined"]
    keep = clear_cut(ref1, ref2)[:120]
    assert len(keep) == 120
    X = X[keep]
    return {"archives": [a1, a2, pack_raising(out, "toy", 3)], "ref": {1: ref1[keep], 2: ref2[keep]}}


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    store = tmp_path_factory.mktemp("rollout-store")
    for archive in built["archives"]:
        install(archive, store)
    srv = start_server(store, tmp_path_factory.mktemp("rollout-work"), token=TOKEN,
                       args=["--trust", "toy", "--grpc-port", "0"])
    srv.store = store
    assert srv.request("PUT", "/models/toy/default", json={"version": 1}).status_code == 200
    yield srv
    assert srv.stop() == 0
    assert "Traceback" not in srv.log(), srv.log()[-3000:]


def infer(server, i: int, path: str = "/v2/models/toy/infer", **fields) -> requests.Response:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4, 4, 1], "data": X[i].ravel().tolist()}],
            **fields}
    return server.post(path, json=body)


def output(reply: requests.Response) -> np.ndarray:
    assert reply.status_code == 200, reply.text
    return np.array(next(o["data"] for o in reply.json()["outputs"] if o["name"] == "output"))


def default_versions(server, n: int, clients: int = 4) -> list[str]:
    """The version that answered each of ``n`` v2 requests naming none, sent by a few keep-alive clients."""
    def send(first: int) -> list[str]:
        with requests.Session() as session:
            return [session.post(server.url + "/v2/models/toy/infer", headers=server.headers, json={"inputs": [
                {"name": "input", "datatype": "FP32", "shape": [1, 4, 4, 1], "data": X[i % len(X)].ravel().tolist()}
            ]}).json()["model_version"] for i in range(first, n, clients)]

    with ThreadPoolExecutor(clients) as pool:
        return [v for part in pool.map(send, range(clients)) for v in part]


def png(i: int) -> bytes:
    _, data = cv2.imencode(".png", np.round(X[i][:, :, 0] * 255).astype(np.uint8))
    return data.tobytes()


def put_traffic(server, policy: dict) -> dict:
    reply = server.request("PUT", "/models/toy/traffic", json=policy)
    assert reply.status_code == 200, reply.text
    return reply.json()


def rollout(server) -> dict:
    return server.get("/models/toy").json()["rollout"]


def wait_for(server, done, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while not done(figures := rollout(server)["shadow"]):
        assert time.monotonic() < deadline, figures
        time.sleep(0.1)
    return figures


def metrics(server) -> dict:
    text = server.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_label_names_a_version_in_every_front_end(server, built, tmp_path):
    assert server.request("PUT", "/models/toy/labels/stable", json={"version": 1}).json()["labels"] == {"stable": 1}
    assert server.get("/models/toy/labels/stable").json() == {"name": "toy", "label": "stable", "version": 1}
    assert server.get("/models/toy/labels").json() == {"stable": 1}
    assert server.get("/models/toy").json()["labels"] == {"stable": 1}
    reply = server.post("/predictions/toy/stable", data=png(0), headers={"Content-Type": "image/png"})
    assert reply.json()["version"] == 1
    reply = infer(server, 0, "/v2/models/toy/versions/stable/infer")
    assert reply.json()["model_version"] == "1"
    np.testing.assert_allclose(output(reply), built["ref"][1][0], atol=1e-5)
    assert server.get("/models/toy/samples", params={"version": "stable"}).json()["version"] == 1
    assert server.get("/v2/models/toy/versions/stable/ready").status_code == 200
    triton = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    try:  # tritonclient sends the label where the protocol puts a version (a string)
        tensor = httpclient.InferInput("input", [1, 4, 4, 1], "FP32")
        tensor.set_data_from_numpy(X[:1])
        result = triton.infer("toy", [tensor], model_version="stable", headers={"Authorization": f"token {TOKEN}"})
        assert result.get_response()["model_version"] == "1"
        np.testing.assert_allclose(result.as_numpy("output")[0], built["ref"][1][0], atol=1e-5)
    finally:
        triton.close()
    done = cli("label", "toy", "candidate", 2, "--server", server.url, "--token", TOKEN)
    assert done.output == "toy@candidate -> v2\n", done.output
    image = tmp_path / "x.png"
    image.write_bytes(png(0))
    answer = cli("predict", "toy:candidate", image, "--server", server.url, "--token", TOKEN, "--json")
    assert json.loads(answer.stdout)["version"] == 2
    refused = server.request("DELETE", "/models/toy/versions/2", params={"purge": "true"})
    assert refused.status_code == 409 and "label 'candidate'" in refused.json()["error"]
    assert server.get("/models/toy").json()["versions"]["2"]["state"] == "ready"  # nothing was changed
    assert server.request("DELETE", "/models/toy/labels/candidate").json()["labels"] == {"stable": 1}
    assert server.get("/models/toy/labels/candidate").status_code == 404


def test_a_10_percent_canary_takes_its_share_and_named_requests_stay(server):
    put_traffic(server, {"canary": {"version": 2, "percent": 10}})
    n = 4000
    versions = default_versions(server, n)
    canary = versions.count("2")
    assert set(versions) == {"1", "2"}
    assert abs(canary - 0.1 * n) <= 4 * (n * 0.1 * 0.9) ** 0.5, canary
    figures = rollout(server)
    assert figures["default_requests"] == n and figures["canary"] == {"version": 2, "requests": canary,
                                                                     "fallbacks": 0}
    assert metrics(server)[("yyai_canary_requests_total", (("model", "toy"), ("version", "2")))] == canary
    put_traffic(server, {"canary": {"version": 2, "percent": 100}})
    for i in range(30):
        assert infer(server, i, "/v2/models/toy/versions/1/infer").json()["model_version"] == "1"
        assert infer(server, i, "/v2/models/toy/versions/stable/infer").json()["model_version"] == "1"
        named = server.post("/predictions/toy/1", data=png(i), headers={"Content-Type": "image/png"})
        assert named.json()["version"] == 1
        assert infer(server, i).json()["model_version"] == "2"
    assert rollout(server)["canary"]["requests"] == 30


def test_sticky_keys_always_land_on_the_same_side(server):
    put_traffic(server, {"canary": {"version": 2, "percent": 50}, "sticky": True})
    sides = {}
    triton = grpcclient.InferenceServerClient(server.grpc_address)
    tensor = grpcclient.InferInput("input", [1, 4, 4, 1], "FP32")
    tensor.set_data_from_numpy(X[:1])
    try:
        for key in (f"user-{k}" for k in range(40)):
            seen = {server.post("/predictions/toy", data=png(k), headers={"Content-Type": "image/png",
                                                                          "X-Yyai-Sticky": key}).json()["version"]
                    for k in range(3)}
            seen |= {int(infer(server, k, id=key).json()["model_version"]) for k in range(3)}  # the v2 id as the key
            grpc_headers = {"authorization": f"token {TOKEN}", "x-yyai-sticky": key}
            seen |= {int(triton.infer("toy", [tensor], headers=grpc_headers).get_response().model_version)}
            seen |= {int(triton.infer("toy", [tensor], request_id=key, headers={"authorization": f"token {TOKEN}"})
                         .get_response().model_version)}
            assert len(seen) == 1, (key, seen)
            sides[key] = seen.pop()
        assert set(sides.values()) == {1, 2}
        named = triton.infer("toy", [tensor], model_version="stable", headers={"authorization": f"token {TOKEN}"})
        assert named.get_response().model_version == "1"  # a label over gRPC too
    finally:
        triton.close()


def test_a_full_shadow_reports_the_offline_agreement_and_never_changes_a_reply(server, built):
    put_traffic(server, {"shadow": {"version": 2, "percent": 100}})
    for i in range(len(X)):
        reply = infer(server, i)
        assert reply.json()["model_version"] == "1"
        np.testing.assert_allclose(output(reply), built["ref"][1][i], atol=1e-5)
    figures = wait_for(server, lambda s: s["rows_compared"] + s["errors"] + s["dropped"] >= len(X))
    agree = built["ref"][1].argmax(1) == built["ref"][2].argmax(1)
    assert 0 < agree.sum() < len(X)
    assert (figures["rows_compared"], figures["rows_agreed"], figures["errors"], figures["dropped"]) == \
        (len(X), int(agree.sum()), 0, 0), figures
    assert figures["agreement"] == pytest.approx(agree.mean())
    assert figures["max_abs_diff"] == pytest.approx(np.abs(built["ref"][1] - built["ref"][2]).max(), abs=1e-5)
    assert figures["latency_ms"]["p50"] > 0 and figures["real_latency_ms"]["p99"] > 0
    found = metrics(server)
    assert found[("yyai_shadow_agreement", (("model", "toy"), ("version", "2")))] == pytest.approx(agree.mean())
    assert found[("yyai_shadow_rows_agreed_total", (("model", "toy"), ("version", "2")))] == agree.sum()
    kept = server.get("/models/toy/traffic/disagreements").json()
    assert len(kept) == min(32, int((~agree).sum()))
    rows = {int(i) for i in np.flatnonzero(~agree)}
    for entry in kept:
        i = int(np.argmin(np.abs(X.reshape(len(X), -1).mean(1) - entry["input"]["mean"])))
        assert i in rows
        np.testing.assert_allclose(entry["output"], built["ref"][1][i], atol=1e-5)
        np.testing.assert_allclose(entry["shadow_output"], built["ref"][2][i], atol=1e-5)
        image = cv2.imdecode(np.frombuffer(base64.b64decode(entry["input"]["png_base64"]), np.uint8),
                             cv2.IMREAD_UNCHANGED)
        assert image.shape == (64, 64)
    shown = cli("traffic", "toy", "--server", server.url, "--token", TOKEN).output
    assert "shadow v2 100%" in shown and f"agreement {agree.mean():.3f} over {len(X)} rows" in shown, shown
    report = server.get("/models/toy/traffic").json()
    assert report["policy"]["shadow"] == {"version": 2, "percent": 100}
    assert report["rollout"]["shadow"]["rows_compared"] == len(X)


def test_a_shadow_that_raises_or_is_unloaded_fails_no_real_request(server, built):
    put_traffic(server, {"shadow": {"version": 3, "percent": 100}})
    for i in range(40):
        np.testing.assert_allclose(output(infer(server, i)), built["ref"][1][i], atol=1e-5)
    figures = wait_for(server, lambda s: s["errors"] + s["dropped"] >= 40)
    assert figures["errors"] == 40 and figures["rows_compared"] == 0
    assert "refuses inputs over 0.5" in figures["last_error"]

    put_traffic(server, {"shadow": {"version": 2, "percent": 100}})
    failures, answered = [], []

    def client():
        with requests.Session() as session:
            for k in range(150):
                i = k % len(X)
                reply = session.post(server.url + "/v2/models/toy/infer", headers=server.headers, json={"inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 4, 4, 1], "data": X[i].ravel().tolist()}]})
                if reply.status_code != 200:
                    failures.append(reply.text)
                elif not np.allclose(output(reply), built["ref"][1][i], atol=1e-5):
                    failures.append(f"reply {k} differs from v1")
                answered.append(k)

    worker = threading.Thread(target=client)
    worker.start()
    while len(answered) < 50:
        time.sleep(0.01)
    assert server.request("DELETE", "/models/toy/versions/2").status_code == 200  # unloaded mid-way
    worker.join(120)
    assert failures == [] and len(answered) == 150
    figures = wait_for(server, lambda s: s["rows_compared"] + s["errors"] + s["dropped"] >= 150)
    assert figures["errors"] > 0 and "unloaded" in figures["last_error"]
    assert server.post("/models/toy/load", json={"version": 2}).status_code == 200


@pytest.mark.parametrize("doc, status, words", [
    ({"canary": {"version": 2, "percent": 150}}, 400, "canary.percent must be a number from 0 to 100"),
    ({"shadow": {"version": 2, "percent": -5}}, 400, "shadow.percent must be a number from 0 to 100"),
    ({"canary": {"version": 9, "percent": 10}}, 404, "no version 9"),
    ({"canary": {"version": 2, "percent": 10}, "split": "ab"}, 400, "Unknown field(s) 'split'"),
    ({"shadow": {"version": 1, "percent": 100}}, 400, "already the default"),
    ({"canary": {"version": 1, "percent": 5}}, 400, "already the default"),
    ({}, 400, "neither a canary nor a shadow"),
])
def test_bad_policy_documents_are_refused_clearly(server, doc, status, words):
    before = server.get("/models/toy/traffic").json()["policy"]
    reply = server.request("PUT", "/models/toy/traffic", json=doc)
    assert reply.status_code == status and words in reply.json()["error"], reply.text
    assert server.get("/models/toy/traffic").json()["policy"] == before


def test_promote_and_roll_back_are_one_call_each(server):
    put_traffic(server, {"canary": {"version": 2, "percent": 10}})
    cleared = server.request("DELETE", "/models/toy/traffic").json()  # roll back: the default takes everything
    assert cleared["traffic"] is None and cleared["default"] == 1
    assert {infer(server, i).json()["model_version"] for i in range(20)} == {"1"}
    put_traffic(server, {"shadow": {"version": 2, "percent": 100}})
    promoted = server.post("/models/toy/traffic/promote").json()
    assert (promoted["default"], promoted["pinned"], promoted["traffic"]) == (2, True, None)
    assert infer(server, 0).json()["model_version"] == "2"
    refused = server.post("/models/toy/traffic/promote")
    assert refused.status_code == 400 and "no canary or shadow" in refused.json()["error"]
    assert server.request("PUT", "/models/toy/default", json={"version": 1}).json()["default"] == 1


def test_labels_and_the_policy_survive_a_restart(server, tmp_path):
    policy = {"canary": {"version": 2, "percent": 25.0}, "shadow": {"version": 3, "percent": 50.0}, "sticky": True}
    put_traffic(server, policy)
    server.request("PUT", "/models/toy/labels/candidate", json={"version": 2})
    assert server.stop() == 0
    again = start_server(server.store, tmp_path, token=TOKEN, args=["--trust", "toy"])
    try:
        status = again.get("/models/toy").json()
        assert status["labels"] == {"candidate": 2, "stable": 1} and status["traffic"] == policy
        assert status["default"] == 1 and status["pinned"]
        reply = again.post("/predictions/toy/candidate", data=png(1), headers={"Content-Type": "image/png"})
        assert reply.json()["version"] == 2
        assert again.request("DELETE", "/models/toy/traffic").json()["traffic"] is None
    finally:
        assert again.stop() == 0
