"""The model host and the budget, measured: memory, launch time, LRU churn (#24's goals).

A benchmark, not a test: it asserts nothing about time. Each part starts real ``yyai serve``
processes (``http_bench.YyaiServer``) and reads what they do from outside:

* ``memory``: the resident memory of the whole process tree (psutil, summed, after start-up
  and 200 predictions, and its peak sampled every 100 ms) for ``yyai serve`` alone and with
  ``--workers 2`` and ``4``, on the bundled store.
* ``launch``: stores of 1, 40 and 200 ensembles (copies of ``digits`` v2 under new names,
  made by rewriting the manifest's name), with default settings and with
  ``--memory-budget`` (``--budget``, default 64M): launch to ``/v2/health/ready``, launch to
  the first answer of every default (one client asking for each model in turn, from the
  moment the server listens), and the tree's memory at the end. The bundled store too.
* ``release``: whether memory comes back: a store of 40 ensembles started with ``--warm 0``;
  the host's resident set at ready, after loading every version, and after unloading them
  all, three times over.
* ``churn``: 200 ensembles under ``--max-loaded 20``, 8 clients asking for models drawn
  uniformly at random for ``--churn-seconds``: failures, the share of cold starts (the
  ``X-Yyai-Cold-Start`` header), p50/p99, and the host's loads and evictions.

``--old REV`` also runs the commit ``REV`` (from its own worktree, as ``ab_commits.py``
does) for every memory and launch row with default settings, right after the same row of
this tree, so that both meet the same machine: the figures are side by side.

``--write-results`` replaces the ``## The model host and the budget (bench/host_bench.py)``
section of ``bench/RESULTS.md``. Usage::

    .venv/bin/python bench/host_bench.py                         # every part (~15 minutes on 2 cores)
    .venv/bin/python bench/host_bench.py --old efdd557 --write-results
    .venv/bin/python bench/host_bench.py --parts memory,churn
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from benchlib import log, machine, percentile  # noqa: E402
from http_bench import WORK, YyaiServer  # noqa: E402
from resultsfile import replace_section  # noqa: E402

HEADING = "## The model host and the budget (bench/host_bench.py)"
ARCHIVES = ROOT / "model_archives"
DIGITS = ARCHIVES / "digits-2.yyar"
PNG = (ARCHIVES / "samples" / "digit-3.png").read_bytes()
FLOWER = (ARCHIVES / "samples" / "flower-1.png").read_bytes()


# --- stores ---------------------------------------------------------------------------------


def renamed(archive: Path, name: str, out: Path) -> Path:
    """A copy of ``archive`` whose manifest names it ``name`` (members and checksums unchanged)."""
    target = out / f"{name}-2.yyar"
    buffer = io.BytesIO()
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "MANIFEST.json":
                manifest = json.loads(data)
                manifest["name"] = name
                data = json.dumps(manifest, indent=2).encode()
            dst.writestr(info, data)
    target.write_bytes(buffer.getvalue())
    return target


def ensembles(count: int, folder: Path) -> list[str]:
    """A store of ``count`` copies of digits v2 named m000, m001, ...; the names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"m{i:03d}" for i in range(count)]
    for name in names:
        renamed(DIGITS, name, folder)
    return names


