"""HTTP serving overhead: the same model through ``yyai serve`` and called in-process.

A benchmark, not a test: it measures and asserts nothing about time. ``make bench-http``
runs it with ``--write-results``. One run:

1. Copies the chosen models' archives from the store (default ``model_archives/``) into a
   temporary store, and starts ``yyai serve`` on it (127.0.0.1, a free port, token auth on,
   the archives' own batching hints unless ``--max-batch-size``/``--max-delay-ms`` say
   otherwise): once as one process, then with ``--workers 2`` (``--workers 1,2``).
2. For each model (default ``digits``; ``--models digits,colorfulness`` adds the second),
   builds one input from a bundled sample image: the PNG bytes for ``POST /predictions/{m}``
   and, preprocessed by ``yyai_kernel.runtime.images.preprocess`` exactly as the server does, the
   v2 JSON tensor for ``POST /v2/models/{m}/infer`` (name, datatype and shape from the
   model's v2 metadata). Checks that both answer 200 and that the v2 output equals the
   in-process one.
3. Measures each endpoint at concurrency 1, 8 and 32 (``--concurrency``) for ``--duration``
   seconds after a ``--warmup`` at concurrency 8: one closed-loop aiohttp client in its own
   process (``bench/peers/loadclient.py``), exact p50/p99 over every request, req/s of 200s,
   the client's CPU (``getrusage``) and the server's (psutil over its process tree).
   Each server's memory is read too: its whole process tree, and each worker's RSS as
   ``GET /models/_status`` reports it.
4. Stops the server, then calls the same model in-process: the version's traced function
   itself (``ArchiveRuntime``, batch 1 at c=1, and batch 32 for throughput), and a
   ``Registry`` on the same store with the same batching settings, from as many threads as
   the concurrency: ``predict`` on the preprocessed tensor and ``predict_images`` on the
   PNG bytes (the same work as ``/predictions``, minus HTTP).
5. Prints a markdown section: every cell, then the serving overhead (HTTP p50 minus the
   traced call's p50 at c=1, and minus ``predict``'s) and the throughput ratios. With
   ``--write-results`` it replaces the ``## HTTP serving overhead (bench/http_bench.py)``
   section of ``bench/RESULTS.md`` (``bench/resultsfile.py``); nothing else there changes.

The client, the server and the in-process threads share the machine's cores: the client's
CPU is reported so that its share can be judged.

``--shadow`` runs only the cost of shadow traffic (``## Shadow traffic cost``): one server
over ``digits`` v1 and v2 (the default), ``POST /predictions/digits`` at c=8 (or
``--concurrency``), in alternating cells with no traffic policy and with a 100% shadow of
v1, ``--rounds`` times, so that both sides meet the same machine. It reports each cell and
the pooled p50 and p99 of the real replies side by side, with the shadow's own figures
(runs, dropped, errors, agreement) read from ``GET /models/digits/traffic``. Usage::

    .venv/bin/python bench/http_bench.py                      # digits, 8 s cells (~3 minutes)
    .venv/bin/python bench/http_bench.py --duration 3 --models digits,colorfulness
    .venv/bin/python bench/http_bench.py --write-results
    .venv/bin/python bench/http_bench.py --shadow --write-results   # only the shadow cost (~1 minute)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata as md
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

import numpy as np
import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # yyai_kernel, when run as a script from anywhere

from benchlib import (  # noqa: E402
    Target,
    cpu_seconds,
    free_port,
    http,
    log,
    machine,
    percentile,
    run_client,
    thread_load,
)
from resultsfile import replace_section  # noqa: E402

from yyai_kernel.archive import read_manifest  # noqa: E402
from yyai_kernel.runtime.images import preprocess  # noqa: E402  (OpenCV and numpy only, no TensorFlow)
from yyai_kernel.store.store import STATE_FILE, ModelStore  # noqa: E402

HEADING = "## HTTP serving overhead (bench/http_bench.py)"
SHADOW_HEADING = "## Shadow traffic cost (bench/http_bench.py --shadow)"
WORK = BENCH / ".work" / "http"
TOKEN = "bench-http-token-0123456789"
SAMPLES = {"digits": "digit-3.png", "colorfulness": "flower-1.png"}
START_TIMEOUT_S = 900  # a 200-model store loaded before ready, on a busy machine
STOP_TIMEOUT_S = 30


# --------------------------------------------------------------------------- the server


class YyaiServer:
    """``yyai serve`` as its own process group on a free loopback port, token auth on."""

    def __init__(self, store: Path, extra_args: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"token {TOKEN}"}
        self.cmd = [str(Path(sys.executable).parent / "yyai"), "serve", "--store", str(store),
                    "--host", "127.0.0.1", "--port", str(self.port), "--token", TOKEN, *extra_args]
        self.log_path = WORK / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start and wait until ``/v2/health/ready`` answers 200; the start-up time in seconds."""
        WORK.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for key in ("YYAI_URL", "YYAI_TOKEN", "JUPYTER_TOKEN"):
            env.pop(key, None)
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=str(WORK),
                                         start_new_session=True)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"yyai serve exited with {self.proc.returncode}; see {self.log_path}")
            if time.perf_counter() - t0 > START_TIMEOUT_S:
                raise RuntimeError(f"yyai serve not ready within {START_TIMEOUT_S} s; see {self.log_path}")
            try:
                http("GET", f"{self.url}/v2/health/ready", b"", self.headers, timeout=5)
                return time.perf_counter() - t0
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)

    def get_json(self, path: str) -> dict:
        """GET with the token; the JSON reply."""
        return json.loads(http("GET", self.url + path, b"", self.headers, timeout=30))

    def post_json(self, path: str, body: bytes, content_type: str) -> dict:
        """POST with the token; the JSON reply."""
        return json.loads(http("POST", self.url + path, body, {"Content-Type": content_type, **self.headers},
                               timeout=30))

    def request_json(self, method: str, path: str, body: dict | None = None) -> dict:
        """A JSON request with the token; the JSON reply."""
        data = b"" if body is None else json.dumps(body).encode()
        return json.loads(http(method, self.url + path, data, {"Content-Type": "application/json", **self.headers},
                               timeout=120))

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and every process it started."""
        try:
            root = psutil.Process(self.proc.pid)
            return cpu_seconds([root, *root.children(recursive=True)])
        except psutil.Error:
            return 0.0

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL to the group if it has not exited."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log(f"yyai serve did not stop within {STOP_TIMEOUT_S} s of SIGTERM; killing it")
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)


# --------------------------------------------------------------------------- inputs


def copy_store(source: Path, models: list[str], dest: Path) -> dict:
    """Copy every archive of ``models`` (and their pins) into ``dest``; {model: its default version there}.

    The source is only read (no ``ModelStore`` on it: that would sweep its temporary files).
    """
    for path in sorted(source.glob("*.yyar")):
        if not path.name.startswith(".") and read_manifest(path).name in models:
            shutil.copy2(path, dest / path.name)
    copy = ModelStore(dest)
    state = source / STATE_FILE
    pins = json.loads(state.read_text()).get("pins", {}) if state.exists() else {}
    defaults = {}
    for name in models:
        if not copy.versions(name):
            raise SystemExit(f"no archive of {name!r} in {source}")
        if name in pins:
            copy.pin(name, int(pins[name]))
        defaults[name] = copy.default_version(name)
    return defaults


def model_input(store: Path, name: str, version: int, image: Path, metadata: dict) -> dict:
    """The PNG bytes, the preprocessed ``[1, *shape]`` tensor and the v2 JSON body of one sample."""
    spec = ModelStore(store).record(name, version).manifest.input
    png = image.read_bytes()
    tensor = preprocess(png, spec)[None]
    meta_in = metadata["inputs"][0]
    if [int(d) for d in meta_in["shape"][1:]] != list(tensor.shape[1:]):
        raise SystemExit(f"{name}: v2 metadata shape {meta_in['shape']} but the manifest says {spec['shape']}")
    body = {"inputs": [{"name": meta_in["name"], "shape": list(tensor.shape), "datatype": meta_in["datatype"],
                        "data": [float(v) for v in tensor.ravel()]}]}
    return {"png": png, "tensor": tensor, "v2_body": json.dumps(body, separators=(",", ":")).encode(),
            "shape": meta_in["shape"], "spec": spec}


# --------------------------------------------------------------------------- measuring


def http_cell(server: YyaiServer, target: Target, concurrency: int, seconds: float) -> dict:
    """One closed-loop aiohttp run against the server: latency, throughput, client and server CPU, and
    under ``raw`` every successful request's ``[start_s, latency_ms, status]``."""
    cpu0 = server.cpu_seconds()
    got = run_client(target, concurrency, seconds)
    server_cpu = server.cpu_seconds() - cpu0
    ok = [r[1] for r in got["requests"] if r[2] == 200]
    wall = got["wall_s"]
    return {"concurrency": concurrency, "requests": len(got["requests"]), "errors": len(got["requests"]) - len(ok),
            "rps": len(ok) / wall, "p50_ms": percentile(ok, 50), "p99_ms": percentile(ok, 99),
            "client_cpu": got["cpu_s"] / wall, "server_cpu": server_cpu / wall,
            "raw": [r for r in got["requests"] if r[2] == 200]}


