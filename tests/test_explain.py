"""Grad-CAM over REST: ``POST /predictions/{m}[/{v}]?explain=gradcam`` on a real server.

The server serves a copy of the demo archives. Each convolutional member's map must
equal the Keras Grad-CAM recipe computed here, eagerly, on the member loaded straight from
the archive with Keras (the recipe's way: the last layer's softmax switched off on this
test's own copy, a GradientTape over the class score, gradients pooled per channel); the
MLP member says "not available"; a regression model is explained on its output; the
bounds (images per request, requests at once) answer 413 and 429 with messages a person
can act on. The HTTP client and the in-process data plane return the same explanations.
"""

from __future__ import annotations

import base64
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from builders import demo_store
from serving import start_server

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "model_archives"
SAMPLES = DEMO / "samples"
DIGIT = (SAMPLES / "digit-3.png").read_bytes()
MAX_IMAGES = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = demo_store(tmp_path_factory.mktemp("explain-store"))
    srv = start_server(store, tmp_path_factory.mktemp("explain-work"), args=[
        f"--YyaiServer.max_explain_images={MAX_IMAGES}", "--YyaiServer.max_concurrent_explains=1"])
    srv.store = store
    yield srv
    assert srv.stop() == 0


def recipe_heatmap(archive: Path, member: str, layer_name: str, x: np.ndarray, class_index: int, tmp: Path):
    """The Keras Grad-CAM recipe for one image, on the member loaded from the archive by Keras itself."""
    import keras
    import tensorflow as tf

    with zipfile.ZipFile(archive) as zf:
        zf.extract(f"models/{member}.keras", tmp)
    model = keras.saving.load_model(tmp / "models" / f"{member}.keras", compile=False)
    model.layers[-1].activation = None  # the recipe: explain the logits (this copy serves nothing)
    # A loaded Sequential's layer outputs belong to an older build than its inputs, so the
    # cut model is built by calling the layers on a fresh input (the recipe's functional model).
    inputs = keras.Input(x.shape[1:])
    h = inputs
    for layer in model.layers:
        h = layer(h)
        if layer.name == layer_name:
            features_out = h
    grad_model = keras.Model(inputs, [features_out, h])
    with tf.GradientTape() as tape:
        features, preds = grad_model(x)
        class_channel = preds[:, class_index]
    grads = tape.gradient(class_channel, features)
    pooled = tf.reduce_mean(grads, axis=(0, 1, 2))
    heatmap = tf.squeeze(features[0] @ pooled[..., tf.newaxis])
    return (tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)).numpy()


def post(server, path: str, data: bytes = DIGIT, **kwargs):
    headers = {"Content-Type": "image/png", **kwargs.pop("headers", {})}
    return server.post(path, data=data, headers=headers, **kwargs)


def test_conv_members_get_the_recipe_map_and_the_mlp_says_not_available(server, tmp_path):
    from yyai_kernel.archive import read_manifest
    from yyai_kernel.runtime.images import preprocess

    reply = post(server, "/predictions/digits?explain=gradcam")
    assert reply.status_code == 200, reply.text
    row = reply.json()["predictions"][0]
    explanations = row["explanations"]
    assert set(explanations) == {"cnn_a", "mlp", "cnn_wide"}
    assert explanations["mlp"] == {"method": "gradcam", "available": False,
                                   "reason": "not available: this member has no 2-D convolutional layer "
                                             "(Grad-CAM needs one)"}
    archive = server.store / "digits-2.yyar"
    x = preprocess(DIGIT, read_manifest(archive).input)[None]
    for member, layer in (("cnn_a", "conv2d_3"), ("cnn_wide", "conv2d_5")):
        explained = explanations[member]
        assert explained["available"] is True and explained["method"] == "gradcam"
        assert explained["layer"] == layer  # the last convolutional layer, found by itself
        assert explained["label"] == row["top"] == "3"  # the version's answer is what is explained
        expected = recipe_heatmap(archive, member, layer, x, 3, tmp_path)
        np.testing.assert_allclose(np.array(explained["heatmap"]), expected, atol=2e-3)
        overlay = cv2.imdecode(np.frombuffer(base64.b64decode(explained["overlay_png"]), np.uint8), cv2.IMREAD_COLOR)
        assert overlay.shape == (144, 144, 3)  # the 8x8 view, enlarged so that the map reads

    plain = post(server, "/predictions/digits").json()["predictions"][0]
    assert "explanations" not in plain  # the normal path is unchanged
    assert plain["members"] == row["members"] and plain["combined"] == row["combined"]


