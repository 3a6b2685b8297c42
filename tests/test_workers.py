"""``yyai serve --workers 2``: two front ends on one port and one model host, over HTTP, as clients see them.

One real supervisor, its model host and its two front ends serve a temporary copy of the
demo archives plus a tiny model. Each reply names the front end that answered
(``X-Yyai-Worker``); the kernel spreads *connections* over them, so every check here sends
requests on fresh connections until both answered, and asserts what each of them said:

* the front ends hold no TensorFlow (none of its libraries is mapped in them); the host does;
* an upload, a default swap, a reload, an unload and a delete made on one connection are
  seen by the next requests through both front ends, and each management reply says that
  both serve the new state (``X-Yyai-Applied: 2/2``);
* ``/metrics`` on either front end counts the requests both answered and the host's loads;
  ``/models/_status`` lists both front ends and the host with their memory;
* the dashboard, in a real browser, is served by front end 0 on its own port (the shared
  port redirects there), and a promotion made in it reaches both front ends;
* ``kill -9`` of a front end under 8 clients: no wrong reply and no 503, the port keeps
  answering, a management call made meanwhile says which front end is restarting, and it
  comes back serving the current state;
* ``kill -9`` of the host under 8 clients: no wrong reply; every failure is a 503 with
  ``Retry-After``, only until the new host is ready; it serves what was served (the pin);
* reloads and default swaps under 8 clients: every reply right, none failed; reloads under
  8 gRPC and 8 REST clients (half on each front end): the same;
* under ``--max-loaded 1``, concurrent first requests for a version that is not loaded
  share one load and all succeed (a cold start, said in a header), evicting the other;
* SIGTERM stops everything: exit status 0, no process left, no temporary folder left.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
from builders import demo_store, install, pack_models, reference, sample_inputs
from serving import start_server

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "model_archives"
SAMPLES = DEMO / "samples"
TOKEN = "workers-token"
HEADERS = {"Authorization": f"token {TOKEN}"}
WORKERS = {"0", "1"}
WAIT_MS = 90_000


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers-built")
    return {key: pack_models(root, name, version, seeds)
            for key, name, version, seeds in [("alpha1", "alpha", 1, [21]), ("alpha2", "alpha", 2, [22]),
                                              ("gamma1", "gamma", 1, [23, 24])]}


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    store = demo_store(tmp_path_factory.mktemp("workers-store"))
    install(built["alpha1"][0], store)
    srv = start_server(store, tmp_path_factory.mktemp("workers-work"), token=TOKEN,
                       args=["--workers", "2", "--grpc-port", "0"], dashboard=True)
    srv.store = store
    yield srv
    if srv.proc.poll() is None:
        assert srv.stop() == 0


def spread(server, method: str, path: str, *, tries: int = 200, **kwargs) -> dict[str, requests.Response]:
    """Send the request on fresh connections until both workers answered; their replies by worker."""
    kwargs.setdefault("timeout", 60)
    kwargs["headers"] = {**HEADERS, **kwargs.get("headers", {})}
    answers: dict[str, requests.Response] = {}
    for _ in range(tries):
        reply = requests.request(method, server.url + path, **kwargs)  # noqa: S113 - set above; no session: a new connection
        answers.setdefault(reply.headers["X-Yyai-Worker"], reply)
        if set(answers) == WORKERS:
            return answers
    raise AssertionError(f"{tries} connections all reached worker(s) {sorted(answers)}")


def manage(server, method: str, path: str, **kwargs) -> requests.Response:
    reply = requests.request(method, server.url + path, headers={**HEADERS, **kwargs.pop("headers", {})},
                             timeout=300, **kwargs)
    assert reply.status_code in (200, 201), reply.text
    assert reply.headers["X-Yyai-Applied"] == "2/2", reply.headers
    return reply


def png(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def predict(server, path: str, image: str = "digit-3.png", **kwargs) -> dict[str, requests.Response]:
    return spread(server, "POST", path, data=png(image), headers={"Content-Type": "image/png"}, **kwargs)


def v2_body(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}


def workers_of(server) -> list[dict]:
    return requests.get(server.url + "/models/_status", headers=HEADERS, timeout=60).json()["workers"]


# --- every reply names its worker; both serve ------------------------------------------------


def test_both_workers_answer_on_one_port_and_name_themselves(server):
    answers = predict(server, "/predictions/digits")
    for reply in answers.values():
        assert reply.status_code == 200 and reply.json()["version"] == 2
    status = requests.get(server.url + "/models/_status", headers=HEADERS, timeout=60).json()
    workers, hosts = status["workers"], status["hosts"]
    assert [w["worker"] for w in workers] == [0, 1] and len(hosts) == 1
    for worker in [*workers, *hosts]:
        assert worker["state"] == "serving" and worker["rss_bytes"] > 20 * 2**20 and worker["restarts"] == 0
    assert hosts[0]["models"]["digits"]["default"] == 2 and hosts[0]["role"] == "host"
    assert all(w["models"] == {} for w in workers)  # front ends hold no model
    assert len({w["pid"] for w in [*workers, *hosts]}) == 3
    assert status["residency"]["loaded"] >= 2 and status["residency"]["resident_bytes"] > 0
    assert status["models"]["digits"]["versions"]["2"]["memory_bytes"] > 0
    for reply in spread(server, "GET", "/v2/health/ready").values():
        assert reply.status_code == 200


# --- management on one connection, seen on both workers ---------------------------------------


def test_upload_is_served_by_both_workers(server, built):
    archive, models = built["gamma1"]
    reply = manage(server, "POST", "/models", data=archive.read_bytes(),
                   headers={"Content-Type": "application/octet-stream"})
    assert reply.status_code == 201 and reply.json()["version"] == 1
    x = sample_inputs(2, seed=5)
    expected = reference(models, x)["combined"]
    for reply in spread(server, "POST", "/v2/models/gamma/infer", json=v2_body(x)).values():
        assert reply.status_code == 200, reply.text
        output = next(o for o in reply.json()["outputs"] if o["name"] == "output")
        np.testing.assert_allclose(np.reshape(output["data"], (2, 3)), expected, atol=1e-5)


def test_a_large_tensor_crosses_to_the_host_in_shared_memory_and_answers_right(server, built):
    """2 MiB of input or more travels in a shared-memory segment, removed once the reply came."""
    from yyai_kernel.host.channel import SHARED_MEMORY_BYTES

    rows = SHARED_MEMORY_BYTES // (4 * 4 * 4) + 1  # float32 4x4x1 inputs
    x = np.random.default_rng(3).random((rows, 4, 4, 1), dtype=np.float32)
    reply = requests.post(server.url + "/v2/models/alpha/infer", json=v2_body(x), headers=HEADERS, timeout=300)
    assert reply.status_code == 200, reply.text[:500]
    output = next(o for o in reply.json()["outputs"] if o["name"] == "output")
    np.testing.assert_allclose(np.reshape(output["data"], (rows, 3)), reference(built["alpha1"][1], x)["combined"],
                               atol=1e-5)
    senders = {f"yyai-{w['pid']}-" for w in workers_of(server)}
    assert not [f for f in os.listdir("/dev/shm") if any(f.startswith(s) for s in senders)]


def test_default_swap_and_unpin_reach_both_workers(server):
    manage(server, "PUT", "/models/digits/default", json={"version": 1})
    for reply in predict(server, "/predictions/digits").values():
        assert reply.json()["version"] == 1
    manage(server, "DELETE", "/models/digits/default")
    for reply in predict(server, "/predictions/digits").values():
        assert reply.json()["version"] == 2


def test_labels_and_traffic_policies_reach_both_workers(server):
    """A label on a version the other worker never loaded, then a canary: both workers serve them."""
    manage(server, "PUT", "/models/digits/labels/old", json={"version": 1})
    for reply in predict(server, "/predictions/digits/old").values():
        assert reply.status_code == 200 and reply.json()["version"] == 1
    manage(server, "PUT", "/models/digits/traffic", json={"canary": {"version": 1, "percent": 100}})
    for reply in predict(server, "/predictions/digits").values():
        assert reply.json()["version"] == 1  # every default request goes to the canary, on both
    manage(server, "DELETE", "/models/digits/traffic")
    manage(server, "DELETE", "/models/digits/labels/old")
    for worker, reply in predict(server, "/predictions/digits").items():
        assert reply.json()["version"] == 2, worker
    for reply in predict(server, "/predictions/digits/old").values():
        assert reply.status_code == 404


def test_an_evaluation_started_on_one_worker_is_followed_on_both(server):
    """Evaluation jobs live in the folder every worker shares: any worker answers for a job."""
    reply = requests.post(server.url + "/models/digits/evaluate", headers=HEADERS, timeout=120,
                          params={"versions": "2", "set": "eval/digits-eval.zip"})
    assert reply.status_code == 202, reply.text
    location = reply.headers["Location"]

    def ended():
        job = requests.get(server.url + location, headers=HEADERS, timeout=60).json()
        return job if job["state"] in ("done", "failed") else None

    final = _wait_for(ended, "the evaluation to end")
    assert final["state"] == "done" and final["done"] == final["total"] > 0, final
    for worker, reply in spread(server, "GET", location).items():
        assert reply.status_code == 200 and reply.json()["state"] == "done", (worker, reply.text)


def test_reload_reaches_both_workers(server):
    before = {w: r.json()["versions"]["1"]["loaded_at"]
              for w, r in spread(server, "GET", "/models/colorfulness").items()}
    manage(server, "POST", "/models/colorfulness/reload")
    for worker, reply in spread(server, "GET", "/models/colorfulness").items():
        version = reply.json()["versions"]["1"]
        assert version["state"] == "ready" and version["loaded_at"] > before[worker]


def test_upload_of_a_new_version_then_unload_and_delete_reach_both_workers(server, built):
    manage(server, "POST", "/models", data=built["alpha2"][0].read_bytes(),
           headers={"Content-Type": "application/octet-stream"})
    x = sample_inputs(1, seed=6)
    for reply in spread(server, "POST", "/v2/models/alpha/versions/2/infer", json=v2_body(x)).values():
        assert reply.status_code == 200
    manage(server, "DELETE", "/models/alpha/versions/2")  # unload: the archive stays
    for reply in spread(server, "POST", "/v2/models/alpha/versions/2/infer", json=v2_body(x)).values():
        assert reply.status_code == 503 and reply.json()["type"] == "ModelNotReadyError"
    manage(server, "POST", "/v2/repository/models/alpha/load", json={})
    manage(server, "DELETE", "/models/alpha/versions/2", params={"purge": "true"})  # delete the archive
    assert not (server.store / "alpha-2.yyar").exists()
    for reply in spread(server, "GET", "/models/alpha").values():
        assert list(reply.json()["versions"]) == ["1"] and reply.json()["default"] == 1
    for reply in spread(server, "POST", "/v2/models/alpha/versions/2/infer", json=v2_body(x)).values():
        assert reply.status_code == 404
    rescan = manage(server, "POST", "/models/_rescan")
    assert set(rescan.json()) >= {"alpha", "digits", "gamma"}


# --- gRPC: every worker serves it on the shared gRPC port, and its management replicates -------


def test_grpc_is_served_by_the_workers_and_its_unload_reaches_both(server, built):
    import tritonclient.grpc as grpcclient

    x = sample_inputs(2, seed=9)
    client = grpcclient.InferenceServerClient(server.grpc_address)
    metadata = {"authorization": f"token {TOKEN}"}
    try:
        for _ in range(4):  # one channel; its requests reach whichever worker holds the connection
            tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            result = client.infer("alpha", [tensor], headers=metadata)
            np.testing.assert_allclose(result.as_numpy("output"), reference(built["alpha1"][1], x)["combined"],
                                       atol=1e-5)
        client.unload_model("alpha", headers=metadata)
        for reply in spread(server, "POST", "/v2/models/alpha/infer", json=v2_body(x)).values():
            assert reply.status_code == 503
        client.load_model("alpha", headers=metadata)
        for reply in spread(server, "POST", "/v2/models/alpha/infer", json=v2_body(x)).values():
            assert reply.status_code == 200
    finally:
        client.close()


def test_grpc_and_rest_clients_on_both_front_ends_while_the_model_reloads(server, built):
    """test_grpc's reload under 16 clients, with the REST clients spread over both front ends."""
    from test_grpc import clients_while_reloading

    clients_while_reloading(server, built["alpha1"][1], front_ends=2)


