"""A/B of two commits' HTTP serving, side by side and interleaved in one run.

A benchmark, not a test. A refactor must show "no slowdown" measured, not guessed, and a
shared machine drifts: so both commits serve at once (each from its own git worktree on
its own port, over the same copied store), and every measured cell alternates between
them, round after round, in alternating order. The report gives each side's median over
the rounds and the new/old ratios.

Each commit runs from the current virtualenv with its own worktree first on PYTHONPATH,
so both use the same installed packages (the commits must not need different ones), and
serves its own copy of the demo archives (the archive format may have grown between them).
Usage::

    .venv/bin/python bench/ab_commits.py --old b965a11                 # HEAD vs b965a11, v2 infer
    .venv/bin/python bench/ab_commits.py --old b965a11 --endpoint predictions --rounds 5
    .venv/bin/python bench/ab_commits.py --old b965a11 --write-results  # its RESULTS.md section
    .venv/bin/python bench/ab_commits.py --old b965a11 --server-args="--workers 2" --write-results

``--server-args`` are given to both servers (``--workers 2``); the section's heading then
names them, so that each setting keeps its own section.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from benchlib import Target, log, machine  # noqa: E402
from http_bench import WORK, YyaiServer, copy_store, http_cell, model_input  # noqa: E402
from resultsfile import replace_section  # noqa: E402

HEADING = "## A/B of two commits (bench/ab_commits.py)"
SAMPLE = ROOT / "model_archives" / "samples" / "digit-3.png"


def worktree(rev: str) -> Path:
    """A detached worktree of ``rev`` under bench/.work/ab (made once, reused)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    path = WORK.parent / "ab" / sha
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True,
                       capture_output=True)
    return path


class CommitServer(YyaiServer):
    """``yyai serve`` of one commit: its worktree first on PYTHONPATH."""

    def __init__(self, store: Path, tree: Path, extra_args: list[str] = ()):
        super().__init__(store, list(extra_args))
        self.tree = tree
        self.log_path = WORK / f"server-{tree.name}.log"

    def start(self) -> float:
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(self.tree)
        try:
            return super().start()
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved


def measure(servers: dict, targets: dict, args) -> dict:
    """{side: {concurrency: [cell, ...]}}, the sides alternating within and across rounds."""
    cells = {side: {c: [] for c in args.concurrency} for side in servers}
    order = list(servers)
    for round_ in range(args.rounds):
        for conc in args.concurrency:
            for side in (order if round_ % 2 == 0 else order[::-1]):
                cell = http_cell(servers[side], targets[side], conc, args.duration)
                cells[side][conc].append(cell)
                log(f"round {round_ + 1} {side} c={conc}: {cell['rps']:.0f} req/s, p50 {cell['p50_ms']:.2f} ms, "
                    f"server CPU {cell['server_cpu']:.0%}, errors {cell['errors']}")
    return cells


def report(cells: dict, revs: dict, args) -> str:
    """The markdown section: medians per side and the new/old ratios."""
    host = machine()
    heading = HEADING if not args.server_args else f"{HEADING[:-1]}, `{args.server_args}`)"
    lines = [heading, "", f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {host['cpu']} "
             f"({host['nproc']} CPUs, load average {host['loadavg_at_start'][0]:.1f} at the end): `{args.endpoint}` on "
             f"`{args.model}`, {args.rounds} rounds of {args.duration:g} s cells, the two commits alternating "
             f"(both serving at once). Old: `{revs['old']}`, new: `{revs['new']}`.", "",
             "| concurrency | old p50 ms | new p50 ms | old req/s | new req/s | new/old req/s |",
             "|---|---|---|---|---|---|"]
    for conc in args.concurrency:
        med = {side: (statistics.median(c["p50_ms"] for c in cells[side][conc]),
                      statistics.median(c["rps"] for c in cells[side][conc])) for side in cells}
        lines.append(f"| {conc} | {med['old'][0]:.2f} | {med['new'][0]:.2f} | {med['old'][1]:.0f} | "
                     f"{med['new'][1]:.0f} | {med['new'][1] / med['old'][1]:.2f} |")
    spread = {side: [c["rps"] for conc in args.concurrency for c in cells[side][conc]] for side in cells}
    lines += ["", "Every cell (req/s): " + "; ".join(f"{side}: {', '.join(f'{v:.0f}' for v in spread[side])}"
                                                     for side in cells), ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, help="the commit to compare against")
    parser.add_argument("--new", default="HEAD", help="the commit under test (default HEAD)")
    parser.add_argument("--model", default="digits")
    parser.add_argument("--endpoint", choices=("v2", "predictions"), default="v2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell")
    parser.add_argument("--concurrency", default="1,32", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--server-args", default="", help="extra `yyai serve` arguments for both, such as --workers 2")
    parser.add_argument("--write-results", action="store_true", help=f"replace '{HEADING}' in bench/RESULTS.md")
    args = parser.parse_args()
    revs = {"old": args.old, "new": args.new}
    WORK.mkdir(parents=True, exist_ok=True)
    servers, targets = {}, {}
    with tempfile.TemporaryDirectory(prefix="ab-", dir=WORK) as tmp:
        try:
            for side, rev in revs.items():
                store = Path(tmp) / side
                store.mkdir()
                tree = worktree(rev)  # each commit serves its own demo archives: their format may differ
                version = copy_store(tree / "model_archives", [args.model], store)[args.model]
                servers[side] = CommitServer(store, tree, args.server_args.split())
                log(f"{side} ({rev}) ready in {servers[side].start():.1f} s on {servers[side].url}")
                targets[side] = target_for(servers[side], store, args.model, version, args.endpoint, Path(tmp), side)
            text = report(measure(servers, targets, args), revs, args)
        finally:
            for server in servers.values():
                server.stop()
    print(text)
    if args.write_results:
        replace_section(text)


def target_for(server, store: Path, model: str, version: int, endpoint: str, tmp: Path, side: str) -> Target:
    """The load client's target: the v2 JSON body or the PNG, with the token."""
    inp = model_input(store, model, version, SAMPLE, server.get_json(f"/v2/models/{model}"))
    body = tmp / f"{side}-{endpoint}.body"
    if endpoint == "v2":
        body.write_bytes(inp["v2_body"])
        return Target(f"{server.url}/v2/models/{model}/infer", body, "application/json", server.headers)
    body.write_bytes(inp["png"])
    return Target(f"{server.url}/predictions/{model}", body, "image/png", server.headers)


if __name__ == "__main__":
    main()
