"""yyai on Ray Serve end to end: ``serve deploy deploy/ray/serve_config.yaml`` on the session's
local Ray, 2 ingress replicas and 2 model replicas, driven over HTTP like ``yyai serve``.

The module deploys the repository's own config file with Ray's own ``serve deploy`` (only the
store path, the port, the replica sizes and the token are changed), over a store holding the
demo archives. A ``yyai serve`` started on a copy of the same store answers the same
requests, and the two must agree: tritonclient outputs (JSON and binary), PNG predictions,
and every refusal's status and JSON. Then uploads, pins, unloads and reloads go through the
Ray ingress while the next requests show what changed, on every ingress replica.
"""

from __future__ import annotations

import html
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
import yaml
from builders import install, pack_models, reference, sample_inputs
from raycluster import REPO
from requesttable import LIMIT, bad_cases, good_cases, same, send
from serving import start_server

TOKEN = "ray-ingress-token"
APP = "yyai"
SAMPLES = REPO / "model_archives" / "samples"
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}


class Endpoint:
    """An HTTP server (the Ray ingress or yyai serve) and its token."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url.rstrip("/"), token
        self.session = requests.Session()

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs) -> requests.Response:
        """With the token unless ``auth=False`` (then without the session: no cookie rides along)."""
        headers = {**({"Authorization": f"token {self.token}"} if auth else {}), **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 120)
        send = self.session.request if auth else requests.request
        return send(method, self.url + path, headers=headers, **kwargs)

    def json(self, method: str, path: str, status: int = 200, **kwargs):
        reply = self.request(method, path, **kwargs)
        assert reply.status_code == status, (method, path, reply.status_code, reply.text[:500])
        return reply.json()

    def triton(self) -> httpclient.InferenceServerClient:
        return httpclient.InferenceServerClient(self.url.removeprefix("http://"), concurrency=4)


def auth() -> dict:
    """Fresh headers per call: tritonclient writes its own headers into the dict it gets."""
    return {"Authorization": f"token {TOKEN}"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """alpha v1, and two different contents of alpha v2 (for reloads under load)."""
    root = tmp_path_factory.mktemp("ingress-built")
    archives = {"alpha1": pack_models(root, "alpha", 1, [21]), "alpha2": pack_models(root, "alpha", 2, [22]),
                "alpha2b": pack_models(root, "alpha", 2, [23])}
    x = sample_inputs(4, seed=5)
    return {key: (path, reference(models, x)) for key, (path, models) in archives.items()} | {"x": x}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ingress-store")
    for archive in sorted((REPO / "model_archives").glob("*.yyar")):
        shutil.copy(archive, folder / archive.name)
    return folder


def deploy_config(path: Path, store: Path, port: int) -> Path:
    """The repository's serve config, sized for this 2-CPU Ray and pointed at the test store."""
    config = yaml.safe_load((REPO / "deploy/ray/serve_config.yaml").read_text())
    config["http_options"]["port"] = port
    (application,) = config["applications"]
    application["args"].update(store=str(store), max_batch_rows=8, max_body_bytes=LIMIT)
    application["runtime_env"] = {"env_vars": {"YYAI_TOKEN": TOKEN}}
    for deployment in application["deployments"]:
        deployment["ray_actor_options"] = {"num_cpus": 0 if deployment["name"] == "YyaiIngress" else 0.5}
        if deployment.pop("autoscaling_config", None) is not None:
            deployment["num_replicas"] = 2
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def app(ray_session, store_dir, tmp_path_factory):
    """The application, deployed by ``serve deploy`` and ready (every default loaded)."""
    from ray import serve

    config = deploy_config(tmp_path_factory.mktemp("ingress-config") / "serve_config.yaml", store_dir,
                           ray_session.serve_port)
    deployed = ray_session.serve_cli("deploy", str(config))
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    deadline = time.monotonic() + 600
    while True:  # every replica running, and every ingress replica done loading the defaults
        status = serve.status().applications.get(APP)
        assert status is None or status.status not in ("DEPLOY_FAILED", "UNHEALTHY"), status
        if status is not None and status.status == "RUNNING" and all(s["ready"] for s in ingress_states()):
            break
        assert time.monotonic() < deadline, f"the application never became ready: {status}"
        time.sleep(1.0)
    endpoint = Endpoint(ray_session.serve_url, TOKEN)
    yield endpoint
    serve.delete(APP)


# The dashboard notebook's first step, printed: where its client goes and what it sees there.
CLIENT_CHECK = {
    "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": [
        "import os\n", "from yyai_kernel.client import YyaiClient\n",
        "print('CHECK', os.environ['YYAI_URL'], YyaiClient().names())\n"]}],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.fixture(scope="module")