def inprocess_cell(call, concurrency: int, seconds: float) -> dict:
    """The same closed loop with threads calling the registry in this process."""
    got = thread_load(call, concurrency, seconds)
    lat, wall = got["latencies_ms"], got["wall_s"]
    return {"concurrency": concurrency, "requests": len(lat), "errors": 0, "rps": len(lat) / wall,
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "client_cpu": None,
            "server_cpu": got["cpu_s"] / wall}


def measure_http(server: YyaiServer, name: str, inp: dict, args, out: dict, suffix: str = "") -> None:
    """Both HTTP paths of one model at every concurrency, into ``out['v2' + suffix]`` and
    ``out['predictions' + suffix]``."""
    bodies = WORK / "bodies"
    bodies.mkdir(parents=True, exist_ok=True)
    (bodies / f"{name}.json").write_bytes(inp["v2_body"])
    (bodies / f"{name}.png").write_bytes(inp["png"])
    targets = {
        "v2": Target(f"{server.url}/v2/models/{name}/infer", bodies / f"{name}.json", "application/json",
                     dict(server.headers)),
        "predictions": Target(f"{server.url}/predictions/{name}", bodies / f"{name}.png", "image/png",
                              dict(server.headers)),
    }
    for endpoint, target in targets.items():
        run_client(target, 8, args.warmup)  # warm-up, discarded
        for conc in args.concurrency:
            cell = http_cell(server, target, conc, args.duration)
            cell.pop("raw")  # every request's latency: only the shadow cells pool them
            out[endpoint + suffix].append(cell)
            log(f"  {name} HTTP {endpoint}{suffix} c={conc}: {cell['rps']:.0f} req/s, p50 {cell['p50_ms']:.2f} ms, "
                f"p99 {cell['p99_ms']:.2f} ms, errors {cell['errors']}, client CPU {cell['client_cpu']:.0%}, "
                f"server CPU {cell['server_cpu']:.0%}")


