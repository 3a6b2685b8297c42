"""Measuring pieces the benches share: the aiohttp load client, in-process thread load, percentiles.

``compare.py`` (peer comparison), ``http_bench.py`` (HTTP serving overhead) and
``runtime_bench.py`` measure the same way, so the way is written once, here: a closed-loop
aiohttp (or, for v2 gRPC, tritonclient.grpc) client in its own process with every
request's latency (``run_client``), the same
closed loop with threads calling a function in-process (``thread_load``), exact
nearest-rank percentiles, and a description of the machine. Standard library and psutil
only (no TensorFlow): the load generator's side stays light.

Not named ``common.py``: ``bench/peers/common.py`` is on ``sys.path`` first in compare.py.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
PEERS_DIR = BENCH / "peers"


def log(message: str) -> None:
    """A time-stamped progress line on stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Target:
    """One endpoint of one model on one server: what the load generator posts where.

    A v2 gRPC target names its model in ``grpc_model``; its ``url`` is then ``host:port``,
    ``body`` the v2 JSON body whose tensor it sends, and ``headers`` the call's metadata.
    """

    url: str
    body: Path
    content_type: str
    headers: dict = field(default_factory=dict)
    grpc_model: str | None = None


def http(method: str, url: str, body: bytes, headers: dict, timeout: float = 10) -> bytes:
    """One request with urllib; the reply body (an HTTPError for a non-2xx status)."""
    req = urllib.request.Request(url, data=body if method in ("POST", "PUT") else None, method=method,
                                 headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as reply:
        return reply.read()


def run_client(target: Target, concurrency: int, seconds: float) -> dict:
    """The aiohttp client (``peers/loadclient.py``) in its own process, or for a gRPC target
    the tritonclient.grpc client (``peers/grpcload.py``).

    Returns its JSON: every request's ``[start_s, latency_ms, status]``, the client's CPU
    seconds and its wall time. Bounded: the process is killed ``seconds + 120`` s in.
    """
    if target.grpc_model:
        args = [sys.executable, str(PEERS_DIR / "grpcload.py"), target.url, target.grpc_model, str(target.body)]
    else:
        args = [sys.executable, str(PEERS_DIR / "loadclient.py"), target.url, str(target.body), target.content_type]
    args += [str(concurrency), str(seconds), *[f"{k}:{v}" for k, v in target.headers.items()]]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=seconds + 120)
    return json.loads(out.stdout)


def thread_load(call, concurrency: int, seconds: float) -> dict:
    """Closed loop in-process: ``concurrency`` threads call ``call()`` back to back for ``seconds``.

    Returns every call's latency in ms, the wall time and this process's CPU seconds
    (all threads) over the run. A call that raises stops the run (the exception is raised).
    """
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client():
        mine = []
        try:
            while time.perf_counter() < stop and not errors:
                started = time.perf_counter()
                call()
                mine.append((time.perf_counter() - started) * 1000)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    cpu0 = _cpu_self()
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    wall = time.perf_counter() - began
    cpu = _cpu_self() - cpu0
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise TimeoutError(f"in-process calls still running {seconds + 120:.0f} s after the start")
    return {"latencies_ms": latencies, "wall_s": wall, "cpu_s": cpu}


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(processes) -> float:
    """User + system CPU seconds of some processes (psutil), skipping any that ended."""
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def percentile(values: list[float], q: float) -> float:
    """Exact percentile by nearest rank (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


def machine() -> dict:
    """CPU model, CPUs this process may use (as ``nproc``), memory, kernel, Python and the load average now."""
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpu": model, "nproc": len(os.sched_getaffinity(0)),
            "mem_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg()}
