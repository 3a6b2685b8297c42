"""yyai on Ray Serve end to end, on two nodes: ``serve deploy deploy/ray/serve_config.yaml`` on
the session's two-node Ray cluster, one replica on each node, driven over HTTP like ``yyai serve``.

The module deploys the repository's own config file with Ray's own ``serve deploy`` (only the
store path, the port, the replica sizes, their placement (one per node, by the custom resource
``tests/raycluster.py`` gives each node) and the token are changed), over a store holding the
demo archives, a folder both nodes see. A ``yyai serve`` started on a copy of the same store
answers the same requests, and the two must agree: tritonclient outputs (JSON and binary),
both demo models answered on both nodes, PNG predictions, and every refusal's status and JSON.
Then uploads, pins, unloads and reloads go through the Ray endpoint while the next requests,
served on both nodes, show what changed. Last, a hot model spreads from one replica to the
other, and killing a replica under 8 clients fails no request that its client did not retry.
"""

from __future__ import annotations

import html
import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
import yaml
from builders import install, pack_models, reference, sample_inputs
from raycluster import NODE_RESOURCE, REPO
from requesttable import LIMIT, bad_cases, good_cases, same, send
from serving import start_server

TOKEN = "ray-ingress-token"
APP = "yyai"
DEPLOYMENT = "YyaiModels"
SAMPLES = REPO / "model_archives" / "samples"
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}


class Endpoint:
    """An HTTP server (yyai on Ray or yyai serve) and its token."""

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
    """alpha v1, two different contents of alpha v2 (for reloads under load), and hot v1."""
    root = tmp_path_factory.mktemp("ingress-built")
    archives = {"alpha1": pack_models(root, "alpha", 1, [21]), "alpha2": pack_models(root, "alpha", 2, [22]),
                "alpha2b": pack_models(root, "alpha", 2, [23]), "hot": pack_models(root, "hot", 1, [24])}
    x = sample_inputs(4, seed=5)
    return {key: (path, reference(models, x)) for key, (path, models) in archives.items()} | {"x": x}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ingress-store")
    for archive in sorted((REPO / "model_archives").glob("*.yyar")):
        shutil.copy(archive, folder / archive.name)
    return folder


def deploy_config(path: Path, store: Path, port: int) -> Path:
    """The repository's serve config, sized for this 2-core machine, one replica on each node
    (each asks for the node's one unit of NODE_RESOURCE), pointed at the test store."""
    config = yaml.safe_load((REPO / "deploy/ray/serve_config.yaml").read_text())
    config["http_options"]["port"] = port
    (application,) = config["applications"]
    application["args"].update(store=str(store), max_batch_rows=8, max_body_bytes=LIMIT)
    application["runtime_env"] = {"env_vars": {"YYAI_TOKEN": TOKEN}}
    (deployment,) = application["deployments"]
    deployment["ray_actor_options"] = {"num_cpus": 0.5, "resources": {NODE_RESOURCE: 1}}
    deployment.pop("autoscaling_config")
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
    while True:  # every replica running (a replica is routed to once it loaded the defaults)
        status = serve.status().applications.get(APP)
        assert status is None or status.status not in ("DEPLOY_FAILED", "UNHEALTHY"), status
        if status is not None and status.status == "RUNNING":
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
                                "--notebook", str(notebook)], dashboard=True)
    endpoint = Endpoint(server.url, TOKEN)
    endpoint.json("POST", "/models/digits/load", json={"version": 1})  # Ray loads any version on demand
    yield endpoint
    assert server.stop() == 0


def replica_states() -> list[dict]:
    """What every replica serves when no version is named (``ModelDeployment.state``)."""
    from ray import serve

    return serve.get_deployment_handle(DEPLOYMENT, APP).broadcast("state").results()


def rows_by_node(model: str) -> dict[str, int]:
    """Rows of ``model`` (any version) each node's replica has run so far."""
    from ray import serve

    stats = serve.get_deployment_handle(DEPLOYMENT, APP).broadcast("stats").results()
    return {s.node_id: sum(rows for mid, rows in s.rows.items() if mid.startswith(f"{model}:")) for s in stats}