def measure_inprocess(backend, name: str, inp: dict, args, out: dict) -> None:
    """``predict`` (tensor) and ``predict_images`` (PNG) at every concurrency, into ``out``."""
    tensor, png = inp["tensor"], inp["png"]
    calls = {"predict": lambda: backend.predict(name, tensor),
             "predict_images": lambda: backend.predict_images(name, [png])}
    for kind, call in calls.items():
        thread_load(call, 8, args.warmup)  # warm-up, discarded
        for conc in args.concurrency:
            cell = inprocess_cell(call, conc, args.duration)
            out[kind].append(cell)
            log(f"  {name} in-process {kind} c={conc}: {cell['rps']:.0f} req/s, p50 {cell['p50_ms']:.2f} ms, "
                f"p99 {cell['p99_ms']:.2f} ms, process CPU {cell['server_cpu']:.0%}")


def measure_traced(store: Path, name: str, version: int, inp: dict, args, out: dict) -> None:
    """The version's traced function called directly: batch 1 at c=1, batch 32 for throughput."""
    from yyai_kernel.runtime.runtime import ArchiveRuntime

    runtime = ArchiveRuntime.load(ModelStore(store).record(name, version).path, warmup_sizes=[1, 32])
    one = runtime.validate(inp["tensor"])
    many = runtime.validate(np.repeat(inp["tensor"], 32, axis=0))
    thread_load(lambda: runtime(one), 1, args.warmup)
    out["traced"].append(inprocess_cell(lambda: runtime(one), 1, args.duration))
    cell = inprocess_cell(lambda: runtime(many), 1, args.duration)
    cell.update(concurrency=32, rps=cell["rps"] * 32, batch=32)  # samples/s
    out["traced"].append(cell)
    log(f"  {name} traced call: batch 1 p50 {out['traced'][0]['p50_ms']:.3f} ms; batch 32 "
        f"{cell['rps']:,.0f} samples/s")


