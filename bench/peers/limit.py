"""The limit: the same model called in-process through a traced function, no server at all.

Prints one JSON line per model: ms per call and samples/s at batch 1 and at each batch
size up to 128, and the best batch. Runs in yyai's venv.
Usage: python limit.py MODELS_DIR SECONDS_PER_POINT
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from common import Traced, model_files


def measure(traced: Traced, batch: int, seconds: float) -> dict:
    x = np.random.default_rng(0).random((batch, *traced.input_shape), dtype=np.float32)
    for _ in range(3):
        traced(x)
    times = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or len(times) < 20:
        t0 = time.perf_counter()
        traced(x)
        times.append(time.perf_counter() - t0)
    times.sort()
    p50 = times[len(times) // 2]
    return {"batch": batch, "calls": len(times), "p50_ms": p50 * 1e3,
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3,
            "samples_per_s": batch * len(times) / sum(times)}


def main() -> None:
    models_dir, seconds = sys.argv[1], float(sys.argv[2])
    for name, path in model_files(models_dir).items():
        traced = Traced(path)
        points = [measure(traced, b, seconds) for b in (1, 2, 4, 8, 16, 32, 64, 128)]
        best = max(points, key=lambda p: p["samples_per_s"])
        print(json.dumps({"model": name, "points": points, "batch1": points[0], "best": best}), flush=True)


if __name__ == "__main__":
    main()
