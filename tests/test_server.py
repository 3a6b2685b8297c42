"""``yyai serve`` end to end: a real server process over a store of real archives.

Covers the route order (REST before Voila's catch-all), auth, every error code, the
image and v2 JSON endpoints against the Keras models run here, upload -> pin -> promote
-> predict with no restart, the v2 repository API, /metrics, the OpenAPI document
against the live routes, the dashboard page, the HTTP client, the dashboard kernel's
environment, and a clean SIGTERM shut-down.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import psutil
import pytest
import requests
from builders import LABELS, install, pack_models, reference
from serving import start_server

KiB = 1024
MiB = 1024 * KiB
LIMITS = ["--max-body-bytes", str(256 * KiB), "--max-archive-bytes", str(4 * MiB), "--max-image-pixels", "10000"]


def png(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
    assert ok
    return buffer.tobytes()


def gray_images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (4, 4), dtype=np.uint8) for _ in range(n)]


def as_input(images: list[np.ndarray]) -> np.ndarray:
    return np.stack([img.astype(np.float32)[:, :, None] / 255.0 for img in images])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("server-built")
    archives = {}
    for key, name, version, seeds in [
        ("alpha", "alpha", 1, [1, 2]),
        ("gamma1", "gamma", 1, [4]),
        ("gamma2", "gamma", 2, [5]),
        ("gamma3", "gamma", 3, [6]),
    ]:
        path, models = pack_models(root, name, version, seeds)
        archives[key] = SimpleNamespace(path=path, models=models)
    archives["beta"] = _pack_with_sample(root)
    return archives


SAMPLE_PNG = None


def _pack_with_sample(root: Path) -> SimpleNamespace:
    """beta v1: one member, and a bundled sample image."""
    global SAMPLE_PNG  # noqa: PLW0603 - set once by the module's fixture
    from builders import INPUT_SPEC, tiny_classifier

    from yyai_kernel.archive import pack

    work = root / "beta-build"
    work.mkdir()
    model = tiny_classifier(3)
    model.save(work / "m3.keras")
    SAMPLE_PNG = png(gray_images(1, seed=42)[0])
    (work / "0.png").write_bytes(SAMPLE_PNG)
    path = pack(name="beta", version=1, models=[work / "m3.keras"], input_spec=INPUT_SPEC,
                output_spec={"kind": "classification", "labels": LABELS},
                extra_files=[(work / "0.png", "samples/0.png", "sample")], out_dir=work)
    return SimpleNamespace(path=path, models=[model])


@pytest.fixture(scope="module")
def store(built, tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    for key in ("alpha", "beta", "gamma1"):
        install(built[key].path, folder)
    return folder


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    srv = start_server(store, tmp_path_factory.mktemp("server-work"), args=LIMITS)
    yield srv
    assert srv.stop() == 0


def assert_json_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json")
    assert "Traceback" not in response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    return body


def assert_healthy(server) -> None:
    """The server still answers a good prediction after a refusal."""
    image = png(gray_images(1, seed=99)[0])
    reply = server.post("/predictions/alpha", data=image, headers={"Content-Type": "image/png"})
    assert reply.status_code == 200, reply.text


# --- the route order -------------------------------------------------------------------


def _app(tmp_path, args=()):
    from types import SimpleNamespace

    from yyai_kernel.api.table import all_endpoints
    from yyai_kernel.server.app import YyaiServer

    app = YyaiServer()
    app.initialize(["--store", str(tmp_path), "--token", "t", *args])
    app.rest_api = SimpleNamespace(endpoints=all_endpoints())  # the routes, without building the planes
    app.init_settings()
    return app


def _first_rule(handlers, path):
    from tornado.httputil import HTTPServerRequest
    from tornado.web import Application

    application = Application(handlers)
    request = HTTPServerRequest(method="GET", uri=path)
    for rule in application.wildcard_router.rules:
        if rule.matcher.match(request) is not None:
            return rule
    return None


def _first_match(handlers, path):
    rule = _first_rule(handlers, path)
    return None if rule is None else rule.target


def test_rest_routes_come_before_voilas_catch_all(tmp_path):
    from voila.app import Voila
    from voila.tornado.handler import TornadoVoilaHandler

    app = _app(tmp_path)
    handlers = app.init_handlers()
    patterns = [h[0] for h in handlers]
    catch_all = patterns.index("/(.*)")
    assert issubclass(handlers[catch_all][1], TornadoVoilaHandler)  # Voila's page (it starts the dashboard kernel)
    rest = app.rest_handlers()
    assert rest and all(patterns.index(h[0]) < catch_all for h in rest)
    for path in ("/models", "/models/alpha", "/v2/models/alpha/infer", "/predictions/alpha", "/metrics",
                 "/openapi.json", "/v2/no/such/thing"):
        assert not issubclass(_first_match(handlers, path), TornadoVoilaHandler), path
    assert issubclass(_first_match(handlers, "/"), TornadoVoilaHandler)
    # Appended after Voila's routes, as a naive extension would do, they are never reached:
    naive = Voila.init_handlers(app) + rest
    assert _first_match(naive, "/models") is TornadoVoilaHandler


def test_rest_answers_json_and_unknown_rest_paths_are_json_404(server):
    reply = server.get("/models")
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("application/json")
    assert {m["name"] for m in reply.json()} == {"alpha", "beta", "gamma"}
    assert "No such endpoint" in assert_json_error(server.get("/v2/nothing/here"), 404)["error"]
    assert_json_error(server.request("PATCH", "/models"), 405)


# --- auth ------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/v2"), ("GET", "/v2/health/live"), ("GET", "/v2/health/ready"), ("GET", "/v2/models/alpha"),
    ("GET", "/v2/models/alpha/ready"), ("POST", "/v2/models/alpha/infer"), ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/alpha/load"), ("POST", "/v2/repository/models/alpha/unload"),
    ("POST", "/predictions/alpha"), ("POST", "/predictions/alpha/1"), ("GET", "/models"), ("POST", "/models"),
    ("POST", "/models/_rescan"), ("GET", "/models/alpha"), ("POST", "/models/alpha/load"),
    ("POST", "/models/alpha/reload"), ("PUT", "/models/alpha/default"), ("GET", "/models/alpha/versions/1"),
    ("DELETE", "/models/alpha/versions/1"), ("GET", "/metrics"), ("GET", "/openapi.json"),
    ("GET", "/models/_status"), ("GET", "/models/alpha/samples"), ("GET", "/models/alpha/samples/samples%2F0.png"),
]
WRONG_PLACES = [
    {},
    {"Authorization": "token wrong-token"},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": "Basic test-token"},
    {"X-Token": "test-token"},
    {"Cookie": "token=test-token"},
]


@pytest.mark.parametrize("method, path", ENDPOINTS)
def test_every_endpoint_refuses_a_missing_wrong_or_misplaced_token(server, method, path):
    for headers in WRONG_PLACES:
        body = assert_json_error(
            server.request(method, path, auth=False, headers=headers, data=b"x"), 401
        )
        assert "token" in body["error"].lower()
    response = server.request(method, path, auth=False, params={"token": "wrong"}, data=b"x")
    assert response.status_code == 401
    assert server.get("/v2/models/alpha", auth=False, params={"token": "wrong"}).status_code == 401


def test_the_token_works_in_the_header_as_bearer_and_in_the_query(server):
    assert server.get("/models", auth=False, headers={"Authorization": "token test-token"}).status_code == 200
    assert server.get("/models", auth=False, headers={"Authorization": "Bearer test-token"}).status_code == 200
    assert server.get("/models", auth=False, params={"token": "test-token"}).status_code == 200
    reply = server.post("/predictions/alpha", auth=False, params={"token": "test-token"},
                        data=png(gray_images(1)[0]), headers={"Content-Type": "image/png"})
    assert reply.status_code == 200


def test_dashboard_needs_the_token(server):
    page = server.get("/", auth=False, params={"token": "test-token"})
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "yyai" in page.text
    refused = server.get("/", auth=False, allow_redirects=False)
    assert refused.status_code in (302, 401, 403)
    assert "yyai" not in refused.text or refused.status_code != 200


# --- predictions -------------------------------------------------------------------------


def test_raw_png_prediction_matches_keras(server, built):
    image = gray_images(1, seed=1)[0]
    reply = server.post("/predictions/alpha", data=png(image), headers={"Content-Type": "image/png"},
                        params={"raw": "true"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "alpha" and body["version"] == 1 and len(body["predictions"]) == 1
    row = body["predictions"][0]
    expected = reference(built["alpha"].models, as_input([image]))
    np.testing.assert_allclose(row["raw"]["combined"], expected["combined"][0], atol=1e-5)
    for member, out in zip(["m1", "m2"], expected["members"]):
        np.testing.assert_allclose(row["raw"]["members"][member], out[0], atol=1e-5)
        probabilities = [p["probability"] for p in row["members"][member]]
        assert probabilities == sorted(probabilities, reverse=True)
    assert row["top"] == LABELS[int(np.argmax(expected["combined"][0]))]
    assert row["combined"][0]["label"] == row["top"]


def test_multipart_upload_of_several_images(server, built):
    images = gray_images(3, seed=2)
    files = [("file", (f"img{i}.png", png(img), "image/png")) for i, img in enumerate(images)]
    reply = server.post("/predictions/alpha/1", files=files, params={"raw": "1"})
    assert reply.status_code == 200, reply.text
    rows = reply.json()["predictions"]
    assert [r["filename"] for r in rows] == ["img0.png", "img1.png", "img2.png"]
    expected = reference(built["alpha"].models, as_input(images))["combined"]
    np.testing.assert_allclose([r["raw"]["combined"] for r in rows], expected, atol=1e-5)


def test_v2_json_infer_matches_keras(server, built):
    x = as_input(gray_images(2, seed=3))
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]}
    reply = server.post("/v2/models/alpha/infer", json=body)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert list(outputs) == ["output", "m1", "m2"]
    expected = reference(built["alpha"].models, x)
    np.testing.assert_allclose(np.reshape(outputs["output"]["data"], (2, 3)), expected["combined"], atol=1e-5)
    np.testing.assert_allclose(np.reshape(outputs["m2"]["data"], (2, 3)), expected["members"][1], atol=1e-5)


def test_v2_metadata_describes_inputs_and_outputs(server):
    meta = server.get("/v2/models/alpha").json()
    assert meta["name"] == "alpha" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4, 4, 1]}]
    assert [(o["name"], o["shape"]) for o in meta["outputs"]] == [("output", [-1, 3]), ("m1", [-1, 3]), ("m2", [-1, 3])]
    assert server.get("/v2/models/alpha/versions/1").json()["versions"] == ["1"]
    assert server.get("/v2").json()["extensions"] == ["binary_tensor_data", "model_repository"]
    # The Open Inference Protocol's JSON bodies: KServe's REST client reads them.
    expected = {"/v2/health/live": {"live": True}, "/v2/health/ready": {"ready": True},
                "/v2/models/alpha/ready": {"name": "alpha", "ready": True},
                "/v2/models/alpha/versions/1/ready": {"name": "alpha", "ready": True}}
    for path, body in expected.items():
        reply = server.get(path)
        assert reply.status_code == 200 and reply.json() == body, path


# --- errors ----------------------------------------------------------------------------

INFER_OK = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4, 4, 1], "data": [0.5] * 16}]}

AS_PNG = {"headers": {"Content-Type": "image/png"}}
AS_BYTES = {"headers": {"Content-Type": "application/octet-stream"}}
AS_TEXT = {"headers": {"Content-Type": "text/plain"}}
TINY_PNG = png(np.zeros((4, 4), np.uint8))


def _infer(**changes):
    tensor = {**INFER_OK["inputs"][0], **changes}
    return {"inputs": [tensor]}


ERROR_CASES = [
    # 400: bad input
    ("400 empty image body", "POST", "/predictions/alpha", {"data": b"", **AS_PNG}, 400),
    ("400 not an image", "POST", "/predictions/alpha", {"data": b"hello world", **AS_PNG}, 400),
    ("400 truncated png", "POST", "/predictions/alpha", {"data": TINY_PNG[:40], **AS_PNG}, 400),
    ("400 multipart without files", "POST", "/predictions/alpha", {"files": {"field": (None, "value")}}, 400),
    ("400 version not a number", "POST", "/predictions/alpha/One", {"data": b"x", **AS_PNG}, 400),
    ("400 version zero", "GET", "/v2/models/alpha/versions/0", {}, 400),
    ("400 name with ../", "GET", "/models/..%2Fetc", {}, 400),
    ("400 name with uppercase", "GET", "/v2/models/ALPHA", {}, 400),
    ("400 infer not json", "POST", "/v2/models/alpha/infer", {"data": b"{nope"}, 400),
    ("400 infer wrong shape", "POST", "/v2/models/alpha/infer", {"json": _infer(shape=[1, 16], data=[0.5] * 16)}, 400),
    ("400 infer wrong count", "POST", "/v2/models/alpha/infer", {"json": _infer(data=[0.5] * 15)}, 400),
    ("400 infer BYTES", "POST", "/v2/models/alpha/infer", {"json": _infer(datatype="BYTES")}, 400),
    ("400 infer NaN", "POST", "/v2/models/alpha/infer",
     {"data": json.dumps(_infer(data=[float("nan")] * 16)).encode()}, 400),
    ("400 infer wrong input name", "POST", "/v2/models/alpha/infer", {"json": _infer(name="pixels")}, 400),
    ("400 default without version", "PUT", "/models/alpha/default", {"json": {}}, 400),
    ("400 default version is text", "PUT", "/models/alpha/default", {"json": {"version": "two"}}, 400),
    ("400 load with config override", "POST", "/v2/repository/models/alpha/load",
     {"json": {"parameters": {"config": "{}"}}}, 400),
    ("400 load with file override", "POST", "/v2/repository/models/alpha/load",
     {"json": {"parameters": {"file:1/model.py": "cHJpbnQoMSk="}}}, 400),
    ("400 upload not a zip", "POST", "/models", {"data": b"not a zip", **AS_BYTES}, 400),
    ("400 upload empty", "POST", "/models", {"data": b"", **AS_BYTES}, 400),
    # 404: unknown model or version
    ("404 unknown model image", "POST", "/predictions/nosuch", {"data": TINY_PNG, **AS_PNG}, 404),
    ("404 unknown version image", "POST", "/predictions/alpha/9", {"data": TINY_PNG, **AS_PNG}, 404),
    ("404 unknown model metadata", "GET", "/v2/models/nosuch", {}, 404),
    ("404 unknown version metadata", "GET", "/v2/models/alpha/versions/9", {}, 404),
    ("404 unknown model infer", "POST", "/v2/models/nosuch/infer", {"json": INFER_OK}, 404),
    ("404 unknown model status", "GET", "/models/nosuch", {}, 404),
    ("404 unknown version delete", "DELETE", "/models/alpha/versions/9", {}, 404),
    # 413: too large
    ("413 body over the limit", "POST", "/predictions/alpha", {"data": bytes(300 * KiB), **AS_PNG}, 413),
    ("413 image over the pixel limit", "POST", "/predictions/alpha",
     {"data": png(np.zeros((200, 200), np.uint8)), **AS_PNG}, 413),
    ("413 infer body over the limit", "POST", "/v2/models/alpha/infer", {"data": bytes(300 * KiB)}, 413),
    ("413 archive over the limit", "POST", "/models", {"data": bytes(5 * MiB), **AS_BYTES}, 413),
    # 415: unsupported media
    ("415 text to predictions", "POST", "/predictions/alpha", {"data": b"x", **AS_TEXT}, 415),
    ("415 no content type", "POST", "/predictions/alpha", {"data": b"x"}, 415),
    ("415 json archive", "POST", "/models", {"json": {"path": "/etc/passwd"}}, 415),
]


@pytest.mark.parametrize("case, method, path, kwargs, status", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_codes_are_json_and_leave_the_server_healthy(server, store, case, method, path, kwargs, status):
    before = sorted(p.name for p in store.iterdir())
    body = assert_json_error(server.request(method, path, **kwargs), status)
    assert "Traceback" not in json.dumps(body)
    assert sorted(p.name for p in store.iterdir()) == before
    assert_healthy(server)


def test_no_endpoint_reads_a_path_the_client_names(server):
    for reply in (
        server.post("/predictions/alpha", params={"imgPath": "/etc/passwd"}, json={"imgPath": "/etc/passwd"}),
        server.post("/models", json={"path": "/etc/passwd"}),
        server.post("/v2/repository/models/alpha/load", json={"parameters": {"file:/etc/passwd": "eA=="}}),
    ):
        assert reply.status_code in (400, 415)
        assert "root:" not in reply.text


def test_unloaded_model_is_503_then_loads_again(server):
    image = png(gray_images(1)[0])
    assert server.post("/v2/repository/models/beta/unload", json={}).status_code == 200
    assert_json_error(server.post("/predictions/beta", data=image, headers={"Content-Type": "image/png"}), 503)
    assert_json_error(server.get("/v2/models/beta/ready"), 503)
    index = server.post("/v2/repository/index", json={}).json()
    assert {"name": "beta", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"} in index
    assert {"name": "beta", "version": "1", "state": "READY", "reason": ""} not in index
    assert server.post("/v2/repository/models/beta/load", json={}).status_code == 200
    assert server.get("/v2/models/beta/ready").status_code == 200
    ready = server.post("/v2/repository/index", json={"ready": True}).json()
    assert {"name": "beta", "version": "1", "state": "READY", "reason": ""} in ready
    assert all(e["state"] == "READY" for e in ready)
    assert server.post("/predictions/beta", data=image, headers={"Content-Type": "image/png"}).status_code == 200


# --- management --------------------------------------------------------------------------


def test_upload_pin_promote_and_predict_without_restart(server, store, built):
    image = gray_images(1, seed=5)[0]
    x = as_input([image])

    def predict():
        reply = server.post("/predictions/gamma", data=png(image), headers={"Content-Type": "image/png"},
                            params={"raw": "true"})
        assert reply.status_code == 200, reply.text
        return reply.json()

    pid = server.proc.pid
    pinned = server.request("PUT", "/models/gamma/default", json={"version": 1})
    assert pinned.status_code == 200 and pinned.json()["pinned"] is True

    upload = server.post("/models", data=built["gamma2"].path.read_bytes(),
                         headers={"Content-Type": "application/octet-stream"})
    assert upload.status_code == 201, upload.text
    assert (upload.json()["name"], upload.json()["version"]) == ("gamma", 2)
    assert upload.json()["model"]["versions"]["2"]["state"] == "ready"
    assert (store / "gamma-2.yyar").is_file()
    assert predict()["version"] == 1  # pinned to 1: the upload does not change what answers

    promoted = server.request("PUT", "/models/gamma/default", json={"version": 2})
    assert promoted.status_code == 200 and promoted.json()["default"] == 2
    answer = predict()
    assert answer["version"] == 2
    expected = reference(built["gamma2"].models, x)["combined"][0]
    np.testing.assert_allclose(answer["predictions"][0]["raw"]["combined"], expected, atol=1e-5)

    with open(built["gamma3"].path, "rb") as f:
        multipart = server.post("/models", files={"archive": ("gamma-3.yyar", f, "application/octet-stream")})
    assert multipart.status_code == 201, multipart.text
    assert multipart.json()["version"] == 3
    before = sorted(p.name for p in store.iterdir())
    same = server.post("/models", data=built["gamma3"].path.read_bytes(),
                       headers={"Content-Type": "application/octet-stream"})
    assert same.status_code == 200 and same.json()["changed"] is False  # the same content: nothing changed
    assert sorted(p.name for p in store.iterdir()) == before
    assert predict()["version"] == 2  # still pinned to 2

    described = server.get("/models/gamma/versions/3").json()
    assert described["version"] == 3 and described["members"] == ["m6"] and described["status"]["state"] == "ready"

    unloaded = server.request("DELETE", "/models/gamma/versions/3")
    assert unloaded.status_code == 200 and unloaded.json()["versions"]["3"]["state"] == "unloaded"
    assert (store / "gamma-3.yyar").is_file()
    assert_json_error(server.post("/predictions/gamma/3", data=png(image), headers={"Content-Type": "image/png"}), 503)
    purged = server.request("DELETE", "/models/gamma/versions/3", params={"purge": "true"})
    assert purged.status_code == 200 and "3" not in purged.json()["versions"]
    assert not (store / "gamma-3.yyar").exists()
    assert next(m for m in server.get("/models").json() if m["name"] == "gamma")["versions"] == [1, 2]

    reloaded = server.post("/models/gamma/reload")
    assert reloaded.status_code == 200 and reloaded.json()["versions"]["2"]["state"] == "ready"
    assert server.post("/models/_rescan").status_code == 200
    assert server.proc.pid == pid and server.proc.poll() is None  # no restart


# --- metrics and OpenAPI -----------------------------------------------------------------


def _samples(text: str) -> list:
    from prometheus_client.parser import text_string_to_metric_families

    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _value(samples, name: str, **labels) -> float | None:
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def test_metrics_count_requests_by_model_version_and_code(server):
    image = png(gray_images(1)[0])
    server.post("/predictions/alpha", data=image, headers={"Content-Type": "image/png"})
    server.post("/predictions/nosuch-model", data=image, headers={"Content-Type": "image/png"})
    reply = server.get("/metrics")
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/plain")
    assert "nosuch-model" not in reply.text  # unknown names never become labels
    samples = _samples(reply.text)
    assert _value(samples, "yyai_http_requests_total", endpoint="predictions", model="alpha", version="1",
                  code="200") >= 1
    assert _value(samples, "yyai_http_requests_total", endpoint="predictions", model="", version="", code="404") >= 1
    assert _value(samples, "yyai_http_request_duration_seconds_count", endpoint="predictions", model="alpha") >= 1
    assert _value(samples, "yyai_model_loaded", model="alpha", version="1") == 1.0
    assert _value(samples, "yyai_model_state", model="alpha", version="1", state="ready") == 1.0
    assert _value(samples, "yyai_model_load_seconds", model="alpha", version="1") > 0
    assert _value(samples, "yyai_model_batch_size_count", model="alpha", version="1") >= 1
    assert _value(samples, "yyai_model_batch_size_bucket", model="alpha", version="1", le="+Inf") >= 1
    assert _value(samples, "yyai_model_predictions_total", model="alpha", version="1") >= 1
    assert _value(samples, "yyai_model_default_version", model="alpha") == 1
    assert _value(samples, "yyai_models_loaded") >= 2


def _sample(path: str) -> str:
    return path.replace("{name}", "nosuch").replace("{version}", "1").replace("{sample}", "x.png")


def test_openapi_is_valid_and_covers_exactly_the_rest_routes(server, tmp_path):
    from openapi_spec_validator import validate

    spec = server.get("/openapi.json").json()
    validate(spec)
    app = _app(tmp_path)
    routes = [(pattern, kwargs["endpoints"])
              for pattern, _handler, kwargs in app.rest_handlers() if kwargs["endpoints"]]
    handlers = app.init_handlers()
    methods_of = {}
    for path, operations in spec["paths"].items():
        rule = _first_rule(handlers, _sample(path))
        assert rule is not None and rule.target_kwargs.get("endpoints"), path
        for method in operations:
            assert method.upper() in rule.target_kwargs["endpoints"], (path, method)
        methods_of[path] = set(operations)
    for pattern, endpoints in routes:
        documented = [p for p in spec["paths"] if re.fullmatch(pattern, _sample(p))]
        assert documented, f"route {pattern} is not in the OpenAPI document"
        for method in endpoints:
            assert any(method.lower() in methods_of[p] for p in documented), (pattern, method)
    # Live: every documented operation reaches its handler (a JSON reply, never the dashboard).
    for path, operations in spec["paths"].items():
        for method in operations:
            if method == "delete":
                continue  # covered above; deleting nosuch is a 404 from the handler either way
            reply = server.request(method.upper(), _sample(path), data=b"")
            assert reply.status_code != 405, (method, path)
            assert "text/html" not in reply.headers.get("Content-Type", ""), (method, path)
            if reply.status_code == 404:
                assert "No such endpoint" not in reply.text, (method, path)


# --- the client --------------------------------------------------------------------------


def test_client_has_the_registry_methods_over_http(server, built):
    from yyai_kernel import errors
    from yyai_kernel.client import YyaiClient

    client = YyaiClient(server.url, server.token)
    assert set(client.names()) >= {"alpha", "beta", "gamma"}
    assert client.status("alpha")["versions"]["1"]["state"] == "ready"
    assert set(client.status()["models"]) >= {"alpha", "beta"}
    described = client.describe("alpha")
    assert described["members"] == ["m1", "m2"] and described["output"]["labels"] == LABELS
    x = as_input(gray_images(3, seed=7))
    expected = reference(built["alpha"].models, x)
    got = client.predict("alpha", x)
    assert got.version == 1 and list(got.members) == ["m1", "m2"]
    np.testing.assert_allclose(got.combined, expected["combined"], atol=1e-6)
    np.testing.assert_allclose(got.members["m1"], expected["members"][0], atol=1e-6)
    images = gray_images(2, seed=8)
    from_images = client.predict_images("alpha", [png(i) for i in images])
    np.testing.assert_allclose(from_images.combined, reference(built["alpha"].models, as_input(images))["combined"],
                               atol=1e-5)
    assert from_images.rows()[0]["combined"][0]["label"] in LABELS
    assert client.ready() is True
    full = client.status()
    assert set(full["models"]) >= {"alpha", "beta"} and full["problems"] == []
    assert client.samples("beta") == ["samples/0.png"] and client.samples("beta", 1) == ["samples/0.png"]
    assert client.sample("beta", "samples/0.png") == SAMPLE_PNG
    assert client.samples("alpha") == []
    for bad in ("samples/1.png", "../../../../etc/passwd", "/etc/passwd", "MANIFEST.json", "models/m3.keras"):
        with pytest.raises(errors.ModelNotFoundError):
            client.sample("beta", bad)
    with pytest.raises(errors.ModelNotFoundError):
        client.predict("nosuch", x)
    with pytest.raises(errors.InvalidInputError):
        client.predict("alpha", np.zeros((1, 3, 3, 1), np.float32))
    assert client.add_archive(built["alpha"].path).changed is False  # the same archive again: a no-op
    with pytest.raises(errors.AuthError):
        YyaiClient(server.url, "wrong").list()
    with pytest.raises(errors.ServerUnavailableError):
        YyaiClient("http://127.0.0.1:9", "x", timeout=5).list()


def test_client_imports_no_tensorflow():
    code = "import sys, yyai_kernel.client; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- processes: the kernel's environment, --no-token, shut-down --------------------------

KERNEL_CHECK = {
    "cells": [{
        "cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
        "source": [
            "import os, sys, time\n",
            "from yyai_kernel.client import YyaiClient\n",
            "client = YyaiClient()\n",
            "# a preheated kernel runs this as the server starts: wait for the start-up load\n",
            "deadline = time.monotonic() + 60\n",
            "while not client.ready() and time.monotonic() < deadline:\n",
            "    time.sleep(0.2)\n",
            "print('CHECK', os.environ['YYAI_URL'], os.environ['YYAI_TOKEN'], client.ready(), client.names(),\n",
            "      'tensorflow' in sys.modules)\n",
        ],
    }],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def test_dashboard_kernel_reaches_the_rest_api_and_sigterm_cleans_up(tmp_path):
    store = tmp_path / "empty-store"
    store.mkdir()
    notebook = tmp_path / "check.ipynb"
    notebook.write_text(json.dumps(KERNEL_CHECK))
    srv = start_server(store, tmp_path / "work", token="kernel-token", args=["--notebook", str(notebook)],
                       dashboard=True)
    try:
        page = srv.get("/", auth=False, params={"token": "kernel-token"})
        assert page.status_code == 200
        assert f"CHECK {srv.url} kernel-token True [] False" in page.text
        srv.wait_for_log("Using pre-heated kernel")  # the page took a kernel that ran the notebook before
        kernels = [p for p in psutil.Process(srv.proc.pid).children(recursive=True)
                   if "ipykernel" in " ".join(p.cmdline())]
        assert kernels, "visiting the dashboard started no kernel"
        log = srv.log()
        connection_dir = re.search(r"Storing connection files in (\S+?)\.?$", log, re.MULTILINE).group(1)
        tmp_dir = re.search(r"Temporary files in (\S+)", log).group(1)
        assert Path(connection_dir).is_dir() and Path(tmp_dir).is_dir()
    finally:
        code = srv.stop()
    assert code == 0
    assert "yyai stopped" in srv.log()
    _gone, alive = psutil.wait_procs(kernels, timeout=10)
    assert not alive, "kernels outlived the server"
    assert not Path(connection_dir).exists() and not Path(tmp_dir).exists()


def test_no_token_prints_a_loud_warning(tmp_path):
    store = tmp_path / "empty-store"
    store.mkdir()
    srv = start_server(store, tmp_path / "work", token=None)
    try:
        assert "AUTHENTICATION IS OFF" in srv.log()
        assert srv.get("/models").status_code == 200
        assert srv.post("/models/_rescan").status_code == 200  # scripts need no XSRF token
        cross_site = srv.post("/models/_rescan",
                              headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
        assert_json_error(cross_site, 403)
        assert cross_site.headers.get("Connection") == "close"  # refused before its body was read
        rebinding = srv.get("/models", headers={"Host": "evil.example"})
        assert rebinding.status_code == 403
    finally:
        assert srv.stop() == 0


# --- configuration -----------------------------------------------------------------------


def test_defaults_config_file_and_command_line(tmp_path):
    from yyai_kernel.server.app import YyaiServer

    app = YyaiServer()
    app.initialize(["--store", str(tmp_path)])
    assert (app.ip, app.port, app.token, app.auto_token) == ("127.0.0.1", 8866, None, True)
    assert app.max_body_bytes == 64 * MiB and app.batching is True and app.trusted == []
    assert app.config.MappingKernelManager.cull_idle_timeout == 600
    assert app.config.VoilaExecutor.timeout == 120
    assert app.voila_configuration.show_tracebacks is False
    assert app.voila_configuration.multi_kernel_manager_class.__name__ == "YyaiKernelManager"
    # yyai's page (Voila's without CDN links) comes first; the notebook app's lab extension and
    # the code-cell styles (a page with no code cells) stay out; one kernel waits preheated
    assert app.template_paths[0].endswith("server/templates")
    assert app.voila_configuration.extension_denylist == ["@jupyter-notebook/lab-extension", "jupyterlab_pygments"]
    assert app.voila_configuration.preheat_kernel is True and app.voila_configuration.default_pool_size == 1
    assert app.tornado_settings["websocket_max_message_size"] == 65 * MiB
    assert app.notebook_path.endswith("dashboard.ipynb")

    config = tmp_path / "yyai_config.py"
    config.write_text(
        "c.YyaiServer.max_body_bytes = 1234\n"
        "c.YyaiServer.port = 9999\n"
        "c.MappingKernelManager.cull_idle_timeout = 42\n"
        "c.VoilaExecutor.timeout = 7\n"
    )
    app = YyaiServer()
    app.initialize(["--config", str(config), "--port", "8000", "--no-token", "--no-batching", "--watch",
                    "--trust", "a", "--trust", "b", "--max-batch-size", "4", "--max-delay-ms", "1.5",
                    "--store", str(tmp_path), "--host", "0.0.0.0"])
    assert app.max_body_bytes == 1234 and app.port == 8000  # the command line wins over the file
    assert app.config.MappingKernelManager.cull_idle_timeout == 42 and app.config.VoilaExecutor.timeout == 7
    assert app.token == "" and app.batching is False and app.watch is True
    assert app.trusted == ["a", "b"] and app.max_batch_size == 4 and app.max_delay_ms == 1.5
    assert app.ip == "0.0.0.0"


def test_temp_folders_of_dead_servers_are_swept(tmp_path):
    import tempfile

    from yyai_kernel.server.startup import TMP_PREFIX, sweep_stale_temp_dirs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{int(dead.stdout)}-"))
    (stale / "upload-1.part").write_bytes(b"half an archive")
    live = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{psutil.Process().ppid()}-"))
    try:
        assert stale in sweep_stale_temp_dirs()
        assert not stale.exists() and live.exists()
    finally:
        import shutil

        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)
