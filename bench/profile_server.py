"""Where a ``yyai serve`` process spends its CPU under load: py-spy, top-20 tables.

A benchmark aid, not a test. One run copies the chosen model into a temporary store,
starts ``yyai serve`` on it (``bench/http_bench.py``'s server and inputs), drives one
endpoint with the closed-loop aiohttp client (``bench/peers/loadclient.py``) and, while
that runs, samples the server with ``py-spy record --gil`` (only the thread that holds
the GIL is sampled: on the HTTP path the GIL is the resource every request queues for).
It prints two tables, written as markdown to ``--out`` too:

* **self**: the functions that were running when a sample was taken (the leaf frames);
* **inclusive**: the functions anywhere on the sampled stacks (each stack counts once),
  which is where a whole layer's cost shows, such as jupyter_server's ``prepare``.

py-spy comes from PyPI (``pip install py-spy``; it needs ptrace rights over the server,
which a process has over its own children). Usage::

    .venv/bin/python bench/profile_server.py --endpoint v2 --concurrency 8 --seconds 15 \\
        --out bench/profiles/v2-c8-after.md --label "after: lean handlers"

With ``--server-args "--workers 2" --subprocesses`` every process of the server is sampled
(the supervisor, the front ends and the model host), the tables their sum.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from benchlib import Target, log, percentile, run_client  # noqa: E402
from http_bench import ROOT, SAMPLES, WORK, YyaiServer, copy_store, model_input  # noqa: E402

TOP = 20
# Frames that only dispatch (the event loop running a callback, a thread's run loop): the
# inclusive table starts below the last of them, or every row would be the loop itself.
DISPATCH = ("Handle._run (asyncio/events.py)", "Thread.run (threading.py)", "_worker (futures/thread.py)",
            "_WorkItem.run (futures/thread.py)")


def frame_name(frame: str) -> str:
    """``function (path/to/module.py:123)`` -> ``function (module.py)``: lines vary, modules do not."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{name} ({short})"


def package(frame: str) -> str:
    """The package of a raw frame: ``tornado``, ``jupyter_server``, ``yyai_kernel``, ``asyncio``..."""
    path = frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]  # py-spy: relative to sys.path
    return path.split("/", 1)[0].removesuffix(".py")


def aggregate(raw: Path) -> tuple[int, collections.Counter, collections.Counter, collections.Counter]:
    """(total samples, self counts, inclusive counts, self counts by package) from collapsed stacks."""
    own: collections.Counter = collections.Counter()
    anywhere: collections.Counter = collections.Counter()
    packages: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        raw_frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not raw_frames:
            continue
        frames = [frame_name(f) for f in raw_frames]
        total += n
        own[frames[-1]] += n
        packages[package(raw_frames[-1])] += n
        below = max((i for i, f in enumerate(frames) if f in DISPATCH), default=-1)
        for name in set(frames[below + 1:]):
            anywhere[name] += n
    return total, own, anywhere, packages


def table(title: str, counts: collections.Counter, total: int) -> list[str]:
    lines = [f"**{title}** ({total:,} samples)", "", "| # | function (module) | samples | share |", "|---|---|---|---|"]
    if title.startswith("By package"):
        lines[2:4] = ["| # | package | samples | share |", "|---|---|---|---|"]
    for rank, (name, n) in enumerate(counts.most_common(TOP), 1):
        lines.append(f"| {rank} | `{name}` | {n:,} | {n / total:.1%} |")
    return lines