def local(app, store_dir, tmp_path_factory):
    """``yyai serve`` over a copy of the same archives, with the same token and body limit; its
    dashboard pages call the Ray endpoint (``--dashboard-api``) and run a notebook that says so."""
    store, work = tmp_path_factory.mktemp("ingress-local-store"), tmp_path_factory.mktemp("ingress-local")
    for archive in store_dir.glob("*.yyar"):
        shutil.copy(archive, store / archive.name)
    notebook = work / "check.ipynb"
    notebook.write_text(json.dumps(CLIENT_CHECK))
    server = start_server(store, work, token=TOKEN,
                          args=["--max-body-bytes", str(LIMIT), "--public-health", "--dashboard-api", app.url,
                                "--notebook", str(notebook)])
    endpoint = Endpoint(server.url, TOKEN)
    endpoint.json("POST", "/models/digits/load", json={"version": 1})  # Ray loads any version on demand
    yield endpoint
    assert server.stop() == 0


def ingress_states() -> list[dict]:
    """What every ingress replica serves when no version is named (``Ingress.state``)."""
    from ray import serve

    return serve.get_deployment_handle("YyaiIngress", APP).broadcast("state").results()


def wait_for(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.2)


def test_serve_deploy_of_the_config_comes_up_and_answers(app, ray_session):
    from ray import serve

    status = serve.status().applications[APP]
    assert status.status == "RUNNING"
    replicas = {name: d.replica_states.get("RUNNING", 0) for name, d in status.deployments.items()}
    assert replicas == {"YyaiIngress": 2, "YyaiModels": 2}
    assert app.json("GET", "/v2")["name"] == "yyai"
    assert app.request("GET", "/v2", auth=False).status_code == 401
    assert app.request("GET", "/v2/health/ready", auth=False).status_code == 200  # public_health in the config
    default = app.json("GET", "/models/digits")["versions"]["2"]
    assert default["state"] == "ready" and default["reason"] == "loaded on 2 of 2 model replicas"


def test_every_ray_socket_stays_on_loopback(app, ray_session):
    """The dashboard, Serve's proxy and every replica (their gRPC servers too) listen on 127.0.0.1."""
    assert ray_session.listening_addresses() <= LOOPBACK


def test_the_ingress_serves_every_route_of_the_yyai_table(app):
    """The ingress serves the endpoint table of yyai serve, less the endpoints kept off Ray, each of
    which NOT_SERVED explains; and the live ingress routes each one (no router 404 or 405)."""
    from yyai_kernel.api.table import all_endpoints
    from yyai_kernel.ray_app.http import NOT_SERVED, ray_endpoints

    kept_off = {e.path for e in all_endpoints() if not e.on_ray}
    assert kept_off == set(NOT_SERVED)
    wanted = {(e.path, e.method) for e in ray_endpoints()}
    assert wanted == {(e.path, e.method) for e in all_endpoints() if e.path not in NOT_SERVED}
    placeholders = {"name": "nosuch", "version": "1", "sample": "samples/none.png", "label": "nosuch"}
    for path, method in sorted(wanted):
        reply = app.request(method, path.format(**placeholders), data=b"", timeout=120)
        body = reply.json() if reply.content else {}
        assert reply.status_code != 405, (method, path)
        assert not (reply.status_code == 404 and "type" not in body), (method, path, body)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_outputs_equal_yyai_serve(app, local, binary):
    ray_client, local_client = app.triton(), local.triton()
    for model, version, x in [("digits", "", np.random.default_rng(1).random((3, 8, 8, 1), dtype=np.float32)),
                              ("digits", "1", np.random.default_rng(2).random((2, 8, 8, 1), dtype=np.float32)),
                              ("colorfulness", "", np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32))]:
        metadata = ray_client.get_model_metadata(model, version, headers=auth())
        assert metadata == local_client.get_model_metadata(model, version, headers=auth())
        tensor = httpclient.InferInput(metadata["inputs"][0]["name"], list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=binary) for o in metadata["outputs"]]
        ours = ray_client.infer(model, [tensor], model_version=version, outputs=outputs, headers=auth())
        theirs = local_client.infer(model, [tensor], model_version=version, outputs=outputs, headers=auth())
        assert ours.get_response()["model_version"] == theirs.get_response()["model_version"]
        for output in metadata["outputs"]:
            np.testing.assert_allclose(ours.as_numpy(output["name"]), theirs.as_numpy(output["name"]), atol=1e-5)
    ray_client.close()
    local_client.close()