def test_a_legacy_h5_version_and_several_files(server):
    assert server.post("/models/digits/load", json={"version": 1}).status_code == 200
    files = [("file", ("three.png", DIGIT, "image/png")),
             ("file", ("eight.png", (SAMPLES / "digit-8.png").read_bytes(), "image/png"))]
    reply = server.post("/predictions/digits/1", params={"explain": "gradcam"}, files=files)
    assert reply.status_code == 200, reply.text
    rows = reply.json()["predictions"]
    assert [r["filename"] for r in rows] == ["three.png", "eight.png"]
    for row in rows:
        explained = row["explanations"]["cnn"]
        assert explained["available"] and explained["label"] == row["top"]
        assert np.array(explained["heatmap"]).shape == (8, 8) and max(map(max, explained["heatmap"])) == 1.0


def test_a_regression_model_is_explained_on_its_output(server):
    reply = post(server, "/predictions/colorfulness?explain=gradcam", data=(SAMPLES / "flower-1.png").read_bytes())
    assert reply.status_code == 200, reply.text
    explained = reply.json()["predictions"][0]["explanations"]["cnn"]
    assert explained["available"] and explained["label"] == "colorfulness"
    assert np.array(explained["heatmap"]).shape == (16, 16)


def test_limits_and_bad_methods(server):
    unknown = post(server, "/predictions/digits?explain=lime")
    assert unknown.status_code == 400
    assert unknown.json() == {"error": "Unknown explanation 'lime'; yyai explains with: gradcam, integrated_gradients.",
                              "type": "InvalidInputError", "field": "explain"}
    files = [("file", (f"d{i}.png", DIGIT, "image/png")) for i in range(MAX_IMAGES + 1)]
    too_many = server.post("/predictions/digits", params={"explain": "gradcam"}, files=files)
    assert too_many.status_code == 413
    assert too_many.json()["error"] == (f"Explanations are expensive: at most {MAX_IMAGES} images per explained "
                                        f"request; this one holds {MAX_IMAGES + 1}. Send fewer, or predict "
                                        "without ?explain.")
    assert server.post("/predictions/digits", files=files).status_code == 200  # without explain: the usual limit


def test_concurrent_explanations_past_the_bound_get_429(server):
    """With max_concurrent_explains=1, requests that overlap are refused at once, never queued."""
    files = [("file", (f"d{i}.png", DIGIT, "image/png")) for i in range(MAX_IMAGES)]
    refused = []
    for _round in range(20):  # overlap is likely in one round; a few rounds make it certain enough
        replies, gate = [], threading.Barrier(6)

        def one(gate, replies):
            gate.wait()
            replies.append(server.post("/predictions/digits", params={"explain": "gradcam"}, files=files))

        threads = [threading.Thread(target=one, args=(gate, replies)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {r.status_code for r in replies} <= {200, 429}
        assert any(r.status_code == 200 for r in replies)
        refused += [r for r in replies if r.status_code == 429]
        if refused:
            break
    assert refused, "six simultaneous explanations never overlapped"
    assert refused[0].headers["Retry-After"] == "1"
    assert refused[0].json()["error"] == "1 explanations are running already; retry in a moment."


def test_the_client_and_the_in_process_data_plane_agree(server):
    from yyai_kernel.client import YyaiClient
    from yyai_kernel.plane.local import LocalBackend
    from yyai_kernel.registry.registry import Registry
    from yyai_kernel.store.store import ModelStore

    client = YyaiClient(server.url, server.token)
    over_http = client.predict_images("digits", [DIGIT], 2, explain="gradcam")
    registry = Registry(ModelStore(server.store), batching=False)
    try:
        registry.load("digits", 2)
        in_process = LocalBackend.over(registry).predict_images("digits", [DIGIT], 2, explain="gradcam")
    finally:
        registry.close()
    for prediction in (over_http, in_process):
        assert [e.available for e in prediction.explanations[0].values()] == [True, False, True]
    for member in ("cnn_a", "cnn_wide"):
        a, b = over_http.explanations[0][member], in_process.explanations[0][member]
        assert (a.layer, a.label) == (b.layer, b.label)
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-4)
        assert a.overlay_png.startswith(b"\x89PNG")
    assert client.predict_images("digits", [DIGIT]).explanations is None
