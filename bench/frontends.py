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
    return "\n".join(lines) + "\n"


def versions() -> dict:
    found = {}
    for dist in ("tornado", "uvicorn", "httptools", "uvloop", "starlette"):
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
    parser.add_argument("--write-results", action="store_true", help="replace this bench's section of RESULTS.md")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or set(variants) - set(VARIANTS):
        parser.error(f"--variants: a comma list of {', '.join(VARIANTS)}")
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