@pytest.mark.parametrize("case", [*good_cases(), *bad_cases()], ids=lambda c: c.id)
def test_the_request_table_gets_the_same_replies_as_yyai_serve(app, local, case):
    """The shared request table (tests/requesttable.py): status, media type and body agree."""
    same(case, send(app, case), send(local, case))


def test_predictions_with_a_png_equal_yyai_serve(app, local):
    png = (SAMPLES / "digit-3.png").read_bytes()
    ours, theirs = (server.json("POST", "/predictions/digits?raw=true", data=png,
                                headers={"Content-Type": "image/png"}) for server in (app, local))
    assert ours["predictions"][0]["top"] == theirs["predictions"][0]["top"] == "3"
    assert (ours["model"], ours["version"]) == (theirs["model"], theirs["version"]) == ("digits", 2)
    np.testing.assert_allclose(ours["predictions"][0]["raw"]["combined"], theirs["predictions"][0]["raw"]["combined"],
                               atol=1e-5)
    files = [("file", (name, (SAMPLES / name).read_bytes(), "image/png")) for name in ("digit-7.png", "digit-0.png")]
    ours, theirs = (server.json("POST", "/predictions/digits/1", files=files) for server in (app, local))
    assert [(p["filename"], p["top"]) for p in ours["predictions"]] == [("digit-7.png", "7"), ("digit-0.png", "0")]
    assert [p["top"] for p in theirs["predictions"]] == ["7", "0"]


def test_explanations_are_refused_on_ray_with_a_reason(app):
    """Grad-CAM needs the runtime in the answering process: the ingress says so (501), never a 500."""
    png = (SAMPLES / "digit-3.png").read_bytes()
    reply = app.request("POST", "/predictions/digits?explain=gradcam", data=png, headers={"Content-Type": "image/png"})
    assert reply.status_code == 501 and reply.json()["type"] == "NotSupportedError"
    assert "yyai serve" in reply.json()["error"]
    reply = app.request("POST", "/predictions/digits", data=png, headers={"Content-Type": "image/png"})
    assert reply.status_code == 200


def test_a_notebook_client_reads_the_ray_endpoint(app, local):
    """YyaiClient (what a notebook's Dashboard uses) gets from Ray what it gets from yyai serve."""
    from yyai_kernel.client import YyaiClient

    ours, theirs = YyaiClient(app.url, TOKEN), YyaiClient(local.url, TOKEN)
    assert [(m.name, m.versions, m.default) for m in ours.list()] == [(m.name, m.versions, m.default)
                                                                      for m in theirs.list()]
    # the same description; the status differs in its figures (requests, load times, where it is loaded)
    assert ours.describe("digits", 1).with_status(None) == theirs.describe("digits", 1).with_status(None)
    assert ours.samples("digits") == theirs.samples("digits")
    sample = ours.samples("digits")[0]
    assert ours.sample("digits", sample) == theirs.sample("digits", sample)
    png = (SAMPLES / "digit-5.png").read_bytes()
    assert ours.predict_images("digits", [png]).top() == theirs.predict_images("digits", [png]).top()
    assert set(ours.status().models) == {"colorfulness", "digits", "wine"}


def _v2_output(endpoint: Endpoint, x: np.ndarray, version: str = "") -> tuple[str, np.ndarray]:
    """(the version that answered, its combined output) for a JSON v2 request on alpha."""
    path = "/v2/models/alpha" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
            "outputs": [{"name": "output"}]}
    reply = endpoint.json("POST", path, json=body)
    (output,) = reply["outputs"]
    return reply["model_version"], np.array(output["data"], np.float32).reshape(output["shape"])


def _all_answer(app: Endpoint, built: dict, version: str, times: int = 8) -> None:
    for _ in range(times):  # several requests, so that both ingress replicas answer some
        answered, y = _v2_output(app, built["x"])
        assert answered == version
        np.testing.assert_allclose(y, built[f"alpha{version}"][1]["combined"], atol=1e-5)