def profile(server: YyaiServer, target: Target, args, raw: Path) -> dict:
    """Warm up, then load and py-spy side by side for ``args.seconds``."""
    run_client(target, args.concurrency, 2.0)
    children = ["--subprocesses"] if args.subprocesses else []
    spy = subprocess.Popen([args.py_spy, "record", "--pid", str(server.proc.pid), "--gil", "--rate", str(args.rate),
                            "--format", "raw", "--duration", str(int(args.seconds)), "--output", str(raw),
                            "--nonblocking", *children], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # py-spy attaches
    batches_before = batch_sizes(server, args.model)
    got = run_client(target, args.concurrency, args.seconds)
    batches = batch_sizes(server, args.model) - batches_before
    _, err = spy.communicate(timeout=args.seconds + 60)
    if spy.returncode != 0 or not raw.exists():
        raise SystemExit(f"py-spy failed ({spy.returncode}): {err[-1000:]}")
    ok = [r[1] for r in got["requests"] if r[2] == 200]
    return {"rps": len(ok) / got["wall_s"], "p50": percentile(ok, 50), "errors": len(got["requests"]) - len(ok),
            "batches": batches}


def batch_sizes(server: YyaiServer, model: str) -> collections.Counter:
    """The default version's model calls so far, by rows: ``{rows: calls}``."""
    status = server.get_json(f"/models/{model}")
    sizes = status["versions"][str(status["default"])]["batch_sizes"]
    return collections.Counter({int(rows): calls for rows, calls in sizes.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="digits", choices=sorted(SAMPLES))
    parser.add_argument("--endpoint", default="v2", choices=["v2", "predictions"])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--server-args", default="", help="extra yyai serve options, space separated")
    parser.add_argument("--subprocesses", action="store_true",
                        help="sample the server's child processes too (--workers N: the front ends and the host)")
    parser.add_argument("--label", default="", help="a line saying what was profiled")
    parser.add_argument("--out", type=Path, help="write the markdown here")
    parser.add_argument("--py-spy", default=str(Path(sys.executable).parent / "py-spy"))
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="yyai-profile-"))
    server = None
    try:
        copy_store(ROOT / "model_archives", [args.model], store)
        server = YyaiServer(store, args.server_args.split())
        log(f"started in {server.start():.1f} s")
        meta = server.get_json(f"/v2/models/{args.model}")
        version = server.get_json(f"/models/{args.model}")["default"]
        inp = model_input(store, args.model, version, ROOT / "model_archives" / "samples" / SAMPLES[args.model], meta)
        bodies = WORK / "bodies"
        bodies.mkdir(parents=True, exist_ok=True)
        if args.endpoint == "v2":
            (bodies / "profile.json").write_bytes(inp["v2_body"])
            target = Target(f"{server.url}/v2/models/{args.model}/infer", bodies / "profile.json", "application/json",
                            dict(server.headers))
        else:
            (bodies / "profile.png").write_bytes(inp["png"])
            target = Target(f"{server.url}/predictions/{args.model}", bodies / "profile.png", "image/png",
                            dict(server.headers))
        raw = WORK / "profile.raw"
        got = profile(server, target, args, raw)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(store, ignore_errors=True)
    total, own, anywhere, packages = aggregate(raw)
    lines = [f"### {args.label or 'profile'}", "",
             f"`{args.endpoint}` on `{args.model}`, concurrency {args.concurrency}, {args.seconds:g} s, "
             f"py-spy `--gil` at {args.rate} Hz; during the run: {got['rps']:,.0f} req/s, p50 {got['p50']:.2f} ms, "
             f"{got['errors']} errors. Server options: `{args.server_args or '(defaults)'}`"
             f"{' (every process of the server sampled)' if args.subprocesses else ''}.", ""]
    calls = sum(got["batches"].values())
    rows = sum(size * n for size, n in got["batches"].items())
    if calls:
        lines += [f"Model calls during the run: {calls:,} for {rows:,} rows ({rows / calls:.2f} rows per call, each a "
                  f"wake-up of the model thread); by rows: "
                  + ", ".join(f"{size}: {n:,}" for size, n in sorted(got["batches"].items())) + ".", ""]
    lines += table("Self (the function running)", own, total) + [""]
    lines += table("Inclusive (anywhere on the stack, below the event loop's dispatch)", anywhere, total) + [""]
    lines += table("By package (self samples)", packages, total) + [""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
