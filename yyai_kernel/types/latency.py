"""Latency: percentiles of the recent latencies of one version (or one side of a rollout)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Latency:
    """Percentiles of the recent latencies of one version, in milliseconds (None: no data)."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99}

    @classmethod
    def of(cls, latencies_ms: Collection[float]) -> Latency:
        """The percentiles of a window of latencies (milliseconds), rounded to microseconds."""
        if not len(latencies_ms):
            return cls()
        values = np.asarray(latencies_ms, dtype=np.float64)
        return cls(*(round(float(np.percentile(values, q)), 3) for q in (50, 90, 99)))