# --- metrics add up over the workers -----------------------------------------------------------


def _counter(text: str, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_count_the_requests_of_both_workers(server):
    scrape = requests.get(server.url + "/metrics", headers=HEADERS, timeout=60).text
    before = _counter(scrape, "yyai_http_requests_total", endpoint="predictions", model="colorfulness", code="200")
    calls = _counter(scrape, "yyai_model_predictions_total", model="colorfulness")
    sent = {"0": 0, "1": 0}
    while min(sent.values()) < 3:
        reply = requests.post(server.url + "/predictions/colorfulness", data=png("flower-1.png"),
                              headers={**HEADERS, "Content-Type": "image/png"}, timeout=60)
        assert reply.status_code == 200
        sent[reply.headers["X-Yyai-Worker"]] += 1
    for reply in spread(server, "GET", "/metrics").values():
        after = reply.text
        assert _counter(after, "yyai_http_requests_total", endpoint="predictions", model="colorfulness",
                        code="200") == before + sum(sent.values())
        assert _counter(after, "yyai_model_predictions_total", model="colorfulness") == calls + sum(sent.values())
        assert _counter(after, "yyai_model_batch_size_count", model="colorfulness") >= sum(sent.values())
        assert _counter(after, "yyai_loads_total") >= 2 and _counter(after, "yyai_resident_bytes") > 0
        assert _counter(after, "yyai_model_memory_bytes", model="colorfulness", version="1") > 0


def test_an_explanation_through_a_front_end_is_computed_by_the_host(server):
    reply = requests.post(server.url + "/predictions/digits?explain=gradcam", data=png("digit-3.png"),
                          headers={**HEADERS, "Content-Type": "image/png"}, timeout=120)
    assert reply.status_code == 200, reply.text
    explained = reply.json()["predictions"][0]["explanations"]
    assert explained["cnn_a"]["available"] and explained["cnn_a"]["overlay_png"]


def _maps(pid: int, package: str) -> bool:
    """Whether a process has a package's compiled libraries mapped: true once it imported it."""
    return any(f"/{package}/" in m.path for m in psutil.Process(pid).memory_maps())


def test_front_ends_hold_no_tensorflow_and_the_host_does(server):
    status = requests.get(server.url + "/models/_status", headers=HEADERS, timeout=60).json()
    for worker in status["workers"]:
        assert not _maps(worker["pid"], "tensorflow"), worker
    host = status["hosts"][0]["pid"]
    assert _maps(host, "tensorflow")
    # Keras's optional integrations stay out of the host (runtime/prime.py, SERVING_SKIPS)
    assert not _maps(host, "sklearn") and not _maps(host, "pandas")
    assert max(w["rss_bytes"] for w in status["workers"]) < status["hosts"][0]["rss_bytes"]




# --- the dashboard: worker 0's port, in a real browser ---------------------------------------


def test_dashboard_is_worker_0s_and_its_changes_reach_both_workers(server):
    from playwright.sync_api import expect, sync_playwright

    redirected = requests.get(server.url + "/", params={"token": TOKEN}, allow_redirects=False, timeout=60)
    assert redirected.status_code == 302
    dashboard = redirected.headers["Location"]
    assert dashboard.endswith(f"/?token={TOKEN}") and dashboard != f"{server.url}/?token={TOKEN}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            served_by = []
            page.on("response", lambda r: served_by.append(r.headers.get("x-yyai-worker")) if r.url.startswith(
                dashboard.split("/?")[0]) else None)
            page.goto(f"{server.url}/?token={TOKEN}", wait_until="commit")  # the shared port: redirected
            expect(page.locator(".yyai-predict-button")).to_be_enabled(timeout=WAIT_MS)
            assert page.url.startswith(dashboard.split("/?")[0])
            page.select_option(".yyai-model-select select", label="digits")
            expect(page.locator(".yyai-version-select select")).to_contain_text("v2 (default", timeout=WAIT_MS)
            page.locator(".yyai-source button", has_text="My images").click()
            with page.expect_file_chooser() as chooser:
                page.locator(".yyai-image-upload").click()
            chooser.value.set_files([str(SAMPLES / "digit-3.png")])
            expect(page.locator(".yyai-upload-info")).to_contain_text("digit-3.png", timeout=WAIT_MS)
            page.locator(".yyai-predict-button").click()
            expect(page.locator(".yyai-top-label[data-version='2']")).to_have_text("3", timeout=WAIT_MS)
            page.locator(".yyai-tabs .lm-TabBar-tab", has_text="Manage").click()
            page.select_option(".yyai-manage-model select", label="digits")
            version = page.locator(".yyai-manage-version select")
            expect(version.locator("option")).to_have_count(2, timeout=WAIT_MS)  # digits' v1 and v2
            labels = version.locator("option").all_inner_texts()
            version.select_option(index=next(i for i, t in enumerate(labels) if t.startswith("v1")))
            page.locator(".yyai-default-button").click()
            expect(page.locator(".yyai-manage-message .yyai-ok")).to_contain_text(
                "v1 is now the default of digits", timeout=WAIT_MS)
            assert not errors, errors
            assert set(served_by) == {"0"}, served_by  # every page, script and kernel message: worker 0
        finally:
            browser.close()
    for reply in predict(server, "/predictions/digits").values():  # the kernel called the shared port
        assert reply.json()["version"] == 1
    manage(server, "DELETE", "/models/digits/default")


# --- a worker killed: the port keeps answering, the worker comes back ---------------------------


def _wait_for(condition, what: str, seconds: float = 300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


class Clients:
    """``count`` clients that predict digit-3.png on fresh connections until stopped; every outcome
    with its time: ``("ok", version)``, ``("wrong", text)``, ``("503", retry_after)``, ``("http", status)``
    or ``("dropped", error)`` (the connection went: the front end it reached was killed)."""

    def __init__(self, server, count: int = 8, path: str = "/predictions/digits"):
        self.server, self.path = server, path
        self.outcomes: list[tuple[float, str, object]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = requests.post(self.server.url + self.path, data=png("digit-3.png"),
                                      headers={**HEADERS, "Content-Type": "image/png"}, timeout=120)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
                # refused, reset, or cut in the middle of the reply's body: all a dropped connection
                self._note("dropped", type(error).__name__)
                time.sleep(0.05)
                continue
            if reply.status_code == 200:
                body = reply.json()
                top = body["predictions"][0]["top"]
                self._note("ok" if top == "3" else "wrong", body["version"] if top == "3" else reply.text)
            elif reply.status_code == 503:
                self._note("503", reply.headers.get("Retry-After") or f"no Retry-After: {reply.text[:300]}")
                time.sleep(0.2)
            else:
                self._note("http", f"{reply.status_code} {reply.text[:200]}")

    def _note(self, kind: str, detail) -> None:
        with self._lock:
            self.outcomes.append((time.monotonic(), kind, detail))

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def kinds(self) -> Counter:
        with self._lock:
            return Counter(kind for _, kind, _ in self.outcomes)


def _wait_for_answers(clients: Clients, more: int) -> None:
    target = clients.count() + more
    _wait_for(lambda: clients.count() >= target, f"{more} more answers")


def test_kill_9_of_a_worker_under_8_clients_no_failure_and_it_comes_back(server):
    status = workers_of(server)
    victim = psutil.Process(status[1]["pid"])
    with Clients(server) as clients:
        _wait_for_answers(clients, 40)
        victim.kill()
        victim.wait(60)
        killed = time.monotonic()
        # a change while worker 1 is down: the reply says so, and the worker reads it before it serves
        changed = requests.put(server.url + "/models/digits/default", json={"version": 1}, headers=HEADERS,
                               timeout=300)
        assert changed.status_code == 200 and changed.headers["X-Yyai-Applied"] == "1/2"
        assert "worker 1 is restarting" in changed.headers["X-Yyai-Not-Applied"]

        def back():
            workers = workers_of(server)
            return workers[1]["state"] == "serving" and workers[1]["pid"] != victim.pid and workers

        workers = _wait_for(back, "worker 1 to come back")
        _wait_for_answers(clients, 40)
    kinds = clients.kinds()
    assert set(kinds) <= {"ok", "dropped"}, kinds  # no wrong reply, no 503, no other error
    dropped = [t for t, kind, _ in clients.outcomes if kind == "dropped"]
    assert len(dropped) <= 8 and all(t >= killed - 1 for t in dropped), dropped  # only what was in flight on it
    assert workers[1]["restarts"] == 1
    for reply in predict(server, "/predictions/digits").values():  # the restarted worker reads the pin
        assert reply.status_code == 200 and reply.json()["version"] == 1
    manage(server, "DELETE", "/models/digits/default")


def test_reloads_and_default_swaps_under_8_clients_every_reply_is_right(server):
    with Clients(server) as clients:
        _wait_for_answers(clients, 20)
        for _ in range(2):
            manage(server, "POST", "/models/digits/reload")
            manage(server, "PUT", "/models/digits/default", json={"version": 1})
            _wait_for_answers(clients, 10)
            manage(server, "DELETE", "/models/digits/default")
        _wait_for_answers(clients, 20)
    kinds = clients.kinds()
    assert set(kinds) == {"ok"}, kinds
    assert {v for _, kind, v in clients.outcomes} == {1, 2}  # both versions answered, each correctly


def predict_once(server) -> str:
    reply = requests.post(server.url + "/predictions/digits", data=png("digit-3.png"),
                          headers={**HEADERS, "Content-Type": "image/png"}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.headers["X-Yyai-Worker"]


# --- SIGTERM: nothing left behind ---------------------------------------------------------------


def test_sigterm_stops_every_worker_and_leaves_nothing_behind(server):
    supervisor = psutil.Process(server.proc.pid)
    everyone = supervisor.children(recursive=True)
    assert len([p for p in everyone if "yyai_kernel.server.app" in " ".join(p.cmdline())]) == 2
    assert len([p for p in everyone if "yyai_kernel.host" in " ".join(p.cmdline())]) == 1
    folders = {Path(p).parent for p in re.findall(r"Temporary files in (\S+)", server.log())}
    assert len(folders) == 1
    folder = folders.pop()
    assert folder.is_dir() and folder.name.startswith(f"yyai-server-{server.proc.pid}-")
    assert server.stop() == 0
    _gone, alive = psutil.wait_procs(everyone, timeout=30)
    assert not alive, f"left running: {alive}"
    assert not folder.exists()
    assert "Traceback" not in server.log()
    assert not [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] in {q.pid for q in everyone}]
    assert os.environ.get("YYAI_WORKER") is None and os.environ.get("YYAI_HOST") is None


# --- the model host: killed under load, and its budget ---------------------------------------------


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory):
    """A second server: the demo store under --max-loaded 1 (one version loaded at a time)."""
    store = demo_store(tmp_path_factory.mktemp("budget-store"))
    srv = start_server(store, tmp_path_factory.mktemp("budget-work"), token=TOKEN,
                       args=["--workers", "2", "--max-loaded", "1", "--warm", "1"])
    yield srv
    if srv.proc.poll() is None:
        assert srv.stop() == 0


def residency(server) -> dict:
    return requests.get(server.url + "/models/_status", headers=HEADERS, timeout=60).json()["residency"]


def test_concurrent_first_requests_share_one_load_and_evict_the_other(budgeted):
    """One version is warm (--warm 1); 8 clients at once ask for the model that is not, then for the other."""
    before = residency(budgeted)
    assert before["loaded"] == 1 and before["max_loaded"] == 1
    models = requests.get(budgeted.url + "/models", headers=HEADERS, timeout=60).json()
    warm = {m["name"] for m in models if m["loaded"]}
    order = sorted((("colorfulness", "flower-1.png"), ("digits", "digit-3.png")), key=lambda m: m[0] in warm)
    for name, image in order:
        start = threading.Barrier(8)

        def ask(_, name=name, image=image, start=start):
            start.wait()
            return requests.post(f"{budgeted.url}/predictions/{name}", data=png(image),
                                 headers={**HEADERS, "Content-Type": "image/png"}, timeout=120)

        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(ask, range(8)))
        assert [r.status_code for r in replies] == [200] * 8, [r.text for r in replies]
        assert any("X-Yyai-Cold-Start" in r.headers for r in replies)
    after = residency(budgeted)
    assert after["loads"] - before["loads"] == 2 and after["evictions"] - before["evictions"] == 2
    assert after["loaded"] == 1 and after["load_failures"] == 0 and after["cold_starts"] >= 2


def test_kill_9_of_the_host_under_8_clients_only_503s_until_it_is_back(budgeted):
    assert requests.put(budgeted.url + "/models/digits/default", json={"version": 1}, headers=HEADERS,
                        timeout=300).status_code == 200
    status = requests.get(budgeted.url + "/models/_status", headers=HEADERS, timeout=60).json()
    host = psutil.Process(status["hosts"][0]["pid"])
    with Clients(budgeted) as clients:
        _wait_for_answers(clients, 30)
        host.kill()
        host.wait(60)
        killed = time.monotonic()

        def ready_again():
            reply = requests.get(budgeted.url + "/v2/health/ready", headers=HEADERS, timeout=30)
            return reply.status_code == 200

        _wait_for(ready_again, "the new host")
        back = time.monotonic()
        _wait_for_answers(clients, 30)
    kinds = clients.kinds()
    assert set(kinds) <= {"ok", "503"} and kinds["503"] > 0, kinds  # never wrong, never dropped
    for t, kind, detail in clients.outcomes:
        if kind == "503":
            assert killed - 1 <= t <= back + 1 and detail.isdigit(), (t, detail)  # during the restart, Retry-After
        else:
            assert detail == 1  # the new host serves the pin
    hosts = requests.get(budgeted.url + "/models/_status", headers=HEADERS, timeout=60).json()["hosts"]
    assert hosts[0]["restarts"] == 1 and hosts[0]["pid"] != host.pid


# --- the option itself ------------------------------------------------------------------------


def test_worker_0s_preheated_dashboard_kernel_gets_the_url_and_token(tmp_path):
    """Worker 0's pooled kernel (started before any visit) reaches the shared port with the token."""
    import json

    from test_server import KERNEL_CHECK

    store = tmp_path / "empty-store"
    store.mkdir()
    notebook = tmp_path / "check.ipynb"
    notebook.write_text(json.dumps(KERNEL_CHECK))
    srv = start_server(store, tmp_path / "work", token=TOKEN, args=["--workers", "2", "--notebook", str(notebook)],
                       dashboard=True)
    try:
        page = requests.get(f"{srv.url}/", params={"token": TOKEN}, timeout=60)  # redirected to worker 0
        assert page.status_code == 200 and page.headers["X-Yyai-Worker"] == "0"
        assert f"CHECK {srv.url} {TOKEN} True [] False" in page.text
        log = srv.wait_for_log("Using pre-heated kernel")
        assert "[YyaiServer w1] Kernel started" not in log  # worker 1 serves no dashboard
    finally:
        assert srv.stop() == 0


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_a_bad_worker_count_is_refused_before_anything_starts(tmp_path, value):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "yyai_kernel.server.app", "--store", str(tmp_path), "--port", "0",
                           "--workers", value], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--workers must be a positive number or 'auto'" in done.stderr + done.stdout


def test_auto_is_one_worker_per_usable_cpu():
    from yyai_kernel.server.workers.supervisor import worker_count

    assert worker_count("auto") == len(os.sched_getaffinity(0)) and worker_count("3") == 3
