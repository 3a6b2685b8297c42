"""Peer comparison: the same Keras models served by yyai and by the servers a user would pick instead.

``make bench`` runs this. It is a benchmark, not a test: it measures and writes, and asserts
nothing about time. One run:

1. Prepares the models (``bench/.work/compare/``): the demo digits model taken out of
   ``model_archives/digits-1.yyar`` and a heavier CNN with a 64x64x3 input built with a fixed
   seed. Each is saved as ``.keras`` for the peers and packed as a ``.yyar`` for yyai, with
   the same request body for everyone (a v2 JSON tensor) and a PNG of the same input for
   yyai's ``/predictions``.
2. Creates each peer's venv under ``bench/.venvs/<peer>`` from PyPI (``bench/peers/venvs.py``),
   and installs Debian's ``wrk`` if it is missing.
3. Runs the servers one after another on 127.0.0.1, in rounds (A B A B ...), so that drift
   of the machine shows up as spread, not bias: yyai (batching on and off; v2 infer and
   ``/predictions``; one process and ``--workers 2``), yyai on Ray Serve (``yyai ray``: the
   same API on a local Ray, one replica that serves it and runs the models), Flask + ``model.predict()``,
   PyTriton, MLServer, TorchServe, Ray Serve.
   For each server and model: exact p50/p99 at concurrency 1 (an aiohttp client in its own
   process), throughput and p99 at concurrency 8 and 32 (``wrk -t1`` with a Lua script), the
   load generator's CPU, the server's peak RSS (psutil over its whole process tree) and its
   cold start (process start to the first successful prediction of every model). The
   servers that speak v2 gRPC (yyai, PyTriton, MLServer) are measured over gRPC too, at
   concurrency 1, 8 and 32, with tritonclient.grpc (``peers/grpcload.py``, every request's
   latency, in its own process).
4. The limit: the same models called in-process through a traced function, batch 1 and best.
5. Reload under load, for yyai and every peer that can reload a model while serving: 16
   clients for 60 s with a reload every 3 s; failed requests, p99 during reloads against
   steady-state p99, and RSS after 100 reloads.
6. Writes ``bench/.work/compare/results.json``, the ``## Peer comparison``, ``## Peer comparison
   over v2 gRPC`` and ``## yyai on Ray Serve`` sections of ``bench/RESULTS.md`` and the plots
   ``bench/plots/latency_cdf_c1.png`` and ``bench/plots/throughput_vs_concurrency.png``.

Usage::

    python bench/compare.py                       # the full run (about 35 minutes on 2 cores)
    python bench/compare.py --quick --peers yyai,flask
    python bench/compare.py --setup-only          # only build the peer venvs
    python bench/compare.py --report-only         # redraw the report from results.json
    python bench/compare.py --endpoints grpc --no-reload   # only the gRPC rows
    python bench/compare.py --peers yyai,yyai-ray,ray --endpoints v2,predictions --no-reload  # the Ray rows

A run of a subset of servers (``--peers``, ``--endpoints``, ``--no-reload``) leaves the committed
report alone: it writes ``bench/.work/compare/results-partial.json``, ``RESULTS.partial.md`` and
``plots/`` there. Two exceptions: a run that measured gRPC on every server that speaks it
rewrites the gRPC section of ``bench/RESULTS.md``, and a run of yyai, yyai on Ray Serve and the
plain Ray Serve peer rewrites the ``yyai on Ray Serve`` section (each complete by itself).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path
from typing import ClassVar

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS_DIR = BENCH / "peers"
WORK = BENCH / ".work" / "compare"
PLOTS = BENCH / "plots"
RESULTS_MD = BENCH / "RESULTS.md"  # compare.py rewrites only its "## Peer comparison" section
YYAI_PY = Path(sys.executable)

sys.path.insert(0, str(PEERS_DIR))
import venvs  # noqa: E402
from benchlib import (  # noqa: E402
    Target,
    cpu_seconds,
    free_port,
    http,
    log,
    machine,
    percentile,
    run_client,
)

ALL_SERVERS = ["yyai", "yyai-workers2", "yyai-nobatch", "yyai-ray", "flask", "pytriton", "mlserver", "torchserve",
               "ray"]
RAY_ROWS = ["yyai", "yyai-ray", "ray"]  # the "yyai on Ray Serve" section: its own rows, complete by themselves
RELOADABLE = ["yyai", "yyai-workers2", "mlserver", "pytriton", "torchserve"]
ENDPOINTS = ["v2", "predictions", "grpc"]  # REST v2 infer, yyai's image route, v2 gRPC ModelInfer
MODELS = ["digits", "cnn64"]
TOKEN = "bench-token-0123456789"
SEED = 20261125
RELOAD_MODEL = "digits"


# --------------------------------------------------------------------------- models


def prepare_models_main(work: Path) -> None:
    """(In a subprocess.) Write the .keras files, the .yyar store, and the request bodies."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    sys.path.insert(0, str(ROOT))
    import cv2
    import keras
    import numpy as np

    from yyai_kernel.archive import kerasload, open_archive, pack

    models, store, bodies = work / "models", work / "store", work / "bodies"
    for d in (models, store, bodies):
        d.mkdir(parents=True, exist_ok=True)

    # digits: the demo archive's own member, re-saved natively for the peers.
    src = ROOT / "model_archives" / "digits-1.yyar"
    with open_archive(src) as opened:
        member = opened.manifest.members[0]
        model = kerasload.load_member(opened.member_path(member))
        digits_input = opened.manifest.input.to_json()
    model.save(models / "digits.keras")
    shutil.copy(src, store / "digits-1.yyar")
    png = (ROOT / "model_archives" / "samples" / "digit-3.png").read_bytes()
    gray = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    gray = cv2.resize(gray, tuple(digits_input["shape"][1::-1]), interpolation=cv2.INTER_LINEAR)
    x = (gray.astype(np.float32) * float(digits_input.get("scale", 1.0)) + float(digits_input.get("offset", 0.0)))
    write_bodies(bodies / "digits", x.reshape(digits_input["shape"]), png, digits_input.get("name", "input"))

    # cnn64: a heavier CNN on 64x64x3, fixed seed, untrained (the weights do not change the cost).
    keras.utils.set_random_seed(SEED)
    layers = keras.layers
    cnn = keras.Sequential([
        keras.Input((64, 64, 3), name="input"),
        layers.Conv2D(32, 3, activation="relu", padding="same"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu", padding="same"),
        layers.MaxPooling2D(),
        layers.Conv2D(128, 3, activation="relu", padding="same"),
        layers.MaxPooling2D(),
        layers.Conv2D(128, 3, activation="relu", padding="same"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ], name="cnn64")
    cnn.save(models / "cnn64.keras")
    labels = [f"class{i}" for i in range(10)]
    spec = {"name": "input", "shape": [64, 64, 3], "dtype": "float32", "color": "rgb", "resize": "stretch",
            "scale": 1 / 255, "offset": 0.0}
    pack(name="cnn64", version=1, models=[models / "cnn64.keras"], input_spec=spec,
         output_spec={"kind": "classification", "labels": labels},
         description=f"bench: untrained 64x64x3 CNN, {cnn.count_params()} parameters, seed {SEED}",
         batching={"max_batch_size": 32, "max_delay_ms": 2.0}, out_dir=store)
    rng = np.random.default_rng(SEED)
    rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    _, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    write_bodies(bodies / "cnn64", rgb.astype(np.float32) / 255.0, encoded.tobytes(), "input")
    info = {"digits": {"params": int(model.count_params()), "input": digits_input["shape"]},
            "cnn64": {"params": int(cnn.count_params()), "input": [64, 64, 3]}}
    (work / "models.json").write_text(json.dumps(info, indent=1))


def write_bodies(prefix: Path, x, png: bytes, input_name: str) -> None:
    """The v2 JSON body (values rounded to 5 decimals) and the PNG body of one input."""
    data = [round(float(v), 5) for v in x.ravel()]
    body = {"inputs": [{"name": input_name, "shape": [1, *x.shape], "datatype": "FP32", "data": data}]}
    prefix.with_suffix(".json").write_text(json.dumps(body, separators=(",", ":")))
    prefix.with_suffix(".png").write_bytes(png)


def prepare_models() -> dict:
    done = WORK / "models.json"
    if not done.exists():
        log("preparing models (digits from model_archives/digits-1.yyar, cnn64 built with a fixed seed)")
        subprocess.run([str(YYAI_PY), __file__, "--prepare-models-internal"], check=True, cwd=ROOT)
    return json.loads(done.read_text())


# --------------------------------------------------------------------------- tools


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("installing Debian's wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
    subprocess.run(apt + ["update", "-qq"], check=False, env=env)
    subprocess.run(apt + ["install", "-y", "-qq", "wrk"], check=True, env=env)
    return shutil.which("wrk") or "/usr/bin/wrk"


def peer_version(peer: str, dist: str) -> str:
    py = venvs.venv_python(peer)
    out = subprocess.run([str(py), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


# --------------------------------------------------------------------------- servers


class Server:
    """A server started as its own process group; samples the RSS of its whole tree."""

    name = "?"
    venv = None

    def __init__(self, round_no: int):
        self.round_no = round_no
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, psutil.Process] = {}
        self.peak_rss = 0
        self.rss_now = 0
        self._sampling = False
        self.headers: dict = {}
        self.log_path = WORK / "logs" / f"{self.name}-r{round_no}.log"

    # subclasses: command(), env_extra(), target(model, endpoint), reload(model)
    endpoints = ("v2",)
    grpc_port: int | None = None  # servers that speak v2 gRPC set it and add "grpc" to endpoints
    grpc_metadata: ClassVar[dict] = {}

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1", PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(PEERS_DIR))
        if self.venv:
            env["PATH"] = f"{venvs.VENVS / self.venv / 'bin'}:{env['PATH']}"
            env["VIRTUAL_ENV"] = str(venvs.VENVS / self.venv)
        env.update(self.env_extra())
        return env

    def env_extra(self) -> dict:
        return {}

    def setup(self) -> None:
        """Work done before the clock starts (config files, archives)."""

    def start(self) -> float:
        """Start, wait until every model answers; return the cold start in seconds."""
        self.setup()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as logf:  # the server keeps its own descriptor
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(self.command(), stdout=logf, stderr=subprocess.STDOUT, env=self.env(),
                                         cwd=self.cwd(), start_new_session=True)
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()
        pending = set(MODELS)
        deadline = t0 + 420
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{self.name}: no successful prediction within 420 s; see {self.log_path}")
            for model in list(pending):
                if post_ok(self.target(model, "v2")):
                    pending.discard(model)
            if pending:
                time.sleep(0.1)
        return time.perf_counter() - t0

    def cwd(self) -> str:
        return str(ROOT)

    def tree(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def rss(self) -> int:
        total = 0
        for p in self.tree():
            self.seen.setdefault(p.pid, p)
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.tree())

    def _sample(self) -> None:
        while self._sampling:
            self.rss_now = self.rss()
            self.peak_rss = max(self.peak_rss, self.rss_now)
            time.sleep(0.25)

    def stop(self) -> None:
        self._sampling = False
        if self.proc is None:
            return
        self.rss()
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            pass
        for p in self.seen.values():  # everything this server started, even when it left the group
            try:
                if p.is_running():
                    p.kill()
            except psutil.Error:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=10)
        time.sleep(1.0)

    def reload(self, model: str) -> None:
        raise NotImplementedError

    def v2_target(self, model: str, url: str | None = None) -> Target:
        url = url or f"http://127.0.0.1:{self.port}/v2/models/{model}/infer"
        return Target(url, WORK / "bodies" / f"{model}.json", "application/json", dict(self.headers))

    def endpoint_target(self, model: str, endpoint: str) -> Target:
        """The target of one endpoint: v2 gRPC ModelInfer for "grpc", else ``target``."""
        if endpoint == "grpc":
            return Target(f"127.0.0.1:{self.grpc_port}", WORK / "bodies" / f"{model}.json", "application/grpc",
                          dict(self.grpc_metadata), grpc_model=model)
        return self.target(model, endpoint)


class Yyai(Server):
    name = "yyai"
    endpoints = ("v2", "predictions", "grpc")
    batching = True
    workers = 1

    def __init__(self, round_no: int):
        super().__init__(round_no)
        self.headers = {"Authorization": f"token {TOKEN}"}
        self.grpc_port = free_port()
        self.grpc_metadata = {"authorization": f"token {TOKEN}"}

    def command(self) -> list[str]:
        args = ["--store", str(WORK / "store"), "--port", str(self.port), "--token", TOKEN,
                "--grpc-port", str(self.grpc_port)]
        if not self.batching:
            args.append("--no-batching")
        if self.workers > 1:
            args += ["--workers", str(self.workers), "--dashboard-port", str(free_port())]
        cli = YYAI_PY.parent / "yyai"
        if yyai_has_serve():
            return [str(cli), "serve", *args]
        return [str(YYAI_PY), "-m", "yyai_kernel.server", *args]

    def target(self, model: str, endpoint: str) -> Target:
        if endpoint == "predictions":
            return Target(f"http://127.0.0.1:{self.port}/predictions/{model}", WORK / "bodies" / f"{model}.png",
                          "image/png", dict(self.headers))
        return self.v2_target(model)

    def reload(self, model: str) -> None:
        http("POST", f"http://127.0.0.1:{self.port}/models/{model}/reload", b"{}", self.headers, timeout=120)


class YyaiNoBatch(Yyai):
    name = "yyai-nobatch"
    endpoints = ("v2", "predictions")
    batching = False


class YyaiWorkers(Yyai):
    """Two worker processes on one port (``--workers 2``), each with its own registry."""

    name = "yyai-workers2"
    workers = 2


class YyaiRay(Yyai):
    """``yyai ray``: the same store and REST API on a local Ray Serve (it starts its own Ray),
    one replica that serves the API and runs both models, as the plain Ray Serve peer runs one
    replica per model. A request crosses the same processes as on that peer: proxy, replica."""

    name = "yyai-ray"
    endpoints = ("v2", "predictions")

    def env_extra(self):
        return {"RAY_worker_niceness": "0", "RAY_DEDUP_LOGS": "0"}

    def command(self) -> list[str]:
        return [str(YYAI_PY.parent / "yyai"), "ray", "--store", str(WORK / "store"), "--port", str(self.port),
                "--token", TOKEN, "--replicas", "1"]


_HAS_SERVE: list[bool] = []


def yyai_has_serve() -> bool:
    if not _HAS_SERVE:
        out = subprocess.run([str(YYAI_PY.parent / "yyai"), "serve", "--help"], capture_output=True, text=True)
        _HAS_SERVE.append(out.returncode == 0)
    return _HAS_SERVE[0]


class Flask(Server):
    name = "flask"
    venv = "flask"

    def command(self):
        return [str(venvs.venv_python("flask")), str(PEERS_DIR / "flask_server.py"), str(WORK / "models"),
                str(self.port)]

    def target(self, model, endpoint):
        return self.v2_target(model)


class PyTriton(Server):
    name = "pytriton"
    venv = "pytriton"
    endpoints = ("v2", "grpc")  # Triton's own gRPC server; inference needs no access token

    def __init__(self, round_no):
        super().__init__(round_no)
        self.grpc_port, self.metrics = free_port(), free_port()
        self.workspace = WORK / f"pytriton-workspace-r{round_no}"

    def setup(self):
        shutil.rmtree(self.workspace, ignore_errors=True)

    def stop(self):
        super().stop()
        shutil.rmtree(self.workspace, ignore_errors=True)  # a killed PyTriton leaves its workspace behind

    def env_extra(self):
        libdir = subprocess.run([venvs.base_python(), "-c",
                                 "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
                                capture_output=True, text=True).stdout.strip()
        return {"LD_LIBRARY_PATH": libdir}

    def command(self):
        return [str(venvs.venv_python("pytriton")), str(PEERS_DIR / "pytriton_server.py"), str(WORK / "models"),
                str(self.port), str(self.grpc_port), str(self.metrics), TOKEN, str(self.workspace)]

    def target(self, model, endpoint):
        return self.v2_target(model)

    def reload(self, model):
        # Triton's explicit model control: load on a loaded model reloads it.
        http("POST", f"http://127.0.0.1:{self.port}/v2/repository/models/{model}/load", b"{}",
             {"triton-access-token": TOKEN}, timeout=120)


class MLServer(Server):
    name = "mlserver"
    venv = "mlserver"
    endpoints = ("v2", "grpc")

    def __init__(self, round_no):
        super().__init__(round_no)
        self.grpc_port = free_port()

    def setup(self):
        self.dir = WORK / "mlserver"
        shutil.rmtree(self.dir, ignore_errors=True)
        for model in MODELS:
            (self.dir / model).mkdir(parents=True)
            (self.dir / model / "model-settings.json").write_text(json.dumps({
                "name": model, "implementation": "mlserver_runtime.KerasRuntime",
                "parameters": {"uri": str(WORK / "models" / f"{model}.keras")},
                "max_batch_size": 32, "max_batch_time": 0.002,
            }))
        (self.dir / "settings.json").write_text(json.dumps({
            "debug": False, "host": "127.0.0.1", "http_port": self.port, "grpc_port": self.grpc_port,
            "metrics_port": free_port(), "parallel_workers": 0, "load_models_at_startup": True,
        }))

    def command(self):
        return [str(venvs.VENVS / "mlserver" / "bin" / "mlserver"), "start", str(self.dir)]

    def target(self, model, endpoint):
        return self.v2_target(model)

    def reload(self, model):
        # MLServer's repository API: load on a loaded model loads the new one, then swaps.
        http("POST", f"http://127.0.0.1:{self.port}/v2/repository/models/{model}/load", b"", {}, timeout=120)


class TorchServe(Server):
    name = "torchserve"
    venv = "torchserve"

    def __init__(self, round_no):
        super().__init__(round_no)
        self.mgmt = free_port()
        self.version = dict.fromkeys(MODELS, "1.0")

    def setup(self):
        self.dir = WORK / "torchserve"
        store = self.dir / "store"
        if not (store / "cnn64.mar").exists() or not (store / "digits-v2.mar").exists():
            shutil.rmtree(self.dir, ignore_errors=True)
            store.mkdir(parents=True)
            (self.dir / "model-config.yaml").write_text(
                "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 32\nmaxBatchDelay: 2\nresponseTimeout: 120\n")
            archiver = venvs.VENVS / "torchserve" / "bin" / "torch-model-archiver"
            for model, version, mar in [(m, "1.0", m) for m in MODELS] + [(RELOAD_MODEL, "2.0", f"{RELOAD_MODEL}-v2")]:
                tmp = self.dir / "tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                subprocess.run([str(archiver), "--model-name", model, "--version", version,
                                "--handler", str(PEERS_DIR / "torchserve_handler.py"),
                                "--serialized-file", str(WORK / "models" / f"{model}.keras"),
                                "--extra-files", str(PEERS_DIR / "common.py"),
                                "--config-file", str(self.dir / "model-config.yaml"),
                                "--export-path", str(tmp), "--force"], check=True, env=self.env())
                (tmp / f"{model}.mar").rename(store / f"{mar}.mar")
        ports = [free_port() for _ in range(3)]
        (self.dir / "config.properties").write_text("\n".join([
            f"inference_address=http://127.0.0.1:{self.port}",
            f"management_address=http://127.0.0.1:{self.mgmt}",
            f"metrics_address=http://127.0.0.1:{ports[0]}",
            "grpc_inference_address=127.0.0.1", "grpc_management_address=127.0.0.1",
            f"grpc_inference_port={ports[1]}", f"grpc_management_port={ports[2]}",
            f"model_store={store}", "load_models=" + ",".join(f"{m}.mar" for m in MODELS),
            "default_workers_per_model=1", "disable_token_authorization=true", "enable_model_api=true",
            "install_py_dep_per_model=false", "",
        ]))

    def env_extra(self):
        return {"TS_DISABLE_SYSTEM_METRICS": "false"}

    def command(self):
        return [str(venvs.VENVS / "torchserve" / "bin" / "torchserve"), "--start", "--foreground", "--ncs",
                "--model-store", str(self.dir / "store"), "--ts-config", str(self.dir / "config.properties"),
                "--disable-token-auth", "--enable-model-api"]

    def cwd(self):
        return str(self.dir)

    def target(self, model, endpoint):
        return self.v2_target(model, f"http://127.0.0.1:{self.port}/predictions/{model}")

    def reload(self, model):
        # TorchServe's way to swap without a gap: register the other version, make it the
        # default, then unregister the old one.
        old = self.version[model]
        new = "2.0" if old == "1.0" else "1.0"
        mar = f"{model}-v2.mar" if new == "2.0" else f"{model}.mar"
        base = f"http://127.0.0.1:{self.mgmt}/models"
        http("POST", f"{base}?url={mar}&initial_workers=1&synchronous=true&batch_size=32&max_batch_delay=2",
             b"", {}, timeout=300)
        http("PUT", f"{base}/{model}/{new}/set-default", b"", {}, timeout=60)
        http("DELETE", f"{base}/{model}/{old}", b"", {}, timeout=120)
        self.version[model] = new


class Ray(Server):
    name = "ray"
    venv = "ray"

    def env_extra(self):
        return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_worker_niceness": "0",
                "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}

    def command(self):
        return [str(venvs.venv_python("ray")), str(PEERS_DIR / "ray_server.py"), str(WORK / "models"),
                str(self.port)]

    def target(self, model, endpoint):
        return self.v2_target(model)


SERVER_CLASSES = {c.name: c for c in (Yyai, YyaiWorkers, YyaiNoBatch, YyaiRay, Flask, PyTriton, MLServer, TorchServe,
                                           Ray)}
GRPC_SERVERS = [name for name, c in SERVER_CLASSES.items() if "grpc" in c.endpoints]


def describe_error(exc: Exception) -> str:
    """One line for a failed management call, with the start of the server's reply."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, urllib.error.HTTPError):
        try:
            text += " " + exc.read()[:400].decode(errors="replace")
        except Exception:  # noqa: BLE001 - best effort
            pass
    return text


def post_ok(target: Target) -> bool:
    try:
        http("POST", target.url, target.body.read_bytes(), {"Content-Type": target.content_type, **target.headers},
             timeout=10)
        return True
    except (urllib.error.URLError, OSError, ConnectionError):
        return False


# --------------------------------------------------------------------------- load


LUA = """
local f = assert(io.open("{body}", "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def run_wrk(wrk: str, target: Target, concurrency: int, seconds: int, server: Server) -> dict:
    headers = {"Content-Type": target.content_type, **target.headers}
    lua = WORK / "post.lua"
    lua.write_text(LUA.format(body=target.body, headers="\n".join(
        f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())))
    cpu0 = server.cpu_seconds()
    proc = subprocess.Popen([wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "-s", str(lua),
                             target.url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    server_cpu = server.cpu_seconds() - cpu0
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary: {out[-500:]}")
    r = json.loads(line[len("WRKJSON "):])
    dur = r["duration_us"] / 1e6
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {"tool": "wrk", "concurrency": concurrency, "seconds": dur, "requests": r["requests"],
            "errors": errors, "rps": (r["requests"] - r["status"]) / dur, "p50_ms": r["p50_us"] / 1e3,
            "p90_ms": r["p90_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3, "max_ms": r["max_us"] / 1e3,
            "client_cpu": (usage.ru_utime + usage.ru_stime) / dur, "server_cpu": server_cpu / dur}


def client_cell(target: Target, concurrency: int, seconds: float, server: Server) -> dict:
    """A cell measured by a client that records every request (aiohttp, or tritonclient.grpc)."""
    cpu0 = server.cpu_seconds()
    got = run_client(target, concurrency, seconds)
    server_cpu = server.cpu_seconds() - cpu0
    ok = [r[1] for r in got["requests"] if r[2] == 200]
    failed = sum(1 for r in got["requests"] if r[2] != 200)
    tool = "tritonclient.grpc" if target.grpc_model else "aiohttp"
    return {"tool": tool, "concurrency": concurrency, "seconds": got["wall_s"], "requests": len(got["requests"]),
            "errors": failed, "rps": len(ok) / got["wall_s"], "p50_ms": percentile(ok, 50),
            "p90_ms": percentile(ok, 90), "p99_ms": percentile(ok, 99), "latencies_ms": ok,
            "client_cpu": got["cpu_s"] / got["wall_s"], "server_cpu": server_cpu / got["wall_s"]}


# --------------------------------------------------------------------------- phases


def measure_server(name: str, round_no: int, args, wrk: str, results: dict) -> None:
    server = SERVER_CLASSES[name](round_no)
    entry = results["servers"].setdefault(name, {"rounds": []})
    rec: dict = {"round": round_no, "cells": []}
    try:
        log(f"round {round_no}: starting {name}")
        rec["cold_start_s"] = server.start()
        log(f"  {name} answered every model after {rec['cold_start_s']:.1f} s")
        for model in MODELS:
            for endpoint in [e for e in server.endpoints if e in args.endpoints]:
                target = server.endpoint_target(model, endpoint)
                if target.grpc_model:  # wrk speaks no gRPC: the gRPC client does every cell
                    client_cell(target, 8, max(1, args.warmup), server)  # warm up, discarded
                else:
                    run_wrk(wrk, target, 8, max(1, args.warmup), server)  # warm up, discarded
                for conc in (1, 8, 32):
                    if conc == 1 or target.grpc_model:
                        cell = client_cell(target, conc, args.seconds, server)
                    else:
                        cell = run_wrk(wrk, target, conc, args.seconds, server)
                    cell.update(model=model, endpoint=endpoint)
                    rec["cells"].append(cell)
                    log(f"  {name} {model} {endpoint} c={conc}: {cell['rps']:.0f} req/s p50 {cell['p50_ms']:.2f} ms "
                        f"p99 {cell['p99_ms']:.2f} ms errors {cell['errors']} client CPU {cell['client_cpu']:.0%}")
        rec["peak_rss_mb"] = server.peak_rss / 2**20
        rec["loadavg_1m_after"] = os.getloadavg()[0]
    except Exception as exc:  # noqa: BLE001 - a peer that fails is reported, and the run goes on
        rec["error"] = f"{type(exc).__name__}: {exc}"
        log(f"  {name} FAILED: {rec['error']}")
        rec["log_tail"] = tail(server.log_path)
    finally:
        server.stop()
    entry["rounds"].append(rec)


def tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def reload_test(name: str, args, results: dict) -> None:
    server = SERVER_CLASSES[name](99)
    rec: dict = {}
    results["reload"][name] = rec
    try:
        log(f"reload test: starting {name}")
        server.start()
        target = server.target(RELOAD_MODEL, "v2")
        steady = run_client(target, 16, args.steady_seconds)
        ok = [r[1] for r in steady["requests"] if r[2] == 200]
        rec["steady"] = {"requests": len(steady["requests"]), "failed": len(steady["requests"]) - len(ok),
                         "p50_ms": percentile(ok, 50), "p99_ms": percentile(ok, 99),
                         "rps": len(ok) / steady["wall_s"], "client_cpu": steady["cpu_s"] / steady["wall_s"]}
        windows: list = []
        errors: list = []
        stop = threading.Event()
        origin: list = []

        def reloader():
            while not origin:
                time.sleep(0.001)
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    server.reload(RELOAD_MODEL)
                except Exception as exc:  # noqa: BLE001 - reported
                    errors.append(describe_error(exc))
                t1 = time.perf_counter()
                windows.append((t0 - origin[0], t1 - origin[0]))
                stop.wait(max(0.0, args.reload_every - (t1 - t0)))

        thread = threading.Thread(target=reloader, daemon=True)
        thread.start()
        origin.append(time.perf_counter() + 0.15)  # the client starts about now (process start-up)
        got = run_client(target, 16, args.reload_seconds)
        stop.set()
        thread.join(timeout=300)
        reqs = got["requests"]
        def in_window(t):
            return any(a - 0.05 <= t <= b + 0.5 for a, b in windows)

        during = [r[1] for r in reqs if r[2] == 200 and in_window(r[0])]
        outside = [r[1] for r in reqs if r[2] == 200 and not in_window(r[0])]
        failed = [r for r in reqs if r[2] != 200]
        rec["under_reload"] = {
            "requests": len(reqs), "failed": len(failed),
            "failed_statuses": sorted({r[2] for r in failed}), "reloads": len(windows),
            "failed_errors": sorted({r[3] for r in failed if len(r) > 3})[:5],
            "reload_errors": errors[:5], "reload_error_count": len(errors),
            "reload_s_median": statistics.median(b - a for a, b in windows) if windows else None,
            "p99_during_ms": percentile(during, 99), "p99_outside_ms": percentile(outside, 99),
            "p50_during_ms": percentile(during, 50), "requests_during": len(during),
            "rps": (len(reqs) - len(failed)) / got["wall_s"], "client_cpu": got["cpu_s"] / got["wall_s"],
        }
        log(f"  {name}: {len(windows)} reloads, {len(failed)} failed of {len(reqs)}, p99 during "
            f"{rec['under_reload']['p99_during_ms']:.1f} ms vs steady {rec['steady']['p99_ms']:.1f} ms")
        # Then reload back to back (light load: one client) up to the count or the time cap.
        rec["rss_before_mb"] = server.rss() / 2**20
        done, n_err, t_end = len(windows), 0, time.perf_counter() + args.reload_cap_s
        while done < args.reloads and time.perf_counter() < t_end:
            try:
                server.reload(RELOAD_MODEL)
            except Exception:  # noqa: BLE001 - counted
                n_err += 1
            done += 1
        time.sleep(2.0)
        post_ok(target)
        rec["reloads_total"] = done
        rec["reload_errors_after"] = n_err
        rec["rss_after_mb"] = server.rss() / 2**20
        log(f"  {name}: RSS {rec['rss_before_mb']:.0f} MB -> {rec['rss_after_mb']:.0f} MB after {done} reloads")
    except Exception as exc:  # noqa: BLE001 - reported
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["log_tail"] = tail(server.log_path)
        log(f"  reload test {name} FAILED: {rec['error']}")
    finally:
        server.stop()


def limit_test(args, results: dict) -> None:
    log("the limit: traced function in-process")
    out = subprocess.run([str(YYAI_PY), str(PEERS_DIR / "limit.py"), str(WORK / "models"),
                          str(1.0 if args.quick else 3.0)], capture_output=True, text=True,
                         env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="3"))
    if out.returncode:
        results["limit"] = {"error": out.stderr[-1000:]}
        return
    results["limit"] = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            results["limit"][row["model"]] = row
            log(f"  {row['model']}: batch 1 {row['batch1']['p50_ms']:.3f} ms ({row['batch1']['samples_per_s']:.0f}/s), "
                f"best batch {row['best']['batch']} {row['best']['samples_per_s']:.0f}/s")


def versions(servers: list[str]) -> dict:
    v = {}
    import importlib.metadata as md

    for dist in ("yyai", "tensorflow", "keras", "tornado", "voila", "ray"):
        try:
            v[f"yyai venv: {dist}"] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    wanted = {"flask": ["flask"], "pytriton": ["nvidia-pytriton"], "mlserver": ["mlserver", "uvloop"],
              "torchserve": ["torchserve", "torch"], "ray": ["ray"]}
    for peer, dists in wanted.items():
        if peer in servers and venvs.venv_python(peer).exists():
            for dist in dists + ["tensorflow", "keras", "numpy"]:
                v[f"{peer} venv: {dist}"] = peer_version(peer, dist)
    try:
        v["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("[")[0].strip()
    except OSError:
        pass
    v["java"] = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0] \
        if shutil.which("java") else "-"
    return v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s cells, one round, short reload test")
    parser.add_argument("--peers", default=",".join(ALL_SERVERS + ["limit"]),
                        help="comma list of: " + ", ".join(ALL_SERVERS + ["limit"]))
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=int, default=None, help="seconds per measured cell")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS),
                        help="comma list of: " + ", ".join(ENDPOINTS) + " (grpc: the servers that speak v2 gRPC)")
    parser.add_argument("--no-reload", action="store_true", help="skip the reload-under-load test")
    parser.add_argument("--setup-only", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--prepare-models-internal", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare_models_internal:
        prepare_models_main(WORK)
        return
    if args.report_only:
        import report

        report.write(json.loads((WORK / "results.json").read_text()), RESULTS_MD, PLOTS)
        return
    selected = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(selected) - set(ALL_SERVERS) - {"limit"}
    if unknown:
        parser.error(f"unknown peers: {sorted(unknown)}")
    args.endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if set(args.endpoints) - set(ENDPOINTS) or not args.endpoints:
        parser.error(f"--endpoints takes a comma list of {', '.join(ENDPOINTS)}")
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.seconds = args.seconds or (3 if args.quick else 8)
    args.warmup = 1 if args.quick else 2
    args.steady_seconds = 5 if args.quick else 15
    args.reload_seconds = 12 if args.quick else 60
    args.reload_every = 3.0
    args.reloads = 10 if args.quick else 100
    args.reload_cap_s = 30 if args.quick else 150
    servers = [s for s in ALL_SERVERS if s in selected and set(SERVER_CLASSES[s].endpoints) & set(args.endpoints)]

    WORK.mkdir(parents=True, exist_ok=True)
    for s in servers:
        peer = SERVER_CLASSES[s].venv
        if peer:
            venvs.ensure(peer, log=log)
    wrk = ensure_wrk()
    if args.setup_only:
        return
    info = prepare_models()
    started = time.time()
    results = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine(),
               "versions": versions(servers), "models": info, "quick": args.quick,
               "settings": {k: getattr(args, k) for k in ("rounds", "seconds", "warmup", "steady_seconds",
                                                          "reload_seconds", "reload_every", "reloads",
                                                          "reload_cap_s")} | {"reload_model": RELOAD_MODEL},
               "servers": {}, "reload": {}, "limit": None, "endpoints": args.endpoints,
               "complete": set(selected) >= set(ALL_SERVERS) | {"limit"} and not args.no_reload
               and set(args.endpoints) == set(ENDPOINTS)}
    if "limit" in selected:
        limit_test(args, results)
    for round_no in range(1, args.rounds + 1):
        for name in servers:  # the same order every round: A B A B
            measure_server(name, round_no, args, wrk, results)
            save(results)
    if not args.no_reload:
        for name in [s for s in RELOADABLE if s in servers]:
            reload_test(name, args, results)
            save(results)
    results["elapsed_s"] = time.time() - started
    save(results)
    import report

    md, plots = (RESULTS_MD, PLOTS) if results["complete"] else (WORK / "RESULTS.partial.md", WORK / "plots")
    report.write(results, md, plots)
    if not results["complete"] and "grpc" in args.endpoints and set(servers) >= set(GRPC_SERVERS):
        report.write_grpc(results, RESULTS_MD)  # every gRPC row: its own section is complete
        md = RESULTS_MD
    if not results["complete"] and "v2" in args.endpoints and set(servers) >= set(RAY_ROWS):
        report.write_ray(results, RESULTS_MD)  # yyai serve, yyai on Ray, plain Ray: its own section is complete
        md = RESULTS_MD
    log(f"done in {results['elapsed_s'] / 60:.1f} min: {md.relative_to(ROOT)}, plots in {plots.relative_to(ROOT)}/")


def save(results: dict) -> None:
    """results.json for a run of every server (the committed report's source), else results-partial.json."""
    name = "results.json" if results["complete"] else "results-partial.json"
    (WORK / name).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
