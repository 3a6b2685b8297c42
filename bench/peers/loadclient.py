"""Closed-loop aiohttp load client, run as its own process by compare.py (yyai's venv).

Used where exact per-request numbers are needed: concurrency 1 latencies (every request's
latency, for exact percentiles and the CDF), and the reload-under-load test (every
request's start time, latency and status, to split the reload windows from steady state).
Throughput at higher concurrency is wrk's job: a Python client costs a large part of a
core and would halve what it measures.

Prints one JSON object: {"requests": [[t_start_s, latency_ms, status], ...], "cpu_s": ...,
"wall_s": ...}; status 0 is a connection error, and its record has a fourth item naming it.
Usage: python loadclient.py URL BODY_FILE CONTENT_TYPE CONCURRENCY SECONDS [HEADER:VALUE ...]
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import aiohttp


async def run(url: str, body: bytes, headers: dict, concurrency: int, seconds: float) -> list:
    records: list = []
    origin = time.perf_counter()
    stop = origin + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker():
            while time.perf_counter() < stop:
                started = time.perf_counter()
                error = None
                try:
                    async with session.post(url, data=body, headers=headers) as reply:
                        await reply.read()
                        status = reply.status
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    status, error = 0, f"{type(exc).__name__}: {exc}"[:200]
                    await asyncio.sleep(0.01)
                record = [round(started - origin, 6), round((time.perf_counter() - started) * 1e3, 4), status]
                if error:
                    record.append(error)
                records.append(record)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return records


def main() -> None:
    url, body_file, content_type = sys.argv[1:4]
    concurrency, seconds = int(sys.argv[4]), float(sys.argv[5])
    headers = {"Content-Type": content_type}
    for item in sys.argv[6:]:
        key, _, value = item.partition(":")
        headers[key] = value
    with open(body_file, "rb") as f:
        body = f.read()
    wall = time.perf_counter()
    records = asyncio.run(run(url, body, headers, concurrency, seconds))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"requests": records, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "wall_s": time.perf_counter() - wall}))


if __name__ == "__main__":
    main()