def bundled(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for archive in ARCHIVES.glob("*.yyar"):
        shutil.copyfile(archive, folder / archive.name)
    return ["colorfulness", "digits"]


# --- measuring ------------------------------------------------------------------------------


def tree_rss(pid: int) -> tuple[int, dict[str, int]]:
    """The resident memory of ``pid`` and every process below it, and each role's share."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, {}
    total, roles = 0, {}
    for process in processes:
        try:
            rss = process.memory_info().rss
            line = " ".join(process.cmdline())
        except psutil.Error:
            continue
        role = ("main" if process == root else "host" if "yyai_kernel.host" in line else
                "kernel" if "ipykernel" in line else "front end" if "yyai_kernel.server.app" in line else "other")
        total += rss
        roles[role] = roles.get(role, 0) + rss
    return total, roles


class Peak:
    """Samples a process tree's memory every 100 ms; ``peak`` is the largest sum seen."""

    def __init__(self, pid: int):
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, tree_rss(self.pid)[0])

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def post(server: YyaiServer, model: str, body: bytes = PNG, timeout: float = 120) -> tuple[int, float, bool]:
    """One prediction: (status, seconds, whether it was a cold start)."""
    request = urllib.request.Request(f"{server.url}/predictions/{model}", data=body, method="POST",
                                     headers={**server.headers, "Content-Type": "image/png"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            reply.read()
            return reply.status, time.perf_counter() - started, reply.headers.get("X-Yyai-Cold-Start") is not None
    except urllib.error.HTTPError as error:
        return error.code, time.perf_counter() - started, False
    except OSError:
        return 0, time.perf_counter() - started, False


def start_listening(server: YyaiServer) -> tuple[float, float]:
    """Start ``server``; (seconds to its first HTTP answer, seconds to ready), both from launch."""
    done: dict[str, float] = {}

    def wait_ready():
        done["ready"] = server.start()

    thread = threading.Thread(target=wait_ready, daemon=True)
    launched = time.perf_counter()
    thread.start()
    while "listening" not in done and thread.is_alive():
        try:
            urllib.request.urlopen(urllib.request.Request(f"{server.url}/v2/health/live", headers=server.headers),
                                   timeout=2).read()
            done["listening"] = time.perf_counter() - launched
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    thread.join()
    return done.get("listening", done["ready"]), done["ready"]


# --- the parts ------------------------------------------------------------------------------


def sides(args) -> list[str | None]:
    """This tree (None), then the old commit when one is given."""
    return [None] + ([args.old] if args.old else [])


def serve(store: Path, extra: list[str], old: str | None) -> YyaiServer:
    """``yyai serve`` of this tree, or of the commit ``old`` from its worktree."""
    if old is None:
        return YyaiServer(store, extra)
    from ab_commits import CommitServer, worktree

    return CommitServer(store, worktree(old), extra)


def part_memory(args, tmp: Path) -> list[dict]:
    rows = []
    for workers in args.workers:
        for old in sides(args):
            store = tmp / f"memory-{workers}-{old or 'new'}"
            bundled(store)
            server = serve(store, [] if workers == 1 else ["--workers", str(workers)], old)
            try:
                _, ready = start_listening(server)
                peak = Peak(server.proc.pid)
                for i in range(200):
                    post(server, "digits" if i % 2 else "colorfulness", PNG if i % 2 else FLOWER)
                time.sleep(1)
                total, roles = tree_rss(server.proc.pid)
                rows.append({"side": old or "new", "workers": workers, "ready_s": ready, "rss": total,
                             "uss": tree_uss(server.proc.pid), "peak": peak.stop(), "roles": roles})
                log(f"memory, {old or 'new'}, workers {workers}: {total / 2**20:.0f} MiB "
                    f"(peak {rows[-1]['peak'] / 2**20:.0f}, USS {rows[-1]['uss'] / 2**20:.0f})")
            finally:
                server.stop()
    return rows


def tree_uss(pid: int) -> int:
    """The unique set size of the process tree: the memory private to each process (what would be
    freed if it exited), shared library pages left out."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().uss
        except psutil.Error:
            continue
    return total


def part_launch(args, tmp: Path) -> list[dict]:
    rows = []
    for count in args.stores:
        for budget, old in [(None, old) for old in sides(args)] + [(args.budget, None)]:
            store = tmp / f"launch-{count}-{budget or 'none'}-{old or 'new'}"
            names = bundled(store) if count == 0 else ensembles(count, store)
            extra = [] if budget is None else ["--memory-budget", budget]
            server = serve(store, extra, old)
            try:
                launched = time.perf_counter()
                try:
                    listening, ready = start_listening(server)
                except RuntimeError as error:  # not ready within START_TIMEOUT_S (a busy machine): say so
                    log(f"launch {old or 'new'} {count}, budget {budget}: {error}")
                    rows.append({"side": old or "new", "store": "bundled" if count == 0 else f"{count} ensembles",
                                 "budget": budget or "none", "failed": str(error).split(";")[0]})
                    continue
                failures, cold = 0, 0
                for name in names:  # every default, one after another, as a client walking the store
                    status, _, was_cold = post(server, name, FLOWER if name == "colorfulness" else PNG)
                    failures += status != 200
                    cold += was_cold
                every = time.perf_counter() - launched
                total, _ = tree_rss(server.proc.pid)
                residency = server.get_json("/models/_status").get("residency") or {"loaded": None, "evictions": None}
                rows.append({"side": old or "new", "store": "bundled" if count == 0 else f"{count} ensembles",
                             "budget": budget or "none",
                             "listening_s": listening, "ready_s": ready, "every_s": every, "failures": failures,
                             "cold": cold, "models": len(names), "rss": total, "loaded": residency["loaded"],
                             "evictions": residency["evictions"]})
                log(f"launch {old or 'new'} {rows[-1]['store']}, budget {budget}: ready {ready:.1f} s, "
                    f"every model {every:.1f} s, "
                    f"{failures} failures, {cold} cold starts")
            finally:
                server.stop()
    return rows


def part_release(args, tmp: Path) -> list[dict]:
    store = tmp / "release"
    names = ensembles(40, store)
    server = YyaiServer(store, ["--warm", "0"])
    rows = []
    try:
        start_listening(server)
        time.sleep(2)

        def host() -> dict:
            residency = server.get_json("/models/_status")["residency"]
            return {"rss": residency["process_rss_bytes"], "resident": residency["resident_bytes"],
                    "loaded": residency["loaded"]}

        rows.append({"step": "ready, nothing loaded", **host()})
        for cycle in range(1, 4):
            for name in names:
                server.request_json("POST", f"/models/{name}/load")
            rows.append({"step": f"cycle {cycle}: every version loaded", **host()})
            for name in names:
                server.request_json("DELETE", f"/models/{name}/versions/2")
            rows.append({"step": f"cycle {cycle}: every version unloaded", **host()})
            log(f"release cycle {cycle}: {rows[-2]['rss'] / 2**20:.0f} -> {rows[-1]['rss'] / 2**20:.0f} MiB")
    finally:
        server.stop()
    return rows


def part_churn(args, tmp: Path) -> dict:
    store = tmp / "churn"
    names = ensembles(args.churn_models, store)
    server = YyaiServer(store, ["--max-loaded", str(args.churn_budget)])
    latencies: list[float] = []
    outcomes = {"ok": 0, "failed": 0, "cold": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int):
        rng = random.Random(seed)
        while not stop.is_set():
            status, seconds, cold = post(server, rng.choice(names))
            with lock:
                latencies.append(seconds)
                outcomes["ok" if status == 200 else "failed"] += 1
                outcomes["cold"] += cold

    try:
        _, ready = start_listening(server)
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.churn_clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(args.churn_seconds)
        stop.set()
        for thread in threads:
            thread.join(180)
        elapsed = time.perf_counter() - started
        residency = server.get_json("/models/_status")["residency"]
        answered = server.get_json("/models")
        touched = sum(1 for m in answered if m["loaded"]) + residency["evictions"]
        total, _ = tree_rss(server.proc.pid)
    finally:
        server.stop()
    requests = outcomes["ok"] + outcomes["failed"]
    result = {"models": len(names), "budget": args.churn_budget, "clients": args.churn_clients,
              "seconds": elapsed, "requests": requests, "failed": outcomes["failed"], "cold": outcomes["cold"],
              "rps": requests / elapsed, "p50_ms": 1000 * percentile(latencies, 50),
              "p99_ms": 1000 * percentile(latencies, 99), "loads": residency["loads"],
              "evictions": residency["evictions"], "loaded": residency["loaded"], "touched": touched, "rss": total,
              "ready_s": ready}
    log(f"churn: {requests} requests, {outcomes['failed']} failed, {outcomes['cold']} cold, "
        f"p99 {result['p99_ms']:.0f} ms")
    return result


# --- the report -----------------------------------------------------------------------------


def mib(value: int) -> str:
    return f"{value / 2**20:,.0f}"


def render(results: dict, args) -> str:
    host = machine()
    lines = [HEADING, "", f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {host['cpu']} "
             f"({host['nproc']} CPUs, {host['mem_gib']} GiB; load average "
             f"{host['loadavg_at_start'][0]:.1f} at the start), by `bench/host_bench.py`.", ""]
    if "memory" in results:
        lines += ["### Memory of the process tree (bundled store, after 200 predictions)", "",
                  "RSS is summed over the process tree (shared pages counted in every process that maps them, "
                  "as the issue measured it); USS sums each process's private memory (shared library pages left "
                  "out). Ratios are to one process of the same commit.", "",
                  "| commit | server | RSS MiB | vs one process | USS MiB | vs one process | peak RSS MiB "
                  "| supervisor | model host | front ends (each) | ready s |", "|---" * 11 + "|"]
        for r in results["memory"]:
            one = next(o for o in results["memory"] if o["workers"] == 1 and o["side"] == r["side"])
            roles = r["roles"]
            ends = r["workers"] if r["workers"] > 1 else 0
            each = roles.get("front end", 0) // ends if ends else 0
            server = "`yyai serve`" + ("" if r["workers"] == 1 else f" --workers {r['workers']}")
            lines.append(f"| {r['side']} | {server} | {mib(r['rss'])} | {r['rss'] / one['rss']:.2f}x | "
                         f"{mib(r['uss'])} | {r['uss'] / one['uss']:.2f}x | {mib(r['peak'])} | "
                         f"{mib(roles.get('main', 0)) if ends else '-'} "
                         f"| {mib(roles.get('host', 0)) if ends and roles.get('host') else '-'} "
                         f"| {mib(each) if ends else '-'} | {r['ready_s']:.1f} |")
        lines.append("")
    if "launch" in results:
        lines += ["### Launch to ready, and to every default answering once", "",
                  "One client asks each model in turn for its first answer, from launch; the server starts "
                  f"with default settings (`--warm {args.warm_default}`), or with `--memory-budget {args.budget}`.",
                  "", "| commit | store | budget | listening s | ready s | every model answered s | cold starts "
                  "| failures | loaded at the end | evictions | RSS MiB |", "|---" * 11 + "|"]
        for r in results["launch"]:
            if "failed" in r:
                lines.append(f"| {r['side']} | {r['store']} | {r['budget']} | {r['failed']} |" + " |" * 7)
                continue
            lines.append(f"| {r['side']} | {r['store']} | {r['budget']} | {r['listening_s']:.1f} | "
                         f"{r['ready_s']:.1f} | {r['every_s']:.1f} | {r['cold']} of {r['models']} | {r['failures']} | "
                         f"{'-' if r['loaded'] is None else r['loaded']} | "
                         f"{'-' if r['evictions'] is None else r['evictions']} | {mib(r['rss'])} |")
        lines.append("")
    if "release" in results:
        base = results["release"][0]["rss"]
        lines += ["### Does memory come back on unload?", "",
                  "40 ensembles, `--warm 0`; every version loaded (`POST /models/{m}/load`), then unloaded "
                  "(`DELETE /models/{m}/versions/2`, after which the host collects and trims), three times. "
                  "The host process's resident set:", "",
                  "| step | loaded | measured cost of the loaded (MiB) | host RSS MiB | vs at ready |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['step']} | {r['loaded']} | {mib(r['resident'])} | {mib(r['rss'])} | "
                  f"{(r['rss'] - base) / 2**20:+,.0f} MiB |" for r in results["release"]]
        lines.append("")
    if "churn" in results:
        c = results["churn"]
        lines += ["### LRU churn", "",
                  f"{c['models']} ensembles under `--max-loaded {c['budget']}`, {c['clients']} clients each asking "
                  f"for a model drawn uniformly at random, {c['seconds']:.0f} s:", "",
                  "| requests | failed | cold starts | req/s | p50 ms | p99 ms | loads | evictions | "
                  "distinct versions answered | RSS MiB |", "|---|---|---|---|---|---|---|---|---|---|",
                  f"| {c['requests']:,} | {c['failed']} | {c['cold']} ({c['cold'] / max(1, c['requests']):.0%}) | "
                  f"{c['rps']:.1f} | {c['p50_ms']:.0f} | {c['p99_ms']:.0f} | {c['loads']} | {c['evictions']} | "
                  f"{min(c['touched'], c['models'])} | {mib(c['rss'])} |", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="memory,launch,release,churn", type=lambda s: s.split(","))
    parser.add_argument("--workers", default="1,2,4", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--stores", default="0,1,40,200", type=lambda s: [int(x) for x in s.split(",")],
                        help="store sizes in ensembles (0: the bundled store)")
    parser.add_argument("--budget", default="64M", help="the budget of the launch runs that have one")
    parser.add_argument("--old", default=None, help="also run this commit, side by side (memory, launch)")
    parser.add_argument("--churn-models", type=int, default=200)
    parser.add_argument("--churn-budget", type=int, default=20)
    parser.add_argument("--churn-clients", type=int, default=8)
    parser.add_argument("--churn-seconds", type=float, default=120)
    parser.add_argument("--keep", action="store_true",
                        help="keep the parts not run now from the last run (bench/.work/http/host_bench.json)")
    parser.add_argument("--write-results", action="store_true", help=f"replace '{HEADING}' in bench/RESULTS.md")
    args = parser.parse_args()
    from yyai_kernel.config import DEFAULT_WARM

    args.warm_default = DEFAULT_WARM
    WORK.mkdir(parents=True, exist_ok=True)
    saved = WORK / "host_bench.json"  # each part's results replace that part's there, as they come
    results: dict = json.loads(saved.read_text()) if saved.exists() and args.keep else {}
    parts = {"memory": part_memory, "launch": part_launch, "release": part_release, "churn": part_churn}
    with tempfile.TemporaryDirectory(prefix="host-", dir=WORK) as tmp:
        for name, part in parts.items():
            if name in args.parts:
                results[name] = part(args, Path(tmp))
                saved.write_text(json.dumps(results, indent=2))
    text = render(results, args)
    print(text)
    if args.write_results:
        replace_section(text)


if __name__ == "__main__":
    main()
