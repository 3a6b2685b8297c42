"""yyai on Ray Serve, route by route: what each way a request can cross Ray costs (issue #26).

It is a benchmark, not a test: it measures and writes, and asserts nothing about time. It
runs these servers one after another on 127.0.0.1, in rounds (A B C ... A B C), on the peer
comparison's models and bodies (``bench/compare.py`` prepares them), all in yyai's own venv
so that every one runs the same Ray, TensorFlow and Keras:

- ``yyai``: ``yyai serve``, one process (the floor: no Ray at all);
- ``ray``: plain Ray Serve, ``bench/peers/ray_server.py``: Serve's proxy, then one deployment
  per model with ``@serve.batch`` (32, 2 ms);
- ``ray-tput``: the same with ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` (Ray's direct ingress, gRPC
  between Ray processes, user code on the replica's main thread);
- ``yyai-ray``: ``yyai ray --replicas 1``: Serve's proxy, then one replica that serves yyai's REST
  API and runs the model (this tree);
- ``yyai-ray-id``: the same, the client sends ``serve_multiplexed_model_id`` (Ray's proxy then
  routes to a replica holding that model);
- ``yyai-ray-tput``: ``yyai ray`` with ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``;
- ``ray-direct``, ``yyai-ray-direct``: the two above with the client posting straight to the
  replica's own HTTP port (Ray's direct ingress, which that setting turns on: each ingress
  replica listens on a port of 30000-31000 beside the proxy; HAProxy mode forwards there);
- ``yyai-ray-2hop``: the design before #26 (``--before``, a commit): Serve's proxy, an ingress
  replica, then a model replica reached by a deployment handle.

Cells, per model (``digits``, ``cnn64``), v2 JSON infer: c=1 p50 and p99 (the aiohttp client,
every request timed), c=32 req/s and p99 (``wrk -t1``), after a 2 s warm-up. A server that
does not come up is reported with the end of its log. Writes
``bench/.work/ray_hops/results.json`` and the ``## yyai on Ray Serve: one hop fewer`` section of
``bench/RESULTS.md`` (its goals table included).

Usage::

    python bench/ray_hops.py                      # every server, 2 rounds of 8 s cells (~25 min on 2 cores)
    python bench/ray_hops.py --servers yyai-ray,ray --rounds 1 --seconds 4
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import compare  # noqa: E402 - puts bench/peers on sys.path too
from benchlib import log, machine  # noqa: E402
from resultsfile import replace_section  # noqa: E402

ROOT, PEERS_DIR, WORK, YYAI_PY = compare.ROOT, compare.PEERS_DIR, compare.WORK, compare.YYAI_PY
OUT = BENCH / ".work" / "ray_hops"
MODELS = compare.MODELS
HEADING = "## yyai on Ray Serve: one hop fewer (issue #26)"
TPUT = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
MULTIPLEXED_HEADER = "serve_multiplexed_model_id"
DIRECT_PORTS = range(30000, 31001)  # RAY_SERVE_DIRECT_INGRESS_MIN/MAX_HTTP_PORT


def source_env(tree: Path) -> dict:
    """Servers import yyai from ``tree`` (this checkout, or the --before one), not the venv's install."""
    return {"PYTHONPATH": f"{tree}{os.pathsep}{PEERS_DIR}"}


class YyaiServe(compare.Yyai):
    route = "client -> yyai serve (one process)"
    endpoints = ("v2",)

    def env_extra(self):
        return source_env(ROOT)


class PlainRay(compare.Ray):
    """The plain Ray Serve peer, run by yyai's venv (the same Ray, TensorFlow and Keras)."""

    route = "client -> Serve proxy -> replica (one deployment per model)"
    venv = None

    def command(self):
        return [str(YYAI_PY), str(PEERS_DIR / "ray_server.py"), str(WORK / "models"), str(self.port)]


class PlainRayTput(PlainRay):
    name = "ray-tput"
    route = PlainRay.route + ", RAY_SERVE_THROUGHPUT_OPTIMIZED=1"

    def env_extra(self):
        return super().env_extra() | TPUT


class YyaiRay(compare.YyaiRay):
    route = "client -> Serve proxy -> yyai replica (REST API and models)"
    endpoints = ("v2",)
    source = ROOT  # the checkout whose yyai_kernel the server runs

    def env_extra(self):
        return super().env_extra() | source_env(self.source) | {"RAY_USAGE_STATS_ENABLED": "0"}

    def cwd(self) -> str:
        return str(self.source)  # Ray puts the driver's folder first on its workers' sys.path


