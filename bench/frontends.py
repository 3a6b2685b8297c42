"""HTTP front ends side by side: the same endpoint layer behind each HTTP server yyai can run.

A benchmark, not a test: it measures and asserts nothing about time. One run starts each
variant in turn on loopback over the same temporary store (``digits`` by default), checks
that its v2 reply equals the first variant's, and measures ``POST /v2/models/{m}/infer``
(v2 JSON) at each concurrency (default 1 and 32) with the closed-loop aiohttp client of
``benchlib.run_client``: exact p50 and p99, req/s, and the server's CPU per request (its
whole process tree, psutil). The variants (``--variants``):

* ``single``: ``yyai serve`` as one process, REST and dashboard on Tornado (the reference
  for c=1, which must not regress);
* ``tornado``: ``--workers 2``, each front end serving the shared port with Tornado
  (``--YyaiServer.rest_http=tornado``);
* ``uvicorn``: ``--workers 2``, uvicorn with httptools on the front end's asyncio loop
  (the default of ``--workers``);
* ``uvloop``: the same with the front ends on uvloop (``--YyaiServer.rest_loop=uvloop``).

Then, to see the HTTP server's own share, the servers alone (``--servers``, default all
of them; ``--servers none`` skips it): each one serving a trivial app in its own process
(read the body, answer a fixed 0.8 kB JSON body) at the same concurrencies: Tornado (a
``RequestHandler``), uvicorn with httptools on asyncio and on uvloop, and Granian's
embedded server (experimental; a row only where ``granian`` is importable).

With ``--rounds N`` the variants run N times, interleaved, and each cell is the median of
its rounds, so that every variant meets the same machine. ``--write-results`` replaces the
``## HTTP front ends (bench/frontends.py)`` section of ``bench/RESULTS.md``. Usage::

    .venv/bin/python bench/frontends.py                                   # ~4 minutes
    .venv/bin/python bench/frontends.py --duration 1 --warmup 0.5 --rounds 1   # a smoke run
    .venv/bin/python bench/frontends.py --rounds 3 --duration 10 --write-results
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata as md
import json
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from benchlib import Target, free_port, log, machine, run_client  # noqa: E402
from http_bench import ROOT, SAMPLES, WORK, YyaiServer, copy_store, http_cell, model_input  # noqa: E402
from resultsfile import replace_section  # noqa: E402

HEADING = "## HTTP front ends (bench/frontends.py)"
VARIANTS = {
    "single": ("one process, Tornado", []),
    "tornado": ("--workers 2, Tornado front ends", ["--YyaiServer.rest_http=tornado"]),
    "uvicorn": ("--workers 2, uvicorn + httptools (asyncio loop)", []),
    "uvloop": ("--workers 2, uvicorn + httptools on uvloop", ["--YyaiServer.rest_loop=uvloop"]),
}
SERVERS = {
    "tornado": "Tornado RequestHandler",
    "uvicorn": "uvicorn + httptools, asyncio",
    "uvicorn-uvloop": "uvicorn + httptools, uvloop",
    "granian": "Granian (embedded, ASGI)",
}
TRIVIAL_BODY = json.dumps({"model_name": "digits", "model_version": "2",
                           "outputs": [{"name": "output", "datatype": "FP32", "shape": [1, 60],
                                        "data": [0.0123] * 60}]}).encode()
SERVES_LINE = re.compile(r"Worker \d+ serves on port \d+ \(([^)]*)\)")


def run_variant(name: str, store: Path, model: str, args, reference: dict | None) -> tuple[list[dict], dict]:
    """Start one variant, check its reply, measure every concurrency; its cells and its v2 reply."""
    _, extra = VARIANTS[name]
    if name != "single":
        extra = ["--workers", "2", "--dashboard-port", str(free_port()), *extra]
    server = YyaiServer(store, extra)
    try:
        log(f"{name}: starting ({' '.join(extra) or 'one process'})")
        server.start()
        served_by = sorted(set(SERVES_LINE.findall(server.log_path.read_text(errors="replace"))))
        metadata = server.get_json(f"/v2/models/{model}")
        version = server.get_json(f"/models/{model}")["default"]
        inp = model_input(store, model, version, ROOT / "model_archives" / "samples" / SAMPLES[model], metadata)
        reply = server.post_json(f"/v2/models/{model}/infer", inp["v2_body"], "application/json")
        if reference is not None and reply["outputs"] != reference["outputs"]:
            raise SystemExit(f"{name}: the v2 reply differs from the first variant's")
        body = WORK / "bodies" / f"{model}-front.json"
        body.parent.mkdir(parents=True, exist_ok=True)
        body.write_bytes(inp["v2_body"])
        target = Target(f"{server.url}/v2/models/{model}/infer", body, "application/json", dict(server.headers))
        run_client(target, 8, args.warmup)  # warm-up, discarded
        cells = []
        for conc in args.concurrency:
            cell = http_cell(server, target, conc, args.duration)
            cell.pop("raw")
            cell["cpu_ms_per_request"] = 1000 * cell["server_cpu"] / cell["rps"] if cell["rps"] else float("nan")
            cell["served_by"] = served_by
            cells.append(cell)
            log(f"  {name} c={conc}: {cell['rps']:.0f} req/s, p50 {cell['p50_ms']:.2f} ms, p99 {cell['p99_ms']:.2f} ms,"
                f" server CPU {cell['cpu_ms_per_request']:.3f} ms/request, errors {cell['errors']}"
                + (f" [{', '.join(served_by)}]" if served_by else ""))
        return cells, reply
    finally:
        server.stop()


# --------------------------------------------------------------------------- the servers alone


async def trivial_app(scope, receive, send) -> None:
    """ASGI: read the whole body, answer ``TRIVIAL_BODY``."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(TRIVIAL_BODY))]})
    await send({"type": "http.response.body", "body": TRIVIAL_BODY})


