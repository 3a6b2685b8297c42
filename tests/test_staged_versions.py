"""Staged versions and model-level assets (#23 findings 1 and 3), on a real server.

An upload used to go live at once, even while a shadow compared two versions; a second
upload of the same cell was a 409 with no way out; and a version uploaded from a notebook
had no samples and no labelled set. Each test below failed on the code before the fix.
Real tiny Keras models packed into real archives, uploaded over HTTP to ``yyai serve``, and
through ``YyaiClient`` and the CLI.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from builders import install, pack_models, reference, sample_inputs
from clirun import yyai
from serving import start_server

from yyai_kernel.client import YyaiClient
from yyai_kernel.errors import ConflictError
from yyai_kernel.types import FileRole

X = sample_inputs(2)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("staged-built")
    return {(name, v, seed): pack_models(out / f"{name}-{v}-{seed}", name, v, [seed])
            for name, v, seed in (("alpha", 1, 1), ("alpha", 2, 2), ("alpha", 3, 3), ("alpha", 3, 33),
                                  ("beta", 1, 4), ("beta", 2, 5), ("gamma", 1, 6), ("gamma", 2, 7),
                                  ("delta", 1, 8), ("delta", 2, 9))}


@pytest.fixture(scope="module")
def store(built, tmp_path_factory):
    """The shared server's store: alpha v1/v2, beta v1, delta v1 and the demo digits."""
    from builders import DEMO

    folder = tmp_path_factory.mktemp("staged-store")
    for key in (("alpha", 1, 1), ("alpha", 2, 2), ("beta", 1, 4), ("delta", 1, 8)):
        install(built[key][0], folder)
    for archive in DEMO.glob("digits-*.yyar"):
        shutil.copy(archive, folder / archive.name)
    return folder


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    running = start_server(store, tmp_path_factory.mktemp("staged-server"))
    yield running
    assert running.stop() == 0


def _upload(server, archive, **params):
    return server.post("/models", params=params, data=archive.read_bytes(),
                       headers={"Content-Type": "application/octet-stream"})


def _infer(server, name: str, version: str = "") -> tuple[str, np.ndarray]:
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": "input", "shape": list(X.shape), "datatype": "FP32", "data": X.ravel().tolist()}]}
    reply = server.post(path, json=body)
    assert reply.status_code == 200, reply.text
    out = reply.json()
    return out["model_version"], np.asarray(out["outputs"][0]["data"], dtype=np.float32).reshape(len(X), -1)


def test_an_upload_during_a_comparison_is_staged(server, built):
    """A 100% shadow of v1 runs on alpha (default v2): v3 arrives, serves by its number, v2 stays."""
    assert server.put("/models/alpha/traffic", json={"shadow": {"version": 1, "percent": 100}}).status_code == 200
    reply = _upload(server, built[("alpha", 3, 3)][0])
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert (body["staged"], body["changed"], body["default"]) == (True, True, 2)
    assert "staged" in body["message"] and "v2 stays the default" in body["message"]
    assert 'PUT /models/alpha/default {"version": 3}' in body["message"]  # the next step, in REST words
    assert _infer(server, "alpha")[0] == "2"  # what answers unnamed requests did not change
    version, out = _infer(server, "alpha", "3")
    assert version == "3"
    np.testing.assert_allclose(out, reference(built[("alpha", 3, 3)][1], X)["combined"], atol=1e-5)
    assert server.delete("/models/alpha/traffic").status_code == 200


def test_the_same_content_again_changes_nothing_and_other_content_needs_replace(server, built):
    again = _upload(server, built[("alpha", 3, 3)][0])
    assert again.status_code == 200 and again.json()["changed"] is False
    assert "already installed with the same content; nothing changed" in again.json()["message"]
    other = built[("alpha", 3, 33)][0]  # alpha v3, other weights
    refused = _upload(server, other)
    assert refused.status_code == 409 and refused.json()["type"] == "ConflictError"
    assert "new version number" in refused.json()["error"] and "replace=true" in refused.json()["error"]
    assert server.put("/models/alpha/labels/candidate", json={"version": 3}).status_code == 200
    blocked = _upload(server, other, replace="true")
    assert blocked.status_code == 409 and "cannot be replaced" in blocked.json()["error"]
    assert server.delete("/models/alpha/labels/candidate").status_code == 200
    replaced = _upload(server, other, replace="true")
    assert replaced.status_code == 201 and replaced.json()["message"].startswith("Replaced alpha v3")
    np.testing.assert_allclose(_infer(server, "alpha", "3")[1], reference(built[("alpha", 3, 33)][1], X)["combined"],
                               atol=1e-5)