def server_memory(server: YyaiServer) -> dict:
    """The RSS of the server's whole process tree, and of each worker as the server reports it."""
    try:
        root = psutil.Process(server.proc.pid)
        tree = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        tree = None
    workers = server.get_json("/models/_status").get("workers", [])
    return {"tree_mb": tree / 2**20 if tree else None,
            "workers_mb": [w["rss_bytes"] / 2**20 for w in workers if w.get("rss_bytes")]}


def check_same_output(server_reply: dict, prediction, name: str) -> float:
    """Largest difference between the v2 reply's combined output and the in-process one."""
    outputs = {o["name"]: np.asarray(o["data"], np.float32) for o in server_reply["outputs"]}
    here = prediction.combined if prediction.combined is not None else next(iter(prediction.members.values()))
    there = outputs.get("output", next(iter(outputs.values())))
    diff = float(np.max(np.abs(there.ravel() - np.asarray(here).ravel())))
    if diff > 1e-4:
        raise SystemExit(f"{name}: the v2 reply differs from the in-process output by {diff}")
    return diff


# --------------------------------------------------------------------------- report


def fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


LABELS = {
    "v2": "HTTP `POST /v2/models/{m}/infer` (JSON tensor)",
    "v2-w2": "HTTP `POST /v2/models/{m}/infer`, `--workers 2`",
    "predictions": "HTTP `POST /predictions/{m}` (PNG bytes)",
    "predictions-w2": "HTTP `POST /predictions/{m}`, `--workers 2`",
    "traced": "in-process traced call (`ArchiveRuntime`; c=32: one thread, batch 32, samples/s)",
    "predict": "in-process `Registry.predict` (tensor)",
    "predict_images": "in-process `LocalBackend.predict_images` (PNG)",
}