def test_an_upload_then_a_default_swap_are_seen_by_the_next_requests(app, built, store_dir):
    first = app.json("POST", "/models", 201, data=built["alpha1"][0].read_bytes(),
                     headers={"Content-Type": "application/octet-stream"})
    assert (first["name"], first["version"], first["model"]["default"]) == ("alpha", 1, 1)
    _all_answer(app, built, "1")
    files = {"archive": ("alpha-2.yyar", built["alpha2"][0].read_bytes(), "application/octet-stream")}
    second = app.json("POST", "/models", 201, files=files)
    assert second["model"]["default"] == 2 and "the latest" in second["message"]
    assert all(s["defaults"]["alpha"] == 2 for s in ingress_states())
    _all_answer(app, built, "2")

    pinned = app.json("PUT", "/models/alpha/default", json={"version": 1})
    assert (pinned["default"], pinned["pinned"]) == (1, True)
    assert all(s["pins"] == {"alpha": 1} for s in ingress_states())
    _all_answer(app, built, "1")
    assert app.json("DELETE", "/models/alpha/default")["default"] == 2
    _all_answer(app, built, "2")

    from yyai_kernel.store.store import ModelStore

    ModelStore(store_dir).pin("alpha", 1)  # written by another process: every replica notices the file
    wait_for(lambda: all(s["pins"] == {"alpha": 1} for s in ingress_states()), "an out-of-band pin seen by all")
    _all_answer(app, built, "1")
    ModelStore(store_dir).unpin("alpha")
    wait_for(lambda: all(s["pins"] == {} for s in ingress_states()), "an out-of-band unpin seen by all")


def test_unload_and_load_through_the_repository_api(app, built):
    client = app.triton()
    client.unload_model("alpha", headers=auth())
    assert all(("alpha", v) in map(tuple, s["unloaded"]) for s in ingress_states() for v in (1, 2))
    for _ in range(4):
        assert not client.is_model_ready("alpha", headers=auth())
    index = {(e["name"], e["version"]): e["state"] for e in client.get_model_repository_index(headers=auth())}
    assert index[("alpha", "2")] == "UNAVAILABLE" and index[("digits", "2")] == "READY"
    refused = app.request("POST", "/predictions/alpha", data=(SAMPLES / "digit-1.png").read_bytes(),
                          headers={"Content-Type": "image/png"})
    assert refused.status_code == 503 and "unloaded" in refused.json()["error"]
    client.load_model("alpha", headers=auth())
    assert client.is_model_ready("alpha", headers=auth())
    _all_answer(app, built, "2")
    client.close()


def test_reloads_under_8_concurrent_clients_fail_no_request(app, built, store_dir):
    """30 s of 8 clients on alpha v2 while its archive is replaced by other content and
    reloaded every few seconds: no request fails, and every answer is one content's output."""
    contents = {key: built[key][1]["combined"] for key in ("alpha2", "alpha2b")}
    seen, failures, answered, reloads = set(), [], [0], [0]
    stop = threading.Event()

    def client():
        endpoint = Endpoint(app.url, TOKEN)
        while not stop.is_set():
            try:
                version, y = _v2_output(endpoint, built["x"])
                match = [key for key, want in contents.items() if np.allclose(y, want, atol=1e-5)]
                assert version == "2" and len(match) == 1, (version, y)
                seen.add(match[0])
                answered[0] += 1
            except Exception as error:  # noqa: BLE001 - every failure is counted and shown
                failures.append(repr(error)[:300])

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    for turn in range(100):  # bounded: one reload every 3 s until the deadline
        if time.monotonic() >= deadline:
            break
        install(built["alpha2b" if turn % 2 == 0 else "alpha2"][0], store_dir, "alpha-2.yyar")
        assert app.request("POST", "/models/alpha/reload").status_code == 200
        reloads[0] += 1
        stop.wait(max(0.0, min(3.0, deadline - time.monotonic())))
    stop.set()
    for thread in threads:
        thread.join(timeout=180)
    assert failures == []
    assert reloads[0] >= 5 and answered[0] > reloads[0]
    assert seen == {"alpha2", "alpha2b"}


def test_a_yyai_serve_dashboard_calls_the_ray_endpoint(app, local):
    """``yyai serve --dashboard-api URL``: the dashboard's kernel calls the Ray endpoint with its
    token, and sees alpha, which only the Ray store holds (uploaded above)."""
    from yyai_kernel.client import YyaiClient

    names = YyaiClient(app.url, TOKEN).names()
    assert "alpha" in names and "alpha" not in YyaiClient(local.url, TOKEN).names()
    # The first page takes the kernel preheated at start (it ran the notebook before alpha was
    # uploaded); the kernel of the next page ran it since.
    first = local.request("GET", "/", auth=False, params={"token": TOKEN})
    assert first.status_code == 200 and f"CHECK {app.url} " in html.unescape(first.text)
    page = local.request("GET", "/", auth=False, params={"token": TOKEN})
    assert page.status_code == 200
    assert f"CHECK {app.url} {names}" in html.unescape(page.text)