class YyaiRayId(YyaiRay):
    name = "yyai-ray-id"
    route = YyaiRay.route + ", the client sends the model id"

    def target(self, model, endpoint):
        target = super().target(model, endpoint)
        archive = WORK / "store" / f"{model}-1.yyar"
        sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
        target.headers[MULTIPLEXED_HEADER] = f"{model}:1:{sha256}"  # ray_app.ModelId
        return target


class YyaiRayTput(YyaiRay):
    name = "yyai-ray-tput"
    route = YyaiRay.route + ", RAY_SERVE_THROUGHPUT_OPTIMIZED=1"

    def env_extra(self):
        return super().env_extra() | TPUT


def direct_urls(server: compare.Server) -> dict[str, str]:
    """Each model's v2 infer URL on a replica's own direct-ingress port (found among the ports the
    server's processes listen on, tried in turn)."""
    ports = set()
    for process in server.tree():
        try:
            ports |= {c.laddr.port for c in process.connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN and c.laddr.port in DIRECT_PORTS}
        except psutil.Error:
            continue
    urls = {}
    for model in MODELS:
        for port in sorted(ports):
            url = f"http://127.0.0.1:{port}/v2/models/{model}/infer"
            if compare.post_ok(compare.Target(url, WORK / "bodies" / f"{model}.json", "application/json",
                                              dict(server.headers))):
                urls[model] = url
                break
        else:
            raise RuntimeError(f"no direct-ingress port answers {model} (listening: {sorted(ports)})")
    return urls


def direct(target: compare.Target, urls: dict[str, str], model: str) -> compare.Target:
    """The target posted to the replica's own port once it is known (the proxy's until then)."""
    target.url = urls.get(model, target.url)
    return target


class PlainRayDirect(PlainRayTput):
    name = "ray-direct"
    route = "client -> replica's own port (direct ingress, RAY_SERVE_THROUGHPUT_OPTIMIZED=1), no proxy"

    def __init__(self, round_no: int):
        super().__init__(round_no)
        self.urls: dict[str, str] = {}  # each model's URL on the replica's own port, once started

    def start(self):
        cold = super().start()
        self.urls = direct_urls(self)
        return cold

    def target(self, model, endpoint):
        return direct(super().target(model, endpoint), self.urls, model)


class YyaiRayDirect(YyaiRayTput):
    name = "yyai-ray-direct"
    route = "client -> yyai replica's own port (direct ingress, RAY_SERVE_THROUGHPUT_OPTIMIZED=1), no proxy"

    def __init__(self, round_no: int):
        super().__init__(round_no)
        self.urls: dict[str, str] = {}  # each model's URL on the replica's own port, once started

    def start(self):
        cold = super().start()
        self.urls = direct_urls(self)
        return cold

    def target(self, model, endpoint):
        return direct(super().target(model, endpoint), self.urls, model)


class YyaiRayBefore(YyaiRay):
    name = "yyai-ray-2hop"
    route = "client -> Serve proxy -> ingress replica -> model replica (before #26)"
    source = OUT / "before"


SERVERS = {c.name: c for c in (YyaiServe, PlainRay, PlainRayTput, PlainRayDirect, YyaiRay, YyaiRayId, YyaiRayTput,
                               YyaiRayDirect, YyaiRayBefore)}


def checkout_before(commit: str) -> None:
    """The tree of ``commit`` at ``OUT/before`` (the design before #26), from ``git archive``: a
    plain folder, no worktree registered in the repository."""
    tree = YyaiRayBefore.source
    stamp = tree / ".commit"
    if stamp.is_file() and stamp.read_text() == commit:
        return
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    stamp.write_text(commit)