def served_on_both_nodes(before: dict[str, int], after: dict[str, int], nodes) -> bool:
    return all(after.get(node, 0) > before.get(node, 0) for node in nodes)


def until_both_nodes_served(model: str, ask, nodes, least: int = 16, most: int = 96) -> None:
    """``ask(i)`` 8 at a time until both nodes' replicas ran some of ``model``'s requests (``least``
    requests at least, ``most`` at most). Concurrent, because Ray's router picks the replica with
    the shorter queue and breaks ties its own way: one request at a time may all land on one."""
    before, sent = rows_by_node(model), 0
    with ThreadPoolExecutor(8) as pool:
        while sent < least or not served_on_both_nodes(before, rows_by_node(model), nodes):
            assert sent < most, f"{model} never served on both nodes: {rows_by_node(model)}"
            list(pool.map(ask, range(sent, sent + 8)))
            sent += 8


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
    assert replicas == {DEPLOYMENT: 2}
    assert sorted(s["node"] for s in replica_states()) == sorted(ray_session.nodes)  # one replica on each node
    assert app.json("GET", "/v2")["name"] == "yyai"
    assert app.request("GET", "/v2", auth=False).status_code == 401
    assert app.request("GET", "/v2/health/ready", auth=False).status_code == 200  # public_health in the config
    default = app.json("GET", "/models/digits")["versions"]["2"]
    assert default["state"] == "ready" and default["reason"] == "loaded on 2 of 2 model replicas"


def test_every_ray_socket_stays_on_loopback(app, ray_session):
    """The dashboard, Serve's proxy and every replica (their gRPC servers too) listen on 127.0.0.1,
    on both nodes."""
    assert ray_session.listening_addresses() <= LOOPBACK


def test_the_ingress_serves_every_route_of_the_yyai_table(app):
    """The Ray replicas serve the endpoint table of yyai serve, less the endpoints kept off Ray, each
    of which NOT_SERVED explains; and the live endpoint routes each one (no router 404 or 405)."""
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
            np.testing.assert_allclose(ours.as_numpy(output["name"]), theirs.as_numpy(output["name"]),
                                       rtol=1e-5, atol=1e-5)
    ray_client.close()
    local_client.close()


def test_both_demo_models_answer_on_both_nodes_as_yyai_serve_does(app, local, ray_session):
    """digits and colorfulness: v2 requests until each model was answered on both nodes (16 at
    least); every output (each member's and the combined one) equals yyai serve's."""
    per_client = threading.local()

    for model, shape in (("digits", (8, 8, 1)), ("colorfulness", (32, 32, 3))):
        def ask(i: int, model=model, shape=shape) -> None:
            if not hasattr(per_client, "servers"):  # a session per client thread
                per_client.servers = (Endpoint(app.url, TOKEN), Endpoint(local.url, TOKEN))
            body = _v2_body(np.random.default_rng(i).random((2, *shape), dtype=np.float32))
            ours, theirs = (server.json("POST", f"/v2/models/{model}/infer", json=body)
                            for server in per_client.servers)
            assert ours["model_version"] == theirs["model_version"]
            assert [o["name"] for o in ours["outputs"]] == [o["name"] for o in theirs["outputs"]]
            for mine, want in zip(ours["outputs"], theirs["outputs"], strict=True):
                np.testing.assert_allclose(mine["data"], want["data"], rtol=1e-5, atol=1e-5)

        until_both_nodes_served(model, ask, ray_session.nodes)


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
    """Grad-CAM is served by yyai serve only: the Ray endpoint says so (501), never a 500."""
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


def _v2_body(x: np.ndarray, outputs: tuple[str, ...] = ()) -> dict:
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    return body | ({"outputs": [{"name": name} for name in outputs]} if outputs else {})


