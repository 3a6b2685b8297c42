"""The front end to model host channel: a request's round trip by tensor size, socket or shared memory.

A benchmark, not a test. One process listens as the host does (``multiprocessing.connection``
over a Unix socket, with a key) and answers each ``submit`` with a small reply, as a
prediction's is; the other sends requests through :class:`~yyai_kernel.host.channel.Channel`
with the input tensor in the message (the socket) or in a shared-memory segment
(:class:`~yyai_kernel.host.channel.SharedArray`). It prints the median round trip for each
size, which is what chose ``channel.SHARED_MEMORY_BYTES``. ``--write-results`` replaces the
``## Front end to host channel (bench/ipc_bench.py)`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from multiprocessing import Process
from multiprocessing.connection import Client, Listener
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from benchlib import machine  # noqa: E402
from resultsfile import replace_section  # noqa: E402

from yyai_kernel.host import channel as wire  # noqa: E402

HEADING = "## Front end to host channel (bench/ipc_bench.py)"
SHAPES = [(1, 8, 8, 1), (32, 8, 8, 1), (1, 224, 224, 3), (4, 224, 224, 3), (8, 224, 224, 3), (32, 224, 224, 3)]


def host(address: str, key: bytes) -> None:
    with Listener(address, "AF_UNIX", authkey=key) as listener:
        conn = listener.accept()
        done = wire.Channel(conn, name="bench-host", handle=_answer).start()
        done.closed.wait()


def _answer(channel, ident, kind, payload):
    array = payload[0].take() if isinstance(payload[0], wire.SharedArray) else payload[0]
    channel.reply(ident, np.asarray(array[:, :1]).sum(axis=tuple(range(1, array.ndim))))


def round_trips(channel, array: np.ndarray, shared: bool, count: int) -> float:
    saved = wire.SHARED_MEMORY_BYTES
    wire.SHARED_MEMORY_BYTES = 0 if shared else 1 << 62
    try:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            channel.request("submit", (array,), share=array).result()
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e6
    finally:
        wire.SHARED_MEMORY_BYTES = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="yyai-ipc-")
    address, key = os.path.join(folder, "host.sock"), os.urandom(32)
    server = Process(target=host, args=(address, key), daemon=True)
    server.start()
    for _ in range(100):
        try:
            conn = Client(address, "AF_UNIX", authkey=key)
            break
        except OSError:
            time.sleep(0.05)
    channel = wire.Channel(conn, name="bench-front-end").start()
    rows = []
    for shape in SHAPES:
        array = np.random.default_rng(0).random(shape, dtype=np.float32)
        count = 2000 if array.nbytes < 100_000 else 200
        round_trips(channel, array, False, 20)
        socket_us = round_trips(channel, array, False, count)
        shared_us = round_trips(channel, array, True, count)
        rows.append((shape, array.nbytes, socket_us, shared_us))
        print(f"{shape}: {array.nbytes / 2**20:.2f} MiB socket {socket_us:.0f} us, shared memory {shared_us:.0f} us")
    channel.close()
    server.join(5)
    host_info = machine()
    lines = [HEADING, "", f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {host_info['cpu']} "
             f"({host_info['nproc']} CPUs, load average {host_info['loadavg_at_start'][0]:.1f}): the median round "
             "trip of one request through `host/channel.py` (pickled message, a small reply), the input tensor "
             "in the message or in a shared-memory segment. Tensors of "
             f"{wire.SHARED_MEMORY_BYTES / 2**20:g} MiB or more take shared memory.", "",
             "| input (float32) | MiB | socket µs | shared memory µs |", "|---|---|---|---|"]
    lines += [f"| {list(shape)} | {size / 2**20:.2f} | {s:,.0f} | {m:,.0f} |" for shape, size, s, m in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_results:
        replace_section(text)


if __name__ == "__main__":
    main()
