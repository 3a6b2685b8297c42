"""`yyai default` (pin, follow the latest) and `yyai predict`, on a store and on a running server.

A pin must be undoable on every surface (issue #12): REST ``DELETE /models/{m}/default``,
the CLI on a store folder or a live server, and every reply that installs a version says
which version is the default afterwards, and why.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from clirun import yyai
from serving import start_server

ROOT = Path(__file__).resolve().parent.parent
ARCHIVES = ROOT / "model_archives"
SAMPLES = ARCHIVES / "samples"


@pytest.fixture
def store(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    for name in ("digits-1.yyar", "digits-2.yyar"):
        shutil.copy(ARCHIVES / name, folder / name)
    return folder


def _models(store: Path) -> dict:
    return {m["name"]: m for m in json.loads(yyai("models", "--store", store, "--json").stdout)["models"]}


def test_default_pins_and_follows_the_latest_on_a_store(store):
    out = yyai("default", "digits", "1", "--store", store).stdout
    assert "v1 is the default: pinned" in out and "v2 is newer" in out
    assert _models(store)["digits"]["pinned"] and _models(store)["digits"]["default"] == 1
    out = yyai("default", "digits", "--latest", "--store", store).stdout
    assert "v2 is the default: the latest version" in out
    assert not _models(store)["digits"]["pinned"] and _models(store)["digits"]["default"] == 2


def test_default_refuses_what_it_cannot_do(store):
    both = yyai("default", "digits", "1", "--latest", "--store", store, check=False)
    assert both.returncode == 1 and "not both" in both.stderr
    neither = yyai("default", "digits", "--store", store, check=False)
    assert neither.returncode == 1 and "--latest" in neither.stderr
    unknown = yyai("default", "nosuch", "1", "--store", store, check=False)
    assert unknown.returncode == 1 and "nosuch" in unknown.stderr and "Traceback" not in unknown.stderr
    missing = yyai("default", "digits", "7", "--store", store, check=False)
    assert missing.returncode == 1 and "no version 7" in missing.stderr


def test_pin_and_unpin_on_a_running_server(store, tmp_path):
    server = start_server(store, tmp_path / "work")
    try:
        target = ["--server", server.url, "--token", server.token]
        assert "v1 is the default: pinned" in yyai("default", "digits", "1", *target).stdout
        reply = yyai("predict", "digits", SAMPLES / "digit-3.png", *target, "--json").stdout
        assert json.loads(reply)["version"] == 1
        unpinned = server.request("DELETE", "/models/digits/default")
        assert unpinned.status_code == 200, unpinned.text
        body = unpinned.json()
        assert body["pinned"] is False and body["default"] == 2
        assert body["default_reason"] == "v2 is the default: the latest version"
        refused = server.request("PUT", "/models/digits/default", json={"pinned": False})
        assert refused.status_code == 400 and "DELETE /models/digits/default" in refused.json()["error"]
        table = yyai("predict", "digits", SAMPLES / "digit-3.png", SAMPLES / "digit-7.png", *target).stdout
        assert "digits v2" in table and "digit-3.png" in table and "digit-7.png" in table
        assert "3 " in table.split("digit-3.png", 1)[1].splitlines()[0]
        assert "v1 is the default: pinned" in yyai("default", "digits", "1", *target).stdout
        assert "v2 is the default" in yyai("default", "digits", "--latest", *target).stdout
    finally:
        assert server.stop() == 0


def test_an_install_says_which_version_stays_the_default(store, tmp_path):
    (store / "digits-2.yyar").rename(tmp_path / "digits-2.yyar")
    server = start_server(store, tmp_path / "work")
    try:
        assert server.request("PUT", "/models/digits/default", json={"version": 1}).status_code == 200
        with open(tmp_path / "digits-2.yyar", "rb") as archive:
            reply = server.post("/models", data=archive, headers={"Content-Type": "application/octet-stream"})
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert body["model"]["default"] == 1
        assert body["message"].startswith("Installed digits v2, staged") and body["staged"]  # pinned: staged (#23)
        assert "v1 is the default: pinned" in body["message"]
        assert "DELETE /models/digits/default" in body["message"]
    finally:
        assert server.stop() == 0


def test_predict_in_process_on_a_store(store):
    out = yyai("predict", "digits:1", SAMPLES / "digit-3.png", "--store", store, "--top", "2").stdout
    assert "digits v1" in out and "digit-3.png" in out
    refused = yyai("predict", "digits:1.5", SAMPLES / "digit-3.png", "--store", store, check=False)
    assert refused.returncode == 1 and "positive integer" in refused.stderr
    unknown = yyai("predict", "digits:one", SAMPLES / "digit-3.png", "--store", store, check=False)  # a label
    assert unknown.returncode == 1 and "no label 'one'" in unknown.stderr