def _v2_output(endpoint: Endpoint, x: np.ndarray, version: str = "", model: str = "alpha",
               **kwargs) -> tuple[str, np.ndarray]:
    """(the version that answered, its combined output) for a JSON v2 request."""
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    reply = endpoint.json("POST", path, json=_v2_body(x, ("output",)), **kwargs)
    (output,) = reply["outputs"]
    return reply["model_version"], np.array(output["data"], np.float32).reshape(output["shape"])


def _all_answer(app: Endpoint, built: dict, version: str) -> None:
    """Requests on alpha until the replicas of both nodes answered some: every answer is
    ``version``'s output, wherever it was served."""
    per_client = threading.local()

    def ask(_: int) -> None:
        endpoint = per_client.__dict__.setdefault("endpoint", Endpoint(app.url, TOKEN))  # a session per client
        answered, y = _v2_output(endpoint, built["x"])
        assert answered == version
        np.testing.assert_allclose(y, built[f"alpha{version}"][1]["combined"], atol=1e-5)

    until_both_nodes_served("alpha", ask, {s["node"] for s in replica_states()})


def test_an_upload_then_a_default_swap_are_seen_by_the_next_requests(app, built, store_dir):
    """Each upload and pin is made through one node's replica; the next requests, served on both
    nodes (so on the other one too), all answer as it says."""
    first = app.json("POST", "/models", 201, data=built["alpha1"][0].read_bytes(),
                     headers={"Content-Type": "application/octet-stream"})
    assert (first["name"], first["version"], first["model"]["default"]) == ("alpha", 1, 1)
    _all_answer(app, built, "1")
    files = {"archive": ("alpha-2.yyar", built["alpha2"][0].read_bytes(), "application/octet-stream")}
    second = app.json("POST", "/models", 201, files=files)
    assert second["model"]["default"] == 2 and "the latest" in second["message"]
    assert all(s["defaults"]["alpha"] == 2 for s in replica_states())
    _all_answer(app, built, "2")

    pinned = app.json("PUT", "/models/alpha/default", json={"version": 1})
    assert (pinned["default"], pinned["pinned"]) == (1, True)
    assert all(s["pins"] == {"alpha": 1} for s in replica_states())
    _all_answer(app, built, "1")
    assert app.json("DELETE", "/models/alpha/default")["default"] == 2
    _all_answer(app, built, "2")

    from yyai_kernel.store.store import ModelStore

    ModelStore(store_dir).pin("alpha", 1)  # written by another process: every replica notices the file
    wait_for(lambda: all(s["pins"] == {"alpha": 1} for s in replica_states()), "an out-of-band pin seen by all")
    _all_answer(app, built, "1")
    ModelStore(store_dir).unpin("alpha")
    wait_for(lambda: all(s["pins"] == {} for s in replica_states()), "an out-of-band unpin seen by all")


def test_unload_and_load_through_the_repository_api(app, built):
    client = app.triton()
    client.unload_model("alpha", headers=auth())
    assert all(("alpha", v) in map(tuple, s["unloaded"]) for s in replica_states() for v in (1, 2))
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
    """8 clients on alpha v2 while its archive is replaced by other content and reloaded six
    times, 1.5 s apart: no request fails, and every answer is one content's output."""
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
    for turn in range(6):
        install(built["alpha2b" if turn % 2 == 0 else "alpha2"][0], store_dir, "alpha-2.yyar")
        assert app.request("POST", "/models/alpha/reload").status_code == 200
        reloads[0] += 1
        stop.wait(1.5)  # the clients meet the new content before the next swap
    stop.set()
    for thread in threads:
        thread.join(timeout=180)
    assert failures == []
    assert reloads[0] == 6 and answered[0] > reloads[0]
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