def measure(name: str, round_no: int, args, wrk: str) -> dict:
    server = SERVERS[name](round_no)
    record: dict = {"round": round_no, "cells": []}
    try:
        log(f"round {round_no}: starting {name}")
        record["cold_start_s"] = server.start()
        for model in MODELS:
            target = server.target(model, "v2")
            compare.run_wrk(wrk, target, 8, args.warmup, server)  # warm-up, discarded
            for concurrency in (1, 32):
                if concurrency == 1:
                    cell = compare.client_cell(target, 1, args.seconds, server)
                    cell.pop("latencies_ms", None)
                else:
                    cell = compare.run_wrk(wrk, target, concurrency, args.seconds, server)
                cell.update(model=model)
                record["cells"].append(cell)
                log(f"  {name} {model} c={concurrency}: {cell['rps']:.0f} req/s p50 {cell['p50_ms']:.2f} ms "
                    f"p99 {cell['p99_ms']:.2f} ms errors {cell['errors']}")
        record["loadavg_1m_after"] = os.getloadavg()[0]
    except Exception as exc:  # noqa: BLE001 - a server that fails is reported, and the run goes on
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["log_tail"] = compare.tail(server.log_path, 12)
        log(f"  {name} FAILED: {record['error']}")
    finally:
        server.stop()
    return record


# --------------------------------------------------------------------------- report


def cells(results: dict, name: str, model: str, concurrency: int) -> list[dict]:
    return [c for r in results["servers"].get(name, []) for c in r.get("cells", [])
            if c["model"] == model and c["concurrency"] == concurrency]


def median(results: dict, name: str, model: str, concurrency: int, key: str) -> float | None:
    values = [c[key] for c in cells(results, name, model, concurrency)]
    return statistics.median(values) if values else None


def spread(results: dict, name: str, model: str, concurrency: int, key: str, digits: int) -> str:
    values = [c[key] for c in cells(results, name, model, concurrency)]
    if not values:
        return "-"
    middle = f"{statistics.median(values):,.{digits}f}"
    return middle if len(values) == 1 else f"{middle} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def failure(results: dict, name: str) -> str | None:
    errors = [r["error"] for r in results["servers"].get(name, []) if "error" in r]
    return errors[0] if errors else None


