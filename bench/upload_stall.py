"""Do uploads stall other requests? The worst wait of probes while a large archive uploads.

A benchmark, not a test. A server (``yyai serve`` of this checkout, or of ``--old REV`` beside
it, each from its own worktree on its own port) serves the demo store. Two probes run on
their own threads, one request every 20 ms each: ``GET /v2/health/live`` (no model, no
lock) and a digits v2 inference. Once they have run steadily for a few seconds, archives of
about 100 MB and 400 MB (a dense Keras model with random weights, packed once and cached
in ``bench/.work/upload-stall/``) are uploaded with ``POST /models``, one after the other.
For each upload the report gives the worst latency of each probe while it ran (from the
upload's first byte to its reply) against the probes' steady p99: a step of the upload
that runs on the event loop, or holds a lock the probes need, shows up here as a wait
that grows with the archive. The goal of the layout issue (#22) is a worst wait of at
most 50 ms.

Usage::

    .venv/bin/python bench/upload_stall.py                      # this checkout
    .venv/bin/python bench/upload_stall.py --old 8e70f5a        # and that commit, side by side
    .venv/bin/python bench/upload_stall.py --old 8e70f5a --write-results
    .venv/bin/python bench/upload_stall.py --also-args="--workers 2"    # and the front ends of a model host
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from ab_commits import CommitServer, worktree  # noqa: E402
from benchlib import log, machine, percentile  # noqa: E402
from http_bench import TOKEN, YyaiServer  # noqa: E402
from resultsfile import replace_section  # noqa: E402

HEADING = "## Upload stall (bench/upload_stall.py)"
WORK = BENCH / ".work" / "upload-stall"
PERIOD_S = 0.02
STEADY_S = 5.0
SIZES_MB = (100, 400)
MAX_ARCHIVE = 600 * 1024 * 1024


def big_archive(megabytes: int, version: int) -> Path:
    """A ``big`` archive of about ``megabytes`` MB: a dense model of random float32 weights (cached)."""
    path = WORK / f"big-{version}-{megabytes}mb.yyar"
    if path.exists():
        return path
    import keras
    import numpy as np

    from yyai_kernel.archive import pack

    WORK.mkdir(parents=True, exist_ok=True)
    layers = max(1, megabytes // 100) * 2  # square dense layers of float32 weights, about a hundred MB a pair
    width = int((megabytes * 1024 * 1024 / 4 / layers) ** 0.5)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(width),
                              *[keras.layers.Dense(width) for _ in range(layers)],
                              keras.layers.Dense(10, activation="softmax")])
    rng = np.random.default_rng(version)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.01 for w in model.get_weights()])
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        member = Path(tmp) / "dense.keras"
        model.save(member)
        made = pack(name="big", version=version, models=[member],
                    input_spec={"shape": [8, 8, 1], "dtype": "float32", "color": "grayscale", "scale": 1 / 255},
                    output_spec={"kind": "classification", "labels": list("0123456789")}, out_dir=tmp)
        shutil.move(made, path)
    return path


class Probe(threading.Thread):
    """One request every PERIOD_S on its own connection; every (start, latency) it measured."""

    def __init__(self, port: int, method: str, path: str, body: bytes = b""):
        super().__init__(daemon=True)
        self.port, self.method, self.path, self.body = port, method, path, body
        self.samples: list[tuple[float, float]] = []
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": f"token {TOKEN}", "Content-Type": "application/json"}
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                conn.request(self.method, self.path, self.body, headers)
                reply = conn.getresponse()
                reply.read()
                if reply.status != 200:
                    self.errors += 1
            except OSError:
                self.errors += 1
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            elapsed = time.perf_counter() - started
            self.samples.append((started, elapsed))
            time.sleep(max(0.0, PERIOD_S - elapsed))

    def between(self, start: float, end: float) -> list[float]:
        """The latencies (ms) of the requests that were waiting at some moment in [start, end]."""
        return [1000 * s for t, s in self.samples if t <= end and t + s >= start]


def digits_body() -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32",
                                   "data": [0.5] * 64}]}).encode()


def upload(port: int, archive: Path) -> tuple[float, float, int]:
    """POST the archive, streamed from disk; (start, end, status)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Authorization": f"token {TOKEN}", "Content-Type": "application/octet-stream",
               "Content-Length": str(archive.stat().st_size)}
    started = time.perf_counter()
    with open(archive, "rb") as body:
        conn.request("POST", "/models", body, headers)
        reply = conn.getresponse()
        reply.read()
    return started, time.perf_counter(), reply.status


