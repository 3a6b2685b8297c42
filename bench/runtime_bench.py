"""Runtime benchmark: traced call vs model.predict(), and registry throughput with and without batching.

A benchmark, not a test: it prints numbers measured side by side in one run and asserts
nothing. Run it with ``.venv/bin/python bench/runtime_bench.py [--store model_archives]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from benchlib import thread_load

from yyai_kernel.registry.registry import Registry
from yyai_kernel.runtime.runtime import ArchiveRuntime
from yyai_kernel.store.store import ModelStore


def time_calls(fn, repeats: int) -> list[float]:
    """Wall time in ms of each of ``repeats`` calls (after two untimed warm-up calls)."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def median(values) -> float:
    return statistics.median(values)


def throughput(registry: Registry, name: str, sample: np.ndarray, concurrency: int, seconds: float):
    """Closed-loop clients, one sample a request: (requests/s, p50 ms, p99 ms)."""
    got = thread_load(lambda: registry.predict(name, sample), concurrency, seconds)
    latencies = got["latencies_ms"]
    return len(latencies) / got["wall_s"], np.percentile(latencies, 50), np.percentile(latencies, 99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="model_archives")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each throughput cell")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per latency cell")
    args = parser.parse_args()

    store = ModelStore(Path(args.store))
    print(f"# runtime_bench on {platform.node()} ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, store {args.store}\n")

    print("## Traced call vs model.predict() (median ms per call)\n")
    print("| model | members | traced b=1 | traced b=32 | predict() b=1 | predict() b=32 | predict/traced b=1 |")
    print("|---|---|---|---|---|---|---|")
    for record in store.records():
        runtime = ArchiveRuntime.load(record.path, warmup_sizes=[1, 32])
        shape = runtime.input_shape
        one, many = np.zeros((1, *shape), np.float32), np.zeros((32, *shape), np.float32)
        traced_1 = median(time_calls(functools.partial(runtime, one), args.repeats))
        traced_32 = median(time_calls(functools.partial(runtime, many), args.repeats))
        models = runtime._models  # the same Keras objects, called the slow way for comparison
        slow_repeats = max(20, args.repeats // 10)
        predict_1 = median(time_calls(lambda x=one, models=models: [m.predict(x, verbose=0) for m in models],
                                      slow_repeats))
        predict_32 = median(time_calls(lambda x=many, models=models: [m.predict(x, verbose=0) for m in models],
                                       slow_repeats))
        print(
            f"| {record.name} v{record.version} | {len(models)} | {traced_1:.2f} | {traced_32:.2f} "
            f"| {predict_1:.2f} | {predict_32:.2f} | {predict_1 / traced_1:.0f}x |"
        )

    print("\n## Registry throughput, one sample a request (req/s, p50 / p99 ms)\n")
    print("| model | batching | c=1 | c=8 | c=32 |")
    print("|---|---|---|---|---|")
    for batching in (False, True):
        registry = Registry(store, batching=batching)
        registry.load_all()
        for name in registry.names():
            shape = registry.describe(name)["input"]["shape"]
            sample = np.zeros((1, *shape), np.float32)
            cells = []
            for concurrency in (1, 8, 32):
                rps, p50, p99 = throughput(registry, name, sample, concurrency, args.seconds)
                cells.append(f"{rps:,.0f} ({p50:.2f} / {p99:.2f})")
            print(f"| {name} v{registry.describe(name).version} | {'on' if batching else 'off'} | "
                  + " | ".join(cells) + " |")
        registry.close()


if __name__ == "__main__":
    main()
