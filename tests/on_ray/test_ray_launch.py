"""``yyai ray``: its options refused like ``yyai serve``'s, and a real run on the session's Ray.

The run joins the session's local Ray (``--address``, so no second Ray starts on two cores),
serves a one-model store with one model replica on Serve's port, answers a v2 request with
the token it was given, and on SIGTERM deletes its application and exits 0, leaving the
session's Ray running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from builders import install, pack_models, reference, sample_inputs

YYAI = str(Path(sys.executable).parent / "yyai")
# `yyai` as its console script runs it, then what the refusal left imported, and the exit status
REFUSING = ("import sys\nfrom yyai_kernel.cli import app\ntry:\n    app(sys.argv[1:], prog_name='yyai')\n"
            "except SystemExit as done:\n    print('ray' in sys.modules, 'tensorflow' in sys.modules, done.code)\n")


@pytest.mark.parametrize("args,message", [
    (["--tokn", "x"], "No such option: --tokn"),
    (["--replicas", "2", "--autoscale", "1:3"], "exclude each other"),
    (["--autoscale", "3"], "not a range like 1:4"),
    (["--replicas", "0"], "--replicas"),
    (["stray"], "unexpected extra argument"),
])
def test_unknown_or_conflicting_options_exit_2_before_anything_starts(args, message):
    done = subprocess.run([sys.executable, "-c", REFUSING, "ray", *args], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False", "2"], done.stdout + done.stderr  # neither Ray nor TensorFlow
    assert message.lower() in " ".join(done.stderr.split()).lower()


def test_yyai_ray_serves_a_store_and_stops_on_sigterm(ray_session, tmp_path):
    from ray import serve

    archive, models = pack_models(tmp_path / "built", "alpha", 1, [31])
    store = tmp_path / "store"
    store.mkdir()
    install(archive, store)
    gcs = ray_session.ray.get_runtime_context().gcs_address
    log_path = tmp_path / "yyai-ray.log"
    command = [YYAI, "ray", "--store", str(store), "--replicas", "1", "--max-models", "1", "--token", "launch-token",
               "--port", str(ray_session.serve_port), "--address", gcs]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **ray_session.env, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 300
        while "is serving at" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        assert f"serving at {ray_session.serve_url}/" in log_path.read_text()
        x = sample_inputs(2, seed=4)
        body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
        headers = {"Authorization": "token launch-token"}
        reply = requests.post(f"{ray_session.serve_url}/v2/models/alpha/infer", json=body, headers=headers, timeout=120)
        assert reply.status_code == 200, reply.text
        output = next(o for o in reply.json()["outputs"] if o["name"] == "output")
        np.testing.assert_allclose(np.array(output["data"]).reshape(output["shape"]),
                                   reference(models, x)["combined"], atol=1e-5)
        assert requests.get(f"{ray_session.serve_url}/v2", timeout=60).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    assert code == 0, log_path.read_text(errors="replace")[-3000:]
    assert "yyai" not in serve.status().applications
    assert ray_session.ray.is_initialized()