def measure(server: YyaiServer, archives: list[Path]) -> list[dict]:
    probes = {"health": Probe(server.port, "GET", "/v2/health/live"),
              "infer": Probe(server.port, "POST", "/v2/models/digits/infer", digits_body())}
    for probe in probes.values():
        probe.start()
    time.sleep(STEADY_S)
    steady_end = time.perf_counter()
    rows = []
    try:
        for archive in archives:
            start, end, status = upload(server.port, archive)
            row = {"mb": round(archive.stat().st_size / 1e6), "upload_s": round(end - start, 2), "status": status}
            for name, probe in probes.items():
                waits = probe.between(start, end)
                steady = [1000 * s for t, s in probe.samples if t < steady_end]
                row[name] = {"worst_ms": round(max(waits, default=0.0), 1), "p99_ms": round(percentile(waits, 99), 1)
                             if waits else None, "n": len(waits), "steady_p99_ms": round(percentile(steady, 99), 1)}
            log(f"  {row['mb']} MB: upload {row['upload_s']} s ({status}); worst wait health "
                f"{row['health']['worst_ms']} ms, infer {row['infer']['worst_ms']} ms (steady p99 "
                f"{row['health']['steady_p99_ms']} / {row['infer']['steady_p99_ms']} ms)")
            rows.append(row)
            time.sleep(2.0)
    finally:
        for probe in probes.values():
            probe.stop.set()
            probe.join(30)
    if any(p.errors for p in probes.values()):
        log(f"  probe errors: {({n: p.errors for n, p in probes.items()})}")
    return rows


def run_side(label: str, tree: Path | None, archives: list[Path], extra: list[str] | None = None) -> list[dict]:
    store = Path(tempfile.mkdtemp(prefix="yyai-upload-stall-"))
    try:
        for archive in (ROOT / "model_archives").glob("*.yyar"):
            shutil.copy(archive, store / archive.name)
        args = ["--max-archive-bytes", str(MAX_ARCHIVE), *(extra or [])]
        server = CommitServer(store, tree) if tree is not None else YyaiServer(store, args)
        if tree is not None:
            server.cmd += args
        log(f"{label}: starting yyai serve")
        server.start()
        try:
            return measure(server, archives)
        finally:
            server.stop()
    finally:
        shutil.rmtree(store, ignore_errors=True)


def report(results: dict, host: dict) -> str:
    lines = [HEADING, "",
             f"{time.strftime('%Y-%m-%d')}, {host['cpu']} ({host['nproc']} CPUs), {host['python']}. Probes every "
             f"{int(PERIOD_S * 1000)} ms: `GET /v2/health/live` and a digits v2 inference; then `POST /models` of "
             "each archive, one after the other. Worst wait: the slowest probe request in flight at any moment "
             "of the upload. Goal (#22): at most 50 ms.", "",
             "| server | archive | upload | worst wait, health | worst wait, infer | steady p99, health / infer |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {label} | {row['mb']} MB | {row['upload_s']} s | {row['health']['worst_ms']} ms | "
              f"{row['infer']['worst_ms']} ms | {row['health']['steady_p99_ms']} / "
              f"{row['infer']['steady_p99_ms']} ms |"
              for label, rows in results.items() for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", help="also measure this commit, side by side (its own worktree)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_MB)), help="archive sizes in MB")
    parser.add_argument("--also-args", action="append", default=[],
                        help='measure this checkout once more with these serve arguments (e.g. "--workers 2")')
    parser.add_argument("--write-results", action="store_true", help=f"write '{HEADING}' in bench/RESULTS.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    log("packing the archives (cached)")
    archives = [big_archive(mb, version) for version, mb in enumerate(sizes, start=1)]
    results = {}
    if args.old:
        results[f"`{args.old}` (before)"] = run_side(args.old, worktree(args.old), archives)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    results[f"`{head.strip()}`"] = run_side("HEAD", None, archives)
    for extra in args.also_args:
        results[f"`{head.strip()}` `{extra}`"] = run_side(f"HEAD {extra}", None, archives, extra.split())
    text = report(results, machine())
    print(text)
    if args.write_results:
        replace_section(text)


if __name__ == "__main__":
    main()
