"""``yyai serve --workers 2 --devices 0,1``: one model host per device, each the owner of some models.

This machine has no GPU: each host gets ``CUDA_VISIBLE_DEVICES`` set to its id, which
TensorFlow on CPU ignores, so what is checked here is the placement and the processes,
not the device (README, "On a GPU"). One real supervisor, two hosts and two front ends
serve three tiny models; ``host/placement.py`` puts ``beta`` on device 0 and ``alpha``
and ``gamma`` on device 1 (rendezvous hashing of the names, the same in every process):

* each model is listed, and its status given, with its device; each host holds only its
  own models, within its own budget (``--max-loaded 2`` each); every model answers right
  through both front ends;
* a management call through any front end goes to the model's owner and is seen by the
  next request through the other (an upload, to the owner of the name in its manifest);
  pins made on both hosts both stay in the one state file (each host rewrites it under a
  lock, never over the other's change);
* ``kill -9`` of host 1 under clients of both hosts' models: host 0's model never fails;
  host 1's answer right or 503 with ``Retry-After``, only until the new host 1 is ready.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import numpy as np
import psutil
import pytest
import requests
from builders import install, pack_models, reference, sample_inputs
from serving import start_server

TOKEN = "devices-token"
HEADERS = {"Authorization": f"token {TOKEN}"}
WORKERS = {"0", "1"}
OWNER = {"alpha": "1", "beta": "0", "gamma": "1"}  # Placement.of(["0", "1"]).device(name)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("devices-built")
    return {key: pack_models(root, name, version, seeds)
            for key, name, version, seeds in [("alpha1", "alpha", 1, [31]), ("beta1", "beta", 1, [32]),
                                              ("beta2", "beta", 2, [33]), ("gamma1", "gamma", 1, [34])]}


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    store = tmp_path_factory.mktemp("devices-store")
    for key in ("alpha1", "beta1", "beta2"):  # gamma arrives by upload
        install(built[key][0], store)
    srv = start_server(store, tmp_path_factory.mktemp("devices-work"), token=TOKEN,
                       args=["--workers", "2", "--devices", "0,1", "--max-loaded", "2"])
    srv.store = store
    yield srv
    if srv.proc.poll() is None:
        assert srv.stop() == 0


def v2_body(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}


def output_of(reply: requests.Response, rows: int) -> np.ndarray:
    output = next(o for o in reply.json()["outputs"] if o["name"] == "output")
    return np.reshape(output["data"], (rows, 3))


def spread(server, method: str, path: str, *, tries: int = 200, **kwargs) -> dict[str, requests.Response]:
    """Send the request on fresh connections until both front ends answered; their replies by front end."""
    answers: dict[str, requests.Response] = {}
    for _ in range(tries):
        reply = requests.request(method, server.url + path, headers=HEADERS, timeout=120, **kwargs)
        answers.setdefault(reply.headers["X-Yyai-Worker"], reply)
        if set(answers) == WORKERS:
            return answers
    raise AssertionError(f"{tries} connections all reached worker(s) {sorted(answers)}")


def status(server) -> dict:
    return requests.get(server.url + "/models/_status", headers=HEADERS, timeout=60).json()


def test_models_spread_over_both_hosts_each_with_its_device_and_each_answers_right(server, built):
    from yyai_kernel.host.placement import Placement

    assert {name: Placement.of(["0", "1"]).device(name) for name in OWNER} == OWNER
    stored = {name: device for name, device in OWNER.items() if name != "gamma"}
    listed = requests.get(server.url + "/models", headers=HEADERS, timeout=60).json()
    assert {m["name"]: m.get("device") for m in listed} == stored
    for name, device in stored.items():
        assert requests.get(f"{server.url}/models/{name}", headers=HEADERS, timeout=60).json()["device"] == device
    everything = status(server)
    hosts = everything["hosts"]
    assert [h["worker"] for h in hosts] == [0, 1] and len({h["pid"] for h in hosts}) == 2
    assert set(hosts[0]["models"]) == {"beta"} and set(hosts[1]["models"]) == {"alpha"}
    assert {name: model["device"] for name, model in everything["models"].items()} == stored
    assert everything["residency"]["max_loaded"] == 4  # --max-loaded 2 is each host's
    x = sample_inputs(3, seed=7)
    for name, key in [("alpha", "alpha1"), ("beta", "beta2")]:
        for reply in spread(server, "POST", f"/v2/models/{name}/infer", json=v2_body(x)).values():
            assert reply.status_code == 200, reply.text
            np.testing.assert_allclose(output_of(reply, 3), reference(built[key][1], x)["combined"], atol=1e-5)


def test_management_through_one_front_end_reaches_the_owner_and_is_seen_through_the_other(server, built):
    x = sample_inputs(2, seed=8)
    reply = requests.post(server.url + "/models", data=built["gamma1"][0].read_bytes(), timeout=300,
                          headers={**HEADERS, "Content-Type": "application/octet-stream"})
    assert reply.status_code == 201 and reply.headers["X-Yyai-Applied"] == "2/2", reply.text
    assert reply.json()["model"]["device"] == "1"  # the owner of the name in its manifest installed it
    for reply in spread(server, "POST", "/v2/models/gamma/infer", json=v2_body(x)).values():
        assert reply.status_code == 200, reply.text
        np.testing.assert_allclose(output_of(reply, 2), reference(built["gamma1"][1], x)["combined"], atol=1e-5)
    hosts = status(server)["hosts"]
    assert set(hosts[0]["models"]) == {"beta"} and set(hosts[1]["models"]) == {"alpha", "gamma"}
    assert status(server)["residency"]["loaded"] == 3  # more than one host's --max-loaded 2
    for name, version in [("beta", 1), ("alpha", 1)]:  # one pin on each host
        reply = requests.put(f"{server.url}/models/{name}/default", json={"version": version}, headers=HEADERS,
                             timeout=300)
        assert reply.status_code == 200 and reply.headers["X-Yyai-Applied"] == "2/2", reply.text
    for reply in spread(server, "POST", "/v2/models/beta/infer", json=v2_body(x)).values():
        assert reply.status_code == 200, reply.text
        np.testing.assert_allclose(output_of(reply, 2), reference(built["beta1"][1], x)["combined"], atol=1e-5)
    for reply in spread(server, "GET", "/models/beta").values():
        assert reply.json()["default"] == 1 and reply.json()["pinned"] and reply.json()["device"] == "0"
    state = json.loads((server.store / ".yyai-state.json").read_text())
    assert state["pins"] == {"alpha": 1, "beta": 1}  # neither host wrote over the other's pin
    reply = requests.delete(f"{server.url}/models/beta/default", headers=HEADERS, timeout=300)
    assert reply.status_code == 200 and reply.headers["X-Yyai-Applied"] == "2/2", reply.text
    for reply in spread(server, "GET", "/models/beta").values():
        assert reply.json()["default"] == 2
    assert json.loads((server.store / ".yyai-state.json").read_text())["pins"] == {"alpha": 1}


class Clients:
    """Clients that send one model a v2 request on fresh connections until stopped; each outcome
    with its time: ``("ok", None)``, ``("wrong", text)``, ``("503", retry_after)`` or ``("http", text)``."""

    def __init__(self, server, name: str, models: list, count: int = 2):
        self.server, self.name = server, name
        self.x = sample_inputs(2, seed=9)
        self.expected = reference(models, self.x)["combined"]
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
            reply = requests.post(f"{self.server.url}/v2/models/{self.name}/infer", json=v2_body(self.x),
                                  headers=HEADERS, timeout=120)
            if reply.status_code == 200:
                right = np.allclose(output_of(reply, 2), self.expected, atol=1e-5)
                self._note("ok" if right else "wrong", None if right else reply.text[:300])
            elif reply.status_code == 503:
                self._note("503", reply.headers.get("Retry-After") or f"no Retry-After: {reply.text[:300]}")
                time.sleep(0.2)
            else:
                self._note("http", f"{reply.status_code} {reply.text[:300]}")

    def _note(self, kind: str, detail) -> None:
        with self._lock:
            self.outcomes.append((time.monotonic(), kind, detail))

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def kinds(self) -> Counter:
        with self._lock:
            return Counter(kind for _, kind, _ in self.outcomes)


def _wait_for(condition, what: str, seconds: float = 300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_of_one_host_503s_only_its_models_until_it_is_back(server, built):
    victim = psutil.Process(status(server)["hosts"][1]["pid"])  # device 1: alpha and gamma
    with Clients(server, "beta", built["beta2"][1]) as kept, Clients(server, "alpha", built["alpha1"][1]) as hit:
        _wait_for(lambda: kept.count() >= 10 and hit.count() >= 10, "answers from both hosts")
        victim.kill()
        victim.wait(60)
        killed = time.monotonic()
        _wait_for(lambda: hit.kinds()["503"] > 0, "a 503 for a model of the dead host")
        during = kept.count()
        _wait_for(lambda: requests.get(server.url + "/v2/health/ready", headers=HEADERS, timeout=30).status_code == 200,
                  "the new host 1")
        back = time.monotonic()
        assert kept.count() > during  # host 0's model answered while host 1 was away
        seen = hit.count()
        _wait_for(lambda: hit.count() >= seen + 10, "answers from the new host 1")
    assert set(kept.kinds()) == {"ok"}, kept.kinds()  # never a failure for the other host's model
    kinds = hit.kinds()
    assert set(kinds) <= {"ok", "503"} and kinds["503"] > 0, kinds  # never wrong
    for t, kind, detail in hit.outcomes:
        if kind == "503":
            assert killed - 1 <= t <= back + 1 and str(detail).isdigit(), (t, detail)  # during the restart only
    hosts = status(server)["hosts"]
    assert hosts[1]["restarts"] == 1 and hosts[1]["pid"] != victim.pid and hosts[0]["restarts"] == 0
    assert set(hosts[1]["models"]) == {"alpha", "gamma"}


# --- the placement itself (no server) -----------------------------------------------------------


def test_placement_is_stable_spread_and_moves_only_the_models_of_a_device_that_goes():
    from yyai_kernel.host.placement import Placement

    names = [f"model-{i}" for i in range(2000)]
    four = Placement.of(["0", "1", "2", "3"])
    owners = [four.owner(name) for name in names]
    assert owners == [Placement.of(["0", "1", "2", "3"]).owner(name) for name in names]  # same in every process
    shares = Counter(owners)
    assert set(shares) == {0, 1, 2, 3} and all(400 <= n <= 600 for n in shares.values()), shares
    three = Placement.of(["0", "1", "3"])  # device 2 goes: only its models move
    for name, owner in zip(names, owners, strict=True):
        if four.devices[owner] != "2":
            assert three.device(name) == four.devices[owner]
    assert Placement.of(["7"]).owner("anything") == 0 and Placement.of(["7"]).device("anything") is None


def test_device_lists():
    from yyai_kernel.host.placement import device_list

    assert device_list("0, 1", None) == ["0", "1"] and device_list("", "0,1") == []
    assert device_list("all", "2,3") == ["2", "3"] and device_list("all", None) == []
    with pytest.raises(ValueError, match="names a device twice"):
        device_list("0,0", None)


def test_a_device_named_twice_is_refused_before_anything_starts(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "yyai_kernel.server.app", "--store", str(tmp_path), "--port", "0",
                           "--devices", "1,1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--devices names a device twice" in done.stderr + done.stdout