def render(results: dict) -> str:
    """The markdown section: machine and settings, every cell, then overhead and throughput ratio."""
    m, s = results["machine"], results["settings"]
    load0, load1 = m["loadavg_at_start"], results["loadavg_at_end"]
    starts = ", ".join(f"{w} worker(s) in {t:.1f} s" for w, t in results["server_start_s"].items())
    lines = [
        HEADING, "",
        f"Date {results['date']}. Machine: `nproc` {m['nproc']}, {m['cpu']}, {m['mem_gib']} GiB RAM, "
        f"Linux {m['kernel']}; Python {m['python']}, " + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        + ".",
        "",
        f"**How busy the machine was:** load average {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f} (1 / 5 / 15 min) "
        f"at the start, {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f} at the end."
        + (" Other work was running: treat these numbers as indicative." if max(load0[0], load0[1]) > 0.5 else ""),
        "",
        f"Settings: {s['duration']:g} s per cell after a {s['warmup']:g} s warm-up at c=8; batching "
        f"{s['batching']}; `yyai serve` on 127.0.0.1 with token auth, ready after: {starts}. "
        "Load: one closed-loop aiohttp client process (`bench/peers/loadclient.py`, one keep-alive connection per "
        "concurrent request), exact percentiles over every request; in-process: the version's traced function "
        "called directly, and the same closed loop with threads calling `Registry.predict` (preprocessed tensor) "
        "or `LocalBackend.predict_images` (PNG bytes) on the same store with the same batching settings, after the "
        "servers stopped. Client, server and in-process threads share the machine's cores. CPU columns are cores "
        "busy (1.00 = one core); server CPU ms per request = server CPU / req/s.",
    ]
    for name, r in results["models"].items():
        lines += ["", f"### `{name}` v{r['version']} (input {r['input_shape']}, sample `{r['sample']}`)", "",
                  "| path | c | req/s | p50 ms | p99 ms | errors | client CPU | server / process CPU | "
                  "server CPU ms / req |", "|---|---|---|---|---|---|---|---|---|"]
        for kind, label in LABELS.items():
            for c in r["cells"].get(kind, []):
                per = c["server_cpu"] / c["rps"] * 1000 if c.get("server_cpu") and c["rps"] else None
                lines.append(f"| {label.replace('{m}', name)} | {c['concurrency']} | {c['rps']:,.0f} | "
                             f"{c['p50_ms']:.2f} | {c['p99_ms']:.2f} | {c['errors']} | {fmt(c['client_cpu'])} | "
                             f"{fmt(c['server_cpu'])} | {fmt(per)} |")
        lines += overhead(r["cells"])
    lines += memory(results)
    return "\n".join(lines) + "\n"


def overhead(cells: dict) -> list[str]:
    """HTTP p50 minus in-process p50 (c=1: the traced call; all: ``predict``) and throughput ratios."""
    concs = [c["concurrency"] for c in cells["predict"]]
    lines = ["", "Serving overhead: HTTP p50 minus in-process p50, and throughput ratio (HTTP req/s / "
             "in-process req/s; against the traced call, its batch-32 samples/s at c=8 and c=32):", "",
             "| HTTP path vs in-process | " + " | ".join(f"c={c}" for c in concs) + " |", "|---|" + "---|" * len(concs)]
    traced = cells.get("traced") or []
    for http_kind, label in (("v2", "v2 infer"), ("v2-w2", "v2 infer, `--workers 2`"),
                             ("predictions", "/predictions"), ("predictions-w2", "/predictions, `--workers 2`")):
        if not cells.get(http_kind):
            continue
        refs = [("predict", "`predict` (tensor)")]
        refs.insert(0, ("traced", "the traced call")) if traced else None
        if http_kind.startswith("predictions"):
            refs.append(("predict_images", "`predict_images` (same decode + preprocess)"))
        for ref_kind, ref_label in refs:
            row = []
            for i, h in enumerate(cells[http_kind]):
                if ref_kind == "traced":
                    ref = traced[0] if h["concurrency"] == 1 else traced[-1]
                    delta = f"{h['p50_ms'] - ref['p50_ms']:+.2f} ms, " if h["concurrency"] == 1 else ""
                else:
                    ref = cells[ref_kind][i]
                    delta = f"{h['p50_ms'] - ref['p50_ms']:+.2f} ms, "
                row.append(f"{delta}{h['rps'] / ref['rps']:.2f}x")
            lines.append(f"| {label} vs {ref_label} | " + " | ".join(row) + " |")
    return lines


def memory(results: dict) -> list[str]:
    """The memory of each server configuration: its process tree and each worker."""
    lines = ["", "### Memory", "", "| `yyai serve` | process tree RSS MB | RSS MB of each worker |", "|---|---|---|"]
    for workers, mem in results.get("memory", {}).items():
        each = ", ".join(f"{v:,.0f}" for v in mem["workers_mb"]) or "-"
        lines.append(f"| {workers} worker(s) | {fmt(mem['tree_mb'], ',.0f')} | {each} |")
    return lines