def test_promote_and_label_on_upload(server, built):
    """beta follows the latest (no pin, label or policy): promote=false stages, promote=true pins."""
    staged = _upload(server, built[("beta", 2, 5)][0], promote="false", label="candidate").json()
    assert (staged["staged"], staged["default"]) == (True, 1)
    assert server.get("/models/beta/labels").json() == {"candidate": 2}
    assert _infer(server, "beta", "candidate")[0] == "2" and _infer(server, "beta")[0] == "1"
    assert server.post("/models", params={"promote": "maybe"}, data=b"x",
                       headers={"Content-Type": "application/octet-stream"}).status_code == 400
    gamma = YyaiClient(server.url, server.token)
    first = gamma.add_archive(built[("gamma", 1, 6)][0])
    promoted = gamma.add_archive(built[("gamma", 2, 7)][0], promote=True)
    assert first.model.default == 1
    assert (promoted.staged, promoted.model.default, promoted.model.pinned) == (False, 2, True)


def test_setting_a_label_pins_the_default_so_new_archives_wait(server, store, built):
    """With a label, the default is pinned: an archive copied into the folder and rescanned waits too."""
    status = server.put("/models/delta/labels/stable", json={"version": 1}).json()
    assert status["pinned"] is True and status["default"] == 1
    install(built[("delta", 2, 9)][0], store)
    assert server.post("/models/_rescan").status_code == 200
    status = server.get("/models/delta").json()
    assert status["default"] == 1 and status["versions"]["2"]["state"] == "available"
    assert _infer(server, "delta")[0] == "1"


def test_no_auto_promote_stages_every_new_version(built, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    install(built[("gamma", 1, 6)][0], store)
    server = start_server(store, tmp_path / "server", args=["--no-auto-promote"])
    try:
        body = _upload(server, built[("gamma", 2, 7)][0]).json()
        assert (body["staged"], body["default"]) == (True, 1)
        yyai("default", "gamma", "2", "--server", server.url, "--token", server.token)
        assert _infer(server, "gamma")[0] == "2"
    finally:
        assert server.stop() == 0


def test_samples_and_sets_come_from_the_newest_version_that_bundles_them(server, store, tmp_path):
    """Demo digits: v2 bundles samples and a labelled set; a v3 from a notebook bundles none."""
    from yyai_kernel.archive import pack, read_manifest
    from yyai_kernel.archive.reader import open_archive

    v2 = read_manifest(store / "digits-2.yyar")
    assert any(f.role is FileRole.SAMPLE for f in v2.files) and any(f.role is FileRole.EVAL for f in v2.files)
    client = YyaiClient(server.url, server.token)
    # digits v3: v2's first member alone, packed with no samples and no labelled set
    with open_archive(store / "digits-2.yyar") as opened:
        member = opened.member_path(v2.members[0])
        v3 = pack(name="digits", version=3, models=[member], input_spec=v2.input, output_spec=v2.output,
                  out_dir=tmp_path / "v3")
    assert client.add_archive(v3, promote=False).staged
    found = client.bundled("digits", 3)
    assert (found.version, found.source) == (3, 2) and found.files and "from v2" in found.where()
    assert client.sample("digits", found.files[0], 3) == client.sample("digits", found.files[0], 2)
    sets = client.bundled("digits", 3, FileRole.EVAL)
    assert sets.source == 2 and client.eval_sets("digits", 3) == list(sets.files)
    cli = yyai("evaluate", "digits:3", "--data", "bundled", "--server", server.url, "--token", server.token,
               check=False)
    assert cli.returncode in (0, 3), cli.stderr
    assert "bundled with digits v2 (v3 bundles none)" in " ".join((cli.stdout + cli.stderr).split())
    with pytest.raises(ConflictError, match="new version number"):  # other content under v3
        client.add_archive(_repacked(v3, tmp_path))


def _repacked(archive, tmp_path):
    """The same name and version with other content: the manifest's description changed."""
    from yyai_kernel.archive import pack, read_manifest
    from yyai_kernel.archive.reader import open_archive

    manifest = read_manifest(archive)
    with open_archive(archive) as opened:
        member = opened.member_path(manifest.members[0])
        return pack(name="digits", version=3, models=[member], input_spec=manifest.input,
                    output_spec=manifest.output, description="other content", out_dir=tmp_path)


def test_the_cli_stages_promotes_and_labels_on_a_store(built, tmp_path):
    from yyai_kernel.store.store import ModelStore

    store = tmp_path / "store"
    store.mkdir()
    install(built[("alpha", 1, 1)][0], store)

    def upload(*args):
        return yyai("upload", *args, "--store", store, check=False)

    staged = upload(built[("alpha", 2, 2)][0], "--stage", "--label", "candidate")
    assert staged.returncode == 0 and "added alpha v2 (staged)" in staged.stdout, staged.stderr
    folder = ModelStore(store)
    assert (folder.default_version("alpha"), folder.labels("alpha")) == (1, {"candidate": 2})
    promoted = upload(built[("alpha", 3, 3)][0], "--promote")
    assert promoted.returncode == 0, promoted.stderr
    assert ModelStore(store).default_version("alpha") == 3
    refused = upload(built[("alpha", 3, 33)][0])
    assert refused.returncode == 1 and "yyai upload --replace" in refused.stderr