def serve_trivial(kind: str, port: int) -> None:
    """Run one server of the trivial app on 127.0.0.1:port until killed (``--serve``)."""
    import asyncio

    if kind in ("uvicorn", "uvicorn-uvloop"):
        import uvicorn

        if kind == "uvicorn-uvloop":
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        config = uvicorn.Config(trivial_app, host="127.0.0.1", port=port, http="httptools", ws="none",
                                lifespan="off", access_log=False, log_config=None)
        asyncio.run(uvicorn.Server(config).serve())
    elif kind == "granian":
        from granian.constants import Interfaces
        from granian.server.embed import Server

        async def granian_main() -> None:
            await Server(trivial_app, address="127.0.0.1", port=port, interface=Interfaces.ASGI, websockets=False,
                         log_enabled=False).serve()

        asyncio.run(granian_main())
    else:
        from tornado import web

        class Handler(web.RequestHandler):
            def post(self) -> None:
                self.set_header("Content-Type", "application/json")
                self.finish(TRIVIAL_BODY)

        async def tornado_main() -> None:
            web.Application([(r"/.*", Handler)]).listen(port, "127.0.0.1")
            await asyncio.Event().wait()

        asyncio.run(tornado_main())


def run_server_alone(kind: str, args) -> list[dict] | None:
    """The trivial app on one server, in its own process: every concurrency's cell (None: not installed)."""
    import subprocess
    import time

    import psutil
    from benchlib import cpu_seconds, http, percentile

    if kind == "granian":
        import importlib.util

        if importlib.util.find_spec("granian") is None:
            log("granian is not installed: no row")
            return None
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                http("POST", f"http://127.0.0.1:{port}/", b"{}", {}, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{kind}: the server did not start") from None
                time.sleep(0.1)
        body = WORK / "bodies" / "trivial.json"
        body.parent.mkdir(parents=True, exist_ok=True)
        body.write_bytes(b'{"inputs": []}')
        target = Target(f"http://127.0.0.1:{port}/v2/models/digits/infer", body, "application/json")
        run_client(target, 8, args.warmup)
        server = psutil.Process(proc.pid)
        cells = []
        for conc in args.concurrency:
            cpu0 = cpu_seconds([server])
            got = run_client(target, conc, args.duration)
            cpu = cpu_seconds([server]) - cpu0
            ok = [r[1] for r in got["requests"] if r[2] == 200]
            rps = len(ok) / got["wall_s"]
            cells.append({"concurrency": conc, "rps": rps, "p50_ms": percentile(ok, 50), "p99_ms": percentile(ok, 99),
                          "cpu_ms_per_request": 1000 * cpu / len(ok) if ok else float("nan"),
                          "client_cpu": got["cpu_s"] / got["wall_s"], "server_cpu": cpu / got["wall_s"],
                          "errors": len(got["requests"]) - len(ok), "served_by": [], "threads": server.num_threads()})
            log(f"  {kind} alone c={conc}: {rps:.0f} req/s, p50 {cells[-1]['p50_ms']:.2f} ms, "
                f"server CPU {cells[-1]['cpu_ms_per_request']:.3f} ms/request, {cells[-1]['threads']} thread(s)")
        return cells
    finally:
        proc.kill()
        proc.wait(timeout=10)


def median_cells(rounds: list[list[dict]]) -> list[dict]:
    """Each concurrency's cell as the median of its rounds (errors summed)."""
    merged = []
    for cells in zip(*rounds):
        cell = {key: statistics.median(c[key] for c in cells)
                for key in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request", "client_cpu", "server_cpu")}
        cell.update(concurrency=cells[0]["concurrency"], errors=sum(c["errors"] for c in cells),
                    served_by=cells[0]["served_by"], rounds=len(cells))
        merged.append(cell)
    return merged


def render(results: dict) -> str:
    m = results["machine"]
    lines = [HEADING, "",
             f"{results['date']}; {m['cpu']}, {m['nproc']} CPUs; load average at start {m['loadavg_at_start']}; "
             f"{results['model']} v2 JSON infer; {results['settings']}; "
             + ", ".join(f"{k} {v}" for k, v in results["versions"].items()) + ".", "",
             "Each cell is the median of its rounds (variants interleaved). Server CPU per request is the "
             "server's whole process tree (front ends and model host) over req/s.", "",
             "| variant | c | p50 ms | p99 ms | req/s | server CPU ms/request | errors |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines.extend(f"| {VARIANTS[name][0]} | {cell['concurrency']} | {cell['p50_ms']:.2f} | {cell['p99_ms']:.2f} | "
                 f"{cell['rps']:,.0f} | {cell['cpu_ms_per_request']:.3f} | {cell['errors']} |"
                 for name, cells in results["cells"].items() for cell in cells)
    if results.get("servers"):
        lines += ["", "The HTTP servers alone, each serving a trivial app (read the body, answer a fixed 0.8 kB JSON) "
                  "in its own process: what the server itself costs per request.", "",
                  "| server | c | p50 ms | p99 ms | req/s | server CPU ms/request | threads |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines.extend(f"| {SERVERS[kind]} | {cell['concurrency']} | {cell['p50_ms']:.2f} | {cell['p99_ms']:.2f} | "
                     f"{cell['rps']:,.0f} | {cell['cpu_ms_per_request']:.3f} | {cell['threads']} |"
                     for kind, cells in results["servers"].items() for cell in cells)
    return "\n".join(lines) + "\n"


def versions() -> dict:
    found = {}
    for dist in ("tornado", "uvicorn", "httptools", "uvloop", "starlette", "granian"):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="digits", choices=sorted(SAMPLES))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list of: " + ", ".join(VARIANTS))
    parser.add_argument("--concurrency", default="1,32", help="comma list of concurrency levels")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measured cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each variant's cells")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of every variant")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="the servers alone: a comma list of " + ", ".join(SERVERS) + ", or none")
    parser.add_argument("--write-results", action="store_true", help="replace this bench's section of RESULTS.md")
    parser.add_argument("--serve", nargs=2, metavar=("SERVER", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_trivial(args.serve[0], int(args.serve[1]))
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip() and v.strip() != "none"]
    if set(variants) - set(VARIANTS):
        parser.error(f"--variants: a comma list of {', '.join(VARIANTS)}, or none")
    servers = [v.strip() for v in args.servers.split(",") if v.strip() and v.strip() != "none"]
    if set(servers) - set(SERVERS):
        parser.error(f"--servers: a comma list of {', '.join(SERVERS)}, or none")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if not (0 < args.duration <= 600 and 0 < args.warmup <= 600 and 1 <= args.rounds <= 10
            and all(0 < c <= 256 for c in args.concurrency)):
        parser.error("--duration, --warmup in (0, 600], --rounds in 1..10, each concurrency in 1..256")
    results = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine(),
               "versions": versions(), "model": args.model,
               "settings": f"{args.rounds} round(s) of {args.duration:g} s cells after {args.warmup:g} s warm-up"}
    store = Path(tempfile.mkdtemp(prefix="yyai-front-bench-"))
    rounds: dict[str, list[list[dict]]] = {name: [] for name in variants}
    try:
        copy_store(ROOT / "model_archives", [args.model], store)
        reference = None
        for round_ in range(args.rounds):
            log(f"round {round_ + 1} of {args.rounds}")
            for name in variants:
                cells, reply = run_variant(name, store, args.model, args, reference)
                reference = reference or reply
                rounds[name].append(cells)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    results["cells"] = {name: median_cells(r) for name, r in rounds.items()}
    alone = {}
    for kind in servers:
        log(f"{kind} alone")
        cells = run_server_alone(kind, args)
        if cells is not None:
            alone[kind] = cells
    results["servers"] = alone
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "frontends.json").write_text(json.dumps(results, indent=1, default=str))
    section = render(results)
    print()
    print(section)
    if args.write_results:
        replace_section(section)
        log(f"wrote '{HEADING}' in bench/RESULTS.md")


if __name__ == "__main__":
    main()