def prepare_model(server: YyaiServer, store: Path, name: str, default: int, results: dict) -> dict:
    """One model's inputs, checked against the server; registers its cells in ``results``."""
    metadata = server.get_json(f"/v2/models/{name}")
    version = server.get_json(f"/models/{name}")["default"]
    if version != default:
        raise SystemExit(f"{name}: the server serves v{version}, the store's default is v{default}")
    inp = model_input(store, name, version, ROOT / "model_archives" / "samples" / SAMPLES[name], metadata)
    inp["v2_reply"] = server.post_json(f"/v2/models/{name}/infer", inp["v2_body"], "application/json")
    server.post_json(f"/predictions/{name}", inp["png"], "image/png")
    results["models"][name] = {"version": version, "input_shape": inp["shape"], "sample": SAMPLES[name],
                               "cells": {kind: [] for kind in LABELS}}
    return inp


def measure_shadow(server: YyaiServer, name: str, inp: dict, args) -> dict:
    """Alternating cells without a policy and with a 100% shadow: every cell, and the real replies pooled per side."""
    status = server.get_json(f"/models/{name}")
    shadow = max(v for v in map(int, status["versions"]) if v != status["default"])
    policy = {"shadow": {"version": shadow, "percent": 100}}
    body = WORK / "bodies" / f"{name}.png"
    body.parent.mkdir(parents=True, exist_ok=True)
    body.write_bytes(inp["png"])
    target = Target(f"{server.url}/predictions/{name}", body, "image/png", dict(server.headers))
    conc = args.concurrency[0]
    server.request_json("PUT", f"/models/{name}/traffic", policy)
    run_client(target, conc, args.warmup)  # warms the shadow version too
    cells, pooled = [], {"off": [], "on": []}
    for round_ in range(1, args.rounds + 1):
        for side in ("off", "on"):
            if side == "on":
                server.request_json("PUT", f"/models/{name}/traffic", policy)  # fresh figures for this cell
            else:
                server.request_json("DELETE", f"/models/{name}/traffic")
            cell = http_cell(server, target, conc, args.duration)
            got = server.get_json(f"/models/{name}/traffic")["rollout"]
            cell.update(side=side, round=round_, shadow=(got or {}).get("shadow"))
            pooled[side] += [r[1] for r in cell.pop("raw")]
            cells.append(cell)
            log(f"  round {round_} shadow {side}: {cell['rps']:.0f} req/s, p50 {cell['p50_ms']:.2f} ms, "
                f"p99 {cell['p99_ms']:.2f} ms, errors {cell['errors']}, server CPU {cell['server_cpu']:.0%}")
    server.request_json("DELETE", f"/models/{name}/traffic")
    return {"default": status["default"], "shadow": shadow, "concurrency": conc, "cells": cells,
            "pooled": {side: {"requests": len(v), "p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99)}
                       for side, v in pooled.items()}}


def render_shadow(results: dict) -> str:
    """The markdown section of the shadow cost: every cell, then the pooled p50 and p99 side by side."""
    m, r = results["machine"], results["shadow"]
    load0, load1 = m["loadavg_at_start"], results["loadavg_at_end"]
    off, on = r["pooled"]["off"], r["pooled"]["on"]
    lines = [
        SHADOW_HEADING, "",
        f"Date {results['date']}. Machine: `nproc` {m['nproc']}, {m['cpu']}; load average {load0[0]:.2f} / "
        f"{load0[1]:.2f} / {load0[2]:.2f} at the start, {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f} at the end"
        + (" (other work was running: indicative numbers)." if max(load0[0], load0[1]) > 0.5 else "."),
        "",
        f"`POST /predictions/digits` (PNG `{SAMPLES['digits']}`), c={r['concurrency']}, default v{r['default']}; "
        f"'on' is a 100% shadow of v{r['shadow']} (every request also runs on v{r['shadow']}, off the reply's "
        f"path, and is compared with the answer sent). {results['settings']['duration']:g} s per cell, "
        f"{len(r['cells']) // 2} rounds of off then on in one run of one server; batching "
        f"{results['settings']['batching']}. Latencies are the real replies' as the client saw them.",
        "",
        "| round | shadow | req/s | p50 ms | p99 ms | errors | server CPU | shadow runs | dropped | shadow errors "
        "| agreement |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in r["cells"]:
        s = c["shadow"] or {}
        agreement = s.get("agreement")
        lines.append(f"| {c['round']} | {c['side']} | {c['rps']:,.0f} | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} | "
                     f"{c['errors']} | {c['server_cpu']:.2f} | {s.get('runs', '-')} | {s.get('dropped', '-')} | "
                     f"{s.get('errors', '-')} | {'-' if agreement is None else f'{agreement:.3f}'} |")
    lines += ["", "Pooled over the rounds (every successful request of each side):", "",
              "| shadow | requests | p50 ms | p99 ms |", "|---|---|---|---|",
              f"| off | {off['requests']:,} | {off['p50_ms']:.2f} | {off['p99_ms']:.2f} |",
              f"| on (100%) | {on['requests']:,} | {on['p50_ms']:.2f} | {on['p99_ms']:.2f} |",
              "",
              f"Cost of the shadow on the real reply, pooled: p50 {100 * (on['p50_ms'] / off['p50_ms'] - 1):+.1f}%, "
              f"p99 {100 * (on['p99_ms'] / off['p99_ms'] - 1):+.1f}%. Round by round (on against the off cell "
              f"just before it), p50 {_ratios(r['cells'], 'p50_ms')}; p99 {_ratios(r['cells'], 'p99_ms')}."]
    return "\n".join(lines) + "\n"


def _ratios(cells: list[dict], key: str) -> str:
    """Each round's on/off change of ``key``, and their median: steadier than the pooled figure
    when other work comes and goes on the machine."""
    changes = [100 * (on[key] / off[key] - 1) for off, on in zip(cells[::2], cells[1::2])]
    return ", ".join(f"{c:+.0f}%" for c in changes) + f" (median {float(np.median(changes)):+.1f}%)"


def shadow_main(args, batching_args: list[str], results: dict) -> str:
    """The shadow cost alone: a server over digits v1 and v2, alternating cells; the markdown section."""
    store = Path(tempfile.mkdtemp(prefix="yyai-shadow-bench-"))
    server = None
    try:
        copy_store(Path(args.store), ["digits"], store)
        server = YyaiServer(store, batching_args)
        log(f"starting yyai serve on {server.url} (store {store})")
        results["server_start_s"] = server.start()
        version = server.get_json("/models/digits")["default"]
        inp = model_input(store, "digits", version, ROOT / "model_archives" / "samples" / SAMPLES["digits"],
                          server.get_json("/v2/models/digits"))
        results["shadow"] = measure_shadow(server, "digits", inp, args)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(store, ignore_errors=True)
    results["loadavg_at_end"] = os.getloadavg()
    return render_shadow(results)


def versions() -> dict:
    """Versions of the packages on the serving path."""
    found = {}
    for dist in ("tensorflow", "keras", "tornado", "voila", "aiohttp"):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return found


# --------------------------------------------------------------------------- main


def main() -> None:
    """Parse the options, run the HTTP cells, then the in-process ones; print (and write) the section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=str(ROOT / "model_archives"), help="where the archives are copied from")
    parser.add_argument("--models", default="digits", help="comma list of: " + ", ".join(SAMPLES))
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measured cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each path")
    parser.add_argument("--concurrency", default="1,8,32", help="comma list of concurrency levels")
    parser.add_argument("--workers", default="1,2", help="comma list of --workers values to serve with")
    parser.add_argument("--max-batch-size", type=int, default=None, help="override the archives' batching hint")
    parser.add_argument("--max-delay-ms", type=float, default=None, help="override the archives' batching hint")
    parser.add_argument("--no-batching", action="store_true", help="serve and call without dynamic batching")
    parser.add_argument("--write-results", action="store_true", help="replace this run's section of bench/RESULTS.md")
    parser.add_argument("--shadow", action="store_true", help=f"run only '{SHADOW_HEADING}' (c=8 unless "
                        "--concurrency says otherwise)")
    parser.add_argument("--rounds", type=int, default=5, help="--shadow: rounds of (off, on) cells")
    args = parser.parse_args()
    if args.shadow and "--concurrency" not in " ".join(sys.argv):
        args.concurrency = "8"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - set(SAMPLES)
    if unknown:
        parser.error(f"unknown models: {sorted(unknown)} (known: {', '.join(SAMPLES)})")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.workers = [int(w) for w in args.workers.split(",")]
    if not all(1 <= w <= 16 for w in args.workers):
        parser.error("--workers: each value in 1..16")
    if not 0 < args.duration <= 600 or not 0 < args.warmup <= 600 or not all(0 < c <= 256 for c in args.concurrency):
        parser.error("--duration and --warmup must be in (0, 600], each concurrency in 1..256")

    batching_args = []
    if args.no_batching:
        batching_args.append("--no-batching")
    if args.max_batch_size is not None:
        batching_args += ["--max-batch-size", str(args.max_batch_size)]
    if args.max_delay_ms is not None:
        batching_args += ["--max-delay-ms", str(args.max_delay_ms)]
    batching = ("off" if args.no_batching else
                f"on (max_batch_size {args.max_batch_size or 'from the archive'}, "
                f"max_delay_ms {args.max_delay_ms if args.max_delay_ms is not None else 'from the archive'})")
    results = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine(),
               "versions": versions(), "models": {},
               "settings": {"duration": args.duration, "warmup": args.warmup, "batching": batching,
                            "concurrency": args.concurrency}}
    log(f"load average at start: {results['machine']['loadavg_at_start']}")
    if args.shadow:
        section = shadow_main(args, batching_args, results)
        print()
        print(section)
        if args.write_results:
            replace_section(section)
            log(f"wrote '{SHADOW_HEADING}' in bench/RESULTS.md")
        return
    store = Path(tempfile.mkdtemp(prefix="yyai-http-bench-"))
    results["server_start_s"], results["memory"] = {}, {}
    server = None
    try:
        defaults = copy_store(Path(args.store), models, store)
        inputs = {}
        for workers in args.workers:
            extra = ["--workers", str(workers), "--dashboard-port", str(free_port())] if workers > 1 else []
            server = YyaiServer(store, batching_args + extra)
            log(f"starting yyai serve with {workers} worker(s) on {server.url} (store {store})")
            results["server_start_s"][workers] = server.start()
            log(f"  ready after {results['server_start_s'][workers]:.1f} s")
            suffix = "" if workers == 1 else f"-w{workers}"
            for name in models:
                if name not in inputs:
                    inputs[name] = prepare_model(server, store, name, defaults[name], results)
                measure_http(server, name, inputs[name], args, results["models"][name]["cells"], suffix)
            results["memory"][workers] = server_memory(server)
            server.stop()
            server = None

        log("in-process: the traced function, then a Registry on the same store, same batching settings")
        from yyai_kernel.plane.local import LocalBackend
        from yyai_kernel.registry.registry import (
            Registry,  # TensorFlow is imported only now
        )

        for name, inp in inputs.items():
            measure_traced(store, name, defaults[name], inp, args, results["models"][name]["cells"])
        registry = Registry(ModelStore(store), batching=not args.no_batching, max_batch_size=args.max_batch_size,
                            max_delay_ms=args.max_delay_ms)
        try:
            registry.load_all()
            for name, inp in inputs.items():
                diff = check_same_output(inp["v2_reply"], registry.predict(name, inp["tensor"]), name)
                log(f"  {name}: v2 reply equals the in-process output (max difference {diff:.1e})")
                measure_inprocess(LocalBackend.over(registry), name, inp, args, results["models"][name]["cells"])
        finally:
            registry.close()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(store, ignore_errors=True)
    results["loadavg_at_end"] = os.getloadavg()
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "results.json").write_text(json.dumps(results, indent=1, default=str))
    section = render(results)
    print()
    print(section)
    if args.write_results:
        replace_section(section)
        log(f"wrote '{HEADING}' in bench/RESULTS.md")


if __name__ == "__main__":
    main()
