"""A newcomer's first hour (issue #12), over HTTP against a real server on the demo archives.

Each test is one surprise a new user met: readiness answers that read like success or
blame the user while the server itself is loading, a typo with no hint, a wrong token
told the same as a missing one, and v2 inputs with no word on preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from builders import demo_store
from serving import start_server

ARCHIVES = Path(__file__).resolve().parent.parent / "model_archives"
PNG = (ARCHIVES / "samples" / "digit-3.png").read_bytes()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return demo_store(tmp_path_factory.mktemp("first-hour-store"), ("digits-1.yyar", "digits-2.yyar"))


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    srv = start_server(store, tmp_path_factory.mktemp("first-hour"))
    yield srv
    assert srv.stop() == 0


def test_during_start_up_models_are_loading_not_missing(store, tmp_path):
    """The first request after the server listens comes while TensorFlow is still being imported:
    it waits for its model's load and answers, saying it was a cold start."""
    # the cold start's deadline well past what TensorFlow's start can take on a busy machine
    srv = start_server(store, tmp_path / "work", wait_ready=False, args=["--cold-start-timeout", "600"])
    try:
        first = srv.post("/predictions/digits", data=PNG, headers={"Content-Type": "image/png"}, timeout=660)
        assert first.status_code == 200, first.text
        assert first.json()["version"] == 2 and float(first.headers["X-Yyai-Cold-Start"]) > 0
        index = srv.post("/v2/repository/index", json={}).json()
        digits2 = next(e for e in index if (e["name"], e["version"]) == ("digits", "2"))
        assert digits2["state"] in ("LOADING", "READY"), digits2
        assert digits2["reason"] != "available"
        ready = srv.get("/v2/health/ready")
        assert ready.status_code in (200, 503)
        if ready.status_code == 503:
            assert "Retry-After" in ready.headers
    finally:
        assert srv.stop() == 0


def test_a_version_that_does_not_serve_says_why(server):
    never = server.get("/v2/models/digits/versions/1/ready")
    assert never.status_code == 503
    message = never.json()["error"]
    assert "not ready" in message and "not loaded" in message and "is available" not in message
    entry = next(e for e in server.post("/v2/repository/index", json={}).json()
                 if (e["name"], e["version"]) == ("digits", "1"))
    assert entry["state"] == "UNAVAILABLE" and entry["reason"].startswith("not loaded")
    assert server.post("/models/digits/load", json={"version": 1}).status_code == 200
    assert server.request("DELETE", "/models/digits/versions/1").status_code == 200
    unloaded = server.get("/v2/models/digits/versions/1/ready")
    assert unloaded.status_code == 503 and "unloaded" in unloaded.json()["error"]


def test_a_typo_in_a_model_name_gets_a_suggestion(server):
    reply = server.post("/predictions/digts", data=PNG, headers={"Content-Type": "image/png"})
    assert reply.status_code == 404 and "Did you mean 'digits'?" in reply.json()["error"]
    far = server.get("/models/zebra")
    assert far.status_code == 404 and "The models are: digits." in far.json()["error"]


def test_a_wrong_token_is_told_apart_from_a_missing_one(server):
    missing = requests.get(server.url + "/models", timeout=30)
    wrong = requests.get(server.url + "/models", headers={"Authorization": "token nope"}, timeout=30)
    assert missing.status_code == wrong.status_code == 401
    assert "Authentication required" in missing.json()["error"]
    assert "Invalid token" in wrong.json()["error"]


def test_v2_says_its_input_is_the_preprocessed_tensor(server):
    meta = server.get("/v2/models/digits").json()
    params = meta["parameters"]
    assert params["preprocessed"] is True and params["scale"] == pytest.approx(1 / 255)
    assert params["color"] == "grayscale" and "/predictions" in params["description"]
    spec = server.get("/openapi.json").json()
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["description"]
    assert "AFTER preprocessing" in infer
