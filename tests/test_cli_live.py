"""The CLI on a running server (issue #23): ``yyai models``, ``upload``, ``load``, ``unload``,
``reload``, ``remove`` over ``--server``/``--token`` or ``YYAI_URL``/``YYAI_TOKEN``, and each
interface's words for the same next step: the REST reply names routes, the CLI commands.

One real ``yyai serve`` over a copy of digits v1; the CLI in-process (``clirun.py``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import clirun
import pytest
from serving import start_server

ROOT = Path(__file__).resolve().parent.parent
ARCHIVES = ROOT / "model_archives"
SAMPLE = ARCHIVES / "samples" / "digit-3.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("live-store")
    shutil.copy(ARCHIVES / "digits-1.yyar", store)
    srv = start_server(store, tmp_path_factory.mktemp("live-work"))
    yield srv
    assert srv.stop() == 0


def yyai(server, *args, check: bool = True) -> subprocess.CompletedProcess:
    """``yyai ARGS`` aimed at the server through YYAI_URL and YYAI_TOKEN (in-process: ``clirun.py``)."""
    return clirun.yyai(*args, check=check, env={"YYAI_URL": server.url, "YYAI_TOKEN": server.token})


def test_models_upload_and_the_default_on_a_server(server):
    listed = json.loads(yyai(server, "models", "--json").stdout)
    assert listed["server"] == server.url
    assert [(m["name"], m["versions"], m["loaded"]) for m in listed["models"]] == [("digits", [1], [1])]

    installed = yyai(server, "upload", ARCHIVES / "digits-2.yyar").stdout
    assert f"installed digits v2 on {server.url}; v2 is the default: the latest version" in installed
    table = yyai(server, "models").stdout
    assert f"models on {server.url}" in table and "loaded" in table

    pinned = yyai(server, "default", "digits", "1").stdout
    assert pinned.strip() == "digits: v1 is the default: pinned (v2 is newer); " \
                             "`yyai default digits --latest` follows the latest again"
    body = server.get("/models/digits").json()  # the same fact over REST, in REST's words and as data
    assert body["default_reason"] == "v1 is the default: pinned (v2 is newer); " \
                                     "DELETE /models/digits/default follows the latest again"
    assert body["default_why"] == {"why": "pinned", "name": "digits", "default": 1, "latest": 2}
    assert yyai(server, "default", "digits", "--latest").stdout == "digits: v2 is the default: the latest version\n"


def test_an_unloaded_version_says_how_to_load_it_in_each_interface(server):
    yyai(server, "upload", ARCHIVES / "digits-2.yyar", check=False)  # when this test runs alone
    unloaded = yyai(server, "unload", "digits", "2").stdout
    assert "unloaded digits v2 (the archive stays; `yyai load digits 2` serves it again)" in unloaded

    refused = yyai(server, "predict", "digits:2", SAMPLE, check=False)
    assert refused.returncode == 1
    assert "Model 'digits' version 2 was unloaded; load it with `yyai load digits 2`." in refused.stderr
    assert "POST" not in refused.stderr
    reply = server.post("/predictions/digits/2", data=SAMPLE.read_bytes(), headers={"Content-Type": "image/png"})
    assert reply.status_code == 503
    assert reply.json()["error"] == ("Model 'digits' version 2 was unloaded; "
                                     'load it with POST /models/digits/load {"version": 2}.')
    assert reply.json()["hints"] == [{"step": "load", "name": "digits", "version": 2}]

    loaded = yyai(server, "load", "digits", "2").stdout
    assert loaded.startswith("loaded digits v2") and "digits: loaded v1, v2" in loaded
    assert "digits v2" in yyai(server, "predict", "digits:2", SAMPLE).stdout


def test_predict_names_the_file_that_is_not_an_image(server, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("meeting notes\n")
    refused = yyai(server, "predict", "digits", SAMPLE, notes, check=False)
    assert refused.returncode == 1 and "'notes.txt'" in refused.stderr and "digit-3.png" not in refused.stderr


def test_a_model_file_posted_as_an_archive_hints_at_yyai_archive(server, tmp_path):
    import keras

    inputs = keras.Input((8, 8, 1))
    keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs))).save(tmp_path / "cnn.keras")
    for body, what in (((tmp_path / "cnn.keras").read_bytes(), "a Keras .keras model file, not a .yyar archive"),
                       (b"plain text\n", "not a .yyar archive: not a zip archive")):
        reply = server.post("/models", data=body, headers={"Content-Type": "application/octet-stream"})
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert error.startswith(what) and "pack the model into one with `yyai archive`" in error
        assert ".part" not in error and "upload-" not in error


def test_a_lambda_refusal_names_the_trust_setting_of_each_interface(server, models, tmp_path):
    from yyai_kernel.archive import pack

    archive = pack(name="lam", version=1, models=[models.lambda_keras], out_dir=tmp_path, trusted=True,
                   input_spec={"shape": [8, 8, 1], "dtype": "float32", "color": "grayscale"},
                   output_spec={"kind": "classification", "labels": ["a", "b", "c"]})
    reply = server.post("/models", data=archive.read_bytes(), headers={"Content-Type": "application/octet-stream"})
    assert reply.status_code == 400 and reply.json()["type"] == "UnsafeModelError"
    assert "the server's operator can allow it for this model (yyai serve --trust lam" in reply.json()["error"]
    cli = yyai(server, "upload", archive, check=False)
    assert cli.returncode == 1
    assert "if you trust its source, pass --trust (on a server: yyai serve --trust lam)" in cli.stderr


def test_reload_and_remove_on_a_server(server):
    yyai(server, "upload", ARCHIVES / "digits-2.yyar", check=False)  # when this test runs alone
    assert "reloaded digits: loaded" in yyai(server, "reload", "digits").stdout
    assert "reloaded digits: loaded" in yyai(server, "reload").stdout
    removed = yyai(server, "remove", "digits", "1").stdout
    assert "removed digits v1 from the server's store; digits: loaded v2; v2 is the default: the latest version" \
        in removed
    listed = json.loads(yyai(server, "models", "--json").stdout)
    assert [(m["name"], m["versions"]) for m in listed["models"]] == [("digits", [2])]