def report(results: dict) -> str:
    m, st = results["machine"], results["settings"]
    names = [n for n in SERVERS if n in results["servers"]]
    lines = [
        HEADING, "",
        f"Measured {results['date']} by `bench/ray_hops.py` on {m['cpu']}, {m['nproc']} cores, {m['mem_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}, Ray {results['ray']} (load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}; the machine is shared with other jobs). "
        f"{st['rounds']} round(s), servers one after another in the same order each round, {st['seconds']} s a "
        f"cell after a {st['warmup']} s warm-up; every server runs in yyai's venv (the same Ray, TensorFlow and "
        "Keras), one replica per model (plain Ray) or one replica for both models (yyai). v2 JSON bodies of the "
        "peer comparison; c=1 by the aiohttp client (every request timed), c=32 by `wrk -t1`. Medians over "
        "rounds, range in brackets.", "",
    ]
    for model in MODELS:
        lines += [f"### `{model}`", "",
                  "| server | route | c=1 p50 ms | c=1 p99 ms | c=32 req/s | c=32 p99 ms | errors |",
                  "|---|---|---|---|---|---|---|"]
        for name in names:
            err = failure(results, name)
            if not cells(results, name, model, 1) and err:
                lines.append(f"| {name} | {SERVERS[name].route} | did not come up: {err[:160]} | | | | |")
                continue
            errors = sum(c["errors"] for conc in (1, 32) for c in cells(results, name, model, conc))
            lines.append(f"| {name} | {SERVERS[name].route} | {spread(results, name, model, 1, 'p50_ms', 2)} | "
                         f"{spread(results, name, model, 1, 'p99_ms', 2)} | "
                         f"{spread(results, name, model, 32, 'rps', 0)} | "
                         f"{spread(results, name, model, 32, 'p99_ms', 1)} | {errors} |")
        lines.append("")

    def p50(name, model):
        return median(results, name, model, 1, "p50_ms")

    def rps(name, model):
        return median(results, name, model, 32, "rps")

    def diff(a, b, model):
        return f"{p50(a, model) - p50(b, model):+.2f} ms" if p50(a, model) and p50(b, model) else "-"

    lines += ["### Each hop", "",
              "Medians at c=1 (one request at a time: no batching, no queueing), differences of two routes on "
              "this machine (every process on one host, loopback), and what the hop costs on a network on paper: "
              "one round trip (RTT, about 0.1 to 0.5 ms within a zone) when the two ends are on different nodes, "
              "besides the same CPU work.", "",
              "| hop | how measured | digits | cnn64 | on a network |", "|---|---|---|---|---|"]
    hops = [("Ray in place of one yyai process: Serve's proxy, then a replica", "yyai-ray − yyai", "yyai-ray", "yyai",
             "client -> proxy: 1 RTT, as to any server; proxy -> replica: +1 RTT when on another node"),
            ("Serve's Python proxy alone", "yyai-ray − yyai-ray-direct", "yyai-ray", "yyai-ray-direct",
             "+1 RTT when the replica is on another node (0 with a proxy on every node behind a load balancer)"),
            ("a replica's direct ingress against yyai serve's Tornado", "yyai-ray-direct − yyai", "yyai-ray-direct",
             "yyai", "none: both are the one process the client reaches"),
            ("the deployment-handle hop #26 removed (ingress replica -> model replica)", "yyai-ray-2hop − yyai-ray",
             "yyai-ray-2hop", "yyai-ray", "+1 RTT when the two replicas are on different nodes"),
            ("yyai's replica (token, resolution, v2 codec) against plain Ray's Starlette handler", "yyai-ray − ray",
             "yyai-ray", "ray", "none: CPU in the replica")]
    for label, how, a, b, paper in hops:
        lines.append(f"| {label} | {how} | {diff(a, b, 'digits')} | {diff(a, b, 'cnn64')} | {paper} |")
    lines += ["", "A negative last row means yyai's replica was the cheaper one: it parses v2 JSON with orjson "
              "straight into one array and serves both models from one process, where the plain peer decodes "
              "with `json` and `numpy.asarray` (`bench/peers/common.py`) in one replica per model, two "
              "TensorFlow processes on two cores."]

    lines += ["", "### Goals (issue #26)", "",
              "| goal | model | measured | met |", "|---|---|---|---|"]
    for model in MODELS:
        gap = p50("yyai-ray", model) - p50("ray", model) if p50("yyai-ray", model) and p50("ray", model) else None
        share = rps("yyai-ray", model) / rps("ray", model) if rps("yyai-ray", model) and rps("ray", model) else None
        before = (f"; before #26 (yyai-ray-2hop) {p50('yyai-ray-2hop', model) - p50('ray', model):+.2f} ms"
                  if p50("yyai-ray-2hop", model) and p50("ray", model) else "")
        before_share = (f"; before #26 {rps('yyai-ray-2hop', model) / rps('ray', model):.2f}x"
                        if rps("yyai-ray-2hop", model) and rps("ray", model) else "")
        lines.append(f"| c=1 p50 within +1.5 ms of plain Ray Serve | {model} | "
                     f"{'-' if gap is None else f'{gap:+.2f} ms'}{before} | "
                     f"{'-' if gap is None else ('yes' if gap <= 1.5 else 'no')} |")
        lines.append(f"| c=32 req/s at least 0.9x plain Ray Serve | {model} | "
                     f"{'-' if share is None else f'{share:.2f}x'}{before_share} | "
                     f"{'-' if share is None else ('yes' if share >= 0.9 else 'no')} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma list of {', '.join(SERVERS)}")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=8, help="seconds per measured cell")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--before", default="efdd557", help="the commit whose yyai ray has the ingress hop")
    parser.add_argument("--report-only", action="store_true", help="rewrite the section from results.json")
    args = parser.parse_args()
    path = OUT / "results.json"
    if args.report_only:
        replace_section(report(json.loads(path.read_text())))
        return
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = set(names) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {sorted(unknown)}")
    if "yyai-ray-2hop" in names:
        checkout_before(args.before)
    OUT.mkdir(parents=True, exist_ok=True)
    wrk = compare.ensure_wrk()
    compare.prepare_models()
    import ray

    results = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine(),
               "ray": ray.__version__, "before": args.before, "servers": {},
               "settings": {"rounds": args.rounds, "seconds": args.seconds, "warmup": args.warmup}}
    for round_no in range(1, args.rounds + 1):
        for name in names:
            results["servers"].setdefault(name, []).append(measure(name, round_no, args, wrk))
            path.write_text(json.dumps(results, indent=1))
    section = report(results)
    if set(names) >= {"yyai", "ray", "yyai-ray"}:
        replace_section(section)
        log(f"wrote the section of {compare.RESULTS_MD.relative_to(ROOT)}")
    else:
        (OUT / "RESULTS.partial.md").write_text(section)
        log(f"wrote {(OUT / 'RESULTS.partial.md').relative_to(ROOT)} (a partial run leaves RESULTS.md alone)")


if __name__ == "__main__":
    main()