def _clients(n: int, seconds: float, request, during=None) -> tuple[int, list]:
    """``n`` threads calling ``request()`` for ``seconds`` (``during()`` runs in between); returns
    (how many answered, every failure)."""
    answered, failures, stop = [0], [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                request()
                answered[0] += 1
            except Exception as error:  # noqa: BLE001 - every failure is counted and shown
                failures.append(repr(error)[:300])

    threads = [threading.Thread(target=client) for _ in range(n)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    if during is not None:
        during()
    stop.wait(max(0.0, seconds - (time.monotonic() - started)))
    stop.set()
    for thread in threads:
        thread.join(timeout=180)
    return answered[0], failures


def test_a_hot_model_spreads_to_the_other_replica(app, built, store_dir):
    """ray#48741: Ray routes a request that carries a model id to the replicas holding it, and to
    another only when those are full. hot v1, copied into the store by hand, is loaded by one
    replica; 8 clients then ask for it with its id. That replica finds it hot (``hot_requests``
    of its requests in flight) and has every replica load it, so the other one answers too."""
    from ray import serve

    from yyai_kernel.ray_app import ModelId
    from yyai_kernel.store.store import ModelStore

    install(built["hot"][0], store_dir)  # no replica loads a version nobody asked for
    wait_for(lambda: all("hot" in s["defaults"] for s in replica_states()), "hot seen by every replica")
    model_id = str(ModelId.of(ModelStore(store_dir).record("hot", 1)))
    headers = {"serve_multiplexed_model_id": model_id}
    want, per_client = built["hot"][1]["combined"], threading.local()

    def ask():
        endpoint = per_client.__dict__.setdefault("endpoint", Endpoint(app.url, TOKEN))  # a session per client
        _, y = _v2_output(endpoint, built["x"], model="hot", headers=headers)
        np.testing.assert_allclose(y, want, atol=1e-5)

    ask()
    time.sleep(2.0)  # the replica reports its models every 0.1 s; the proxy's router learns it
    stats = serve.get_deployment_handle(DEPLOYMENT, APP).broadcast("stats").results()
    (first,) = [s for s in stats if model_id in s.loaded]
    before = rows_by_node("hot")
    answered, failures = _clients(8, 6.0, ask)
    assert failures == [] and answered > 16
    stats = serve.get_deployment_handle(DEPLOYMENT, APP).broadcast("stats").results()
    assert all(model_id in s.loaded for s in stats)
    assert model_id in next(s for s in stats if s.replica_id == first.replica_id).spreads
    assert served_on_both_nodes(before, rows_by_node("hot"), {s.node_id for s in stats})


def test_killing_a_replica_under_8_clients_fails_no_request_unretried(app, ray_session):
    """8 clients (``YyaiClient.predict``) on digits; the worker node's replica is killed
    (``ray.kill`` of its actor) 2 s in. Ray's router sends elsewhere what the dead replica had
    not accepted; the requests it held fail at Ray's proxy (a text 500), and the client sends
    each of those once more (``client.GATEWAY_RETRIES``). No request fails, no more are retried
    than the 8 in flight, and the head node's replica answers on while Ray replaces the killed one."""
    from ray import serve

    from yyai_kernel.client import YyaiClient

    handle = serve.get_deployment_handle(DEPLOYMENT, APP)
    victim = next(s for s in handle.broadcast("stats").results() if s.node_id == ray_session.nodes[1])
    (name,) = [a["name"] for a in ray_session.ray.util.list_named_actors(all_namespaces=True)
               if a["name"].endswith(f"#{victim.replica_id}")]
    x = np.random.default_rng(7).random((1, 8, 8, 1), dtype=np.float32)
    clients, per_client, answered_at, killed_at = [], threading.local(), [], []

    def ask():
        if not hasattr(per_client, "client"):
            per_client.client = YyaiClient(app.url, TOKEN)
            clients.append(per_client.client)
        assert per_client.client.predict("digits", x).version == 2
        answered_at.append(time.monotonic())

    def kill():
        time.sleep(2.0)
        ray_session.ray.kill(ray_session.ray.get_actor(name, namespace="serve"), no_restart=True)
        killed_at.append(time.monotonic())

    answered, failures = _clients(8, 8.0, ask, during=kill)
    assert failures == []
    retried = sum(client.retried for client in clients)
    assert retried <= 8, retried  # at most the requests in flight on the killed replica
    assert sum(t > killed_at[0] + 1.0 for t in answered_at) > 8  # answered on after the kill
    print(f"killed {name}: {answered} predictions answered, {retried} retried")
