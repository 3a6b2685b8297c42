"""`yyai serve` started with exactly the KServe runtime's args, driven by KServe's own clients.

The command is the image's entrypoint (the `yyai` console script) with the runtime
manifest's `args`, and the token comes from `YYAI_TOKEN`, as the Secret gives it in a pod.
Only what the test rules force is changed: /mnt/models -> a temporary store; --host
0.0.0.0 -> 127.0.0.1 (servers in tests bind loopback only); --port 8080 and --grpc-port
8081 -> free ports. KServe's clients run in a subprocess (tests/kserve_clients.py): the
KServe SDK cannot share a process with tritonclient.grpc (see tests/kserve_sdk.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from builders import install, pack_models, reference, sample_inputs

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "kserve-secret-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runtime_args() -> list[str]:
    runtime = yaml.safe_load((ROOT / "deploy" / "kserve" / "runtime.yaml").read_text())
    [container] = runtime["spec"]["containers"]
    return container["args"]


def _substitute(args: list[str], values: dict[str, str]) -> list[str]:
    out = list(args)
    for flag, value in values.items():
        out[out.index(flag) + 1] = value
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("kserve")
    archive, models = pack_models(root, "alpha", 1, [11, 12])
    store = root / "models"
    store.mkdir()
    install(archive, store)
    http_port, grpc_port = _free_port(), _free_port()
    args = _substitute(_runtime_args(), {"--store": str(store), "--host": "127.0.0.1",
                                         "--port": str(http_port), "--grpc-port": str(grpc_port)})
    env = {key: value for key, value in os.environ.items() if key not in ("YYAI_URL", "JUPYTER_TOKEN")}
    env.update(YYAI_TOKEN=TOKEN, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    log = (root / "server.log").open("wb")
    # The image's ENTRYPOINT is the `yyai` console script; run that, not python -m.
    proc = subprocess.Popen([str(Path(sys.executable).with_name("yyai")), *args], stdout=log,
                            stderr=subprocess.STDOUT, cwd=root, env=env)
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 180
    while True:  # the readiness probe, as the kubelet sends it: no token
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (root / "server.log").read_text()[-3000:]
        time.sleep(0.3)
    yield {"url": url, "grpc": f"127.0.0.1:{grpc_port}", "models": models, "root": root}
    proc.terminate()
    assert proc.wait(60) == 0
    log.close()


def test_probes_answer_without_a_token_and_nothing_else_does(served):
    url = served["url"]
    live, ready = (requests.get(f"{url}/v2/health/{probe}", timeout=10) for probe in ("live", "ready"))
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    for path in ("/v2", "/v2/models/alpha", "/v2/models/alpha/ready", "/models", "/metrics"):
        assert requests.get(f"{url}{path}", timeout=10).status_code == 401, path
        assert requests.get(f"{url}{path}", headers={"Authorization": f"token {TOKEN}"},
                            timeout=10).status_code == 200, path


def test_kserves_own_clients_run_health_metadata_and_infer(served):
    x = sample_inputs(3)
    x_path = served["root"] / "x.npy"
    np.save(x_path, x)
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("kserve_clients.py")), served["url"], served["grpc"],
         TOKEN, "alpha", str(x_path)], capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout)
    expected = reference(served["models"], x)
    for side in ("rest", "grpc"):
        assert got[side]["live"] is True and got[side]["ready"] is True and got[side]["model_ready"] is True
        np.testing.assert_allclose(got[side]["outputs"]["output"], expected["combined"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[side]["outputs"]["m11"], expected["members"][0], rtol=1e-5, atol=1e-6)
    assert got["rest"]["model_ready_without_token"] is False
    assert got["rest"]["metadata"]["inputs"][0]["name"] == "input"
    assert got["grpc"]["metadata"] == {"name": "alpha", "inputs": ["input"], "outputs": ["output", "m11", "m12"]}
    # --public-health opens ServerLive and ServerReady (called above without a token), nothing else
    assert got["grpc"]["model_ready_without_token"] == "UNAUTHENTICATED"
    assert got["grpc"]["infer_without_token"] == "UNAUTHENTICATED"
