"""Prometheus metrics: ``GET /metrics`` in the text exposition format.

Each server owns a ``CollectorRegistry`` (no process-global state, so tests can run
several servers). Three kinds of series:

* HTTP, recorded by the handlers as requests finish:
  ``yyai_http_requests_total{endpoint, model, version, code}`` and
  ``yyai_http_request_duration_seconds{endpoint, model}`` (histogram). The model label is
  only ever a name the registry knows, so unknown names from clients cannot grow the
  label set (they count under ``model=""``).
* Model calls, recorded as the registry reports them (``ServerMetrics`` is the registry's
  ``StatsObserver``): ``yyai_model_predictions_total``, ``yyai_model_prediction_errors_total``
  and ``yyai_model_batch_size`` (histogram of the batches the dynamic batcher ran).
* Model state, read from the data plane's status at scrape time by a custom collector:
  ``yyai_model_loaded``, ``yyai_model_state``, ``yyai_model_default_version``,
  ``yyai_model_load_seconds``, ``yyai_model_warmup_seconds`` and ``yyai_models_loaded``.
* What stays loaded, from the registry's residency at scrape time (the model host's, under
  ``--workers``): ``yyai_model_memory_bytes{model, version}`` (each loaded version's cost,
  measured at its load), ``yyai_resident_bytes``, ``yyai_memory_budget_bytes``,
  ``yyai_process_resident_bytes`` (the process that holds the models), and the counters
  ``yyai_loads_total``, ``yyai_load_failures_total``, ``yyai_evictions_total``,
  ``yyai_cold_starts_total``, ``yyai_cold_start_wait_seconds_total`` and
  ``yyai_cold_start_timeouts_total`` (since that process started).
* Rollouts, from each model's typed rollout figures (they start afresh when its traffic
  policy changes, which Prometheus reads as a counter reset):
  ``yyai_rollout_default_requests_total{model}`` (requests that named no version),
  ``yyai_canary_requests_total`` and ``yyai_canary_fallbacks_total{model, version}``,
  ``yyai_shadow_runs_total``, ``yyai_shadow_rows_compared_total``,
  ``yyai_shadow_rows_agreed_total``, ``yyai_shadow_errors_total``,
  ``yyai_shadow_dropped_total`` and the gauge ``yyai_shadow_agreement{model, version}``.

With ``--workers N`` each worker is its own process: the counters and histograms use
prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, which the supervisor
sets to a folder in its private temp folder), so ``/metrics`` on any worker sums every
worker's requests and model calls, the dead ones' included. The state gauges are the
answering worker's: every worker serves the same state once a management call returned,
and ``GET /models/_status`` lists each worker's. So are the rollout figures: each worker
routes and compares its own share of the traffic.

``/metrics`` needs the token like every endpoint (Prometheus sends it with
``authorization: {type: Bearer, credentials: <token>}``), unless the server runs with
``YyaiServer.public_metrics = True``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from yyai_kernel.api.call import Call, Reply
from yyai_kernel.api.endpoint import Endpoint
from yyai_kernel.api.spec import errors, op
from yyai_kernel.errors import YyaiError
from yyai_kernel.types import ResidencyStatus, VersionState

if TYPE_CHECKING:
    from yyai_kernel.api.context import Api
    from yyai_kernel.plane.dataplane import DataPlane

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class RegistryCollector:
    """Reads every model's status at scrape time and turns it into metric families."""

    def __init__(self, dataplane: DataPlane):
        self.dataplane = dataplane

    def describe(self) -> list[Metric]:
        return []  # collected lazily; no names reserved up front

    def collect(self) -> Iterator[Metric]:
        try:
            status = self.dataplane.status()
        except YyaiError:  # the model host is restarting: the other series still answer
            return
        models = status.models
        loaded = GaugeMetricFamily("yyai_model_loaded", "1 when the version is loaded and serving.",
                                   labels=["model", "version"])
        state = GaugeMetricFamily("yyai_model_state", "The version's state (1 for the current one).",
                                  labels=["model", "version", "state"])
        default = GaugeMetricFamily("yyai_model_default_version", "The version that answers when none is named.",
                                    labels=["model"])
        load_s = GaugeMetricFamily("yyai_model_load_seconds", "Time the last load of the version took.",
                                   labels=["model", "version"])
        warm_s = GaugeMetricFamily("yyai_model_warmup_seconds", "Time the last warm-up of the version took.",
                                   labels=["model", "version"])
        cost = GaugeMetricFamily("yyai_model_memory_bytes", "What the loaded version costs, measured at its load.",
                                 labels=["model", "version"])
        count = 0
        for name, model in models.items():
            if model.default is not None:
                default.add_metric([name], model.default)
            for version, info in model.versions.items():
                key = str(version)
                count += info.ready
                loaded.add_metric([name, key], 1.0 if info.ready else 0.0)
                for s in VersionState:
                    state.add_metric([name, key, s.value], 1.0 if info.state is s else 0.0)
                if info.load_time_s is not None:
                    load_s.add_metric([name, key], info.load_time_s)
                if info.warmup_time_s is not None:
                    warm_s.add_metric([name, key], info.warmup_time_s)
                if info.memory_bytes is not None:
                    cost.add_metric([name, key], info.memory_bytes)
        total = GaugeMetricFamily("yyai_models_loaded", "Model versions loaded and serving.", value=count)
        yield from (loaded, state, default, load_s, warm_s, cost, total)
        if status.residency is not None:
            yield from _residency_families(status.residency)
        yield from _rollout_families(models)


_CANARY = {"requests": "Requests the canary answered.",
           "fallbacks": "Canary picks the default answered (the canary did not serve)."}
_SHADOW = {"runs": "Shadow runs started.", "rows_compared": "Input rows the shadow was compared on.",
           "rows_agreed": "Input rows on which the shadow agreed with the answer sent.",
           "errors": "Shadow runs that failed (raised, unloaded, incompatible); the real replies were unaffected.",
           "dropped": "Shadow runs dropped because the shadow queue was full."}


_RESIDENCY_COUNTERS = {
    "loads": ("yyai_loads", "Versions loaded (at start, on demand, by an operator)."),
    "load_failures": ("yyai_load_failures", "Loads that failed."),
    "evictions": ("yyai_evictions", "Versions unloaded to stay within the memory budget."),
    "cold_starts": ("yyai_cold_starts", "Requests that waited for their version to load."),
    "cold_start_wait_s": ("yyai_cold_start_wait_seconds", "Seconds requests waited for their version to load."),
    "cold_start_timeouts": ("yyai_cold_start_timeouts", "Requests answered 503 because their load took too long."),
}


def _residency_families(residency: ResidencyStatus) -> Iterator[Metric]:
    """What the process that holds the models keeps loaded, against its budget, and its load counters."""
    yield GaugeMetricFamily("yyai_resident_bytes", "The measured cost of the loaded versions.",
                            value=residency.resident_bytes)
    yield GaugeMetricFamily("yyai_process_resident_bytes", "Resident memory of the process that holds the models.",
                            value=residency.process_rss_bytes)
    if residency.budget_bytes is not None:
        yield GaugeMetricFamily("yyai_memory_budget_bytes", "The memory budget (--memory-budget).",
                                value=residency.budget_bytes)
    for key, (name, text) in _RESIDENCY_COUNTERS.items():
        yield CounterMetricFamily(name, text, value=getattr(residency, key))


def _rollout_families(models: dict[str, Any]) -> Iterator[Metric]:
    """The canary and shadow counters of every model with a traffic policy."""
    defaults = CounterMetricFamily("yyai_rollout_default_requests",
                                   "Requests that named no version, under a traffic policy.", labels=["model"])
    canary = {k: CounterMetricFamily(f"yyai_canary_{k}", text, labels=["model", "version"])
              for k, text in _CANARY.items()}
    shadow = {k: CounterMetricFamily(f"yyai_shadow_{k}", text, labels=["model", "version"])
              for k, text in _SHADOW.items()}
    agreement = GaugeMetricFamily("yyai_shadow_agreement", "Share of compared rows on which the shadow agreed.",
                                  labels=["model", "version"])
    for name, model in models.items():
        rollout = model.rollout
        if rollout is None:
            continue
        defaults.add_metric([name], rollout.default_requests)
        if rollout.canary is not None:
            for key, family in canary.items():
                family.add_metric([name, str(rollout.canary.version)], getattr(rollout.canary, key))
        if rollout.shadow is not None:
            labels = [name, str(rollout.shadow.version)]
            for key, family in shadow.items():
                family.add_metric(labels, getattr(rollout.shadow, key))
            if rollout.shadow.agreement is not None:
                agreement.add_metric(labels, rollout.shadow.agreement)
    yield from (defaults, *canary.values(), *shadow.values(), agreement)


class ServerMetrics:
    """The metrics of one server: HTTP and model-call series, plus the registry collector.

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set) the series live in files that
    every worker writes and :meth:`render` sums; otherwise in this server's own registry.
    """

    def __init__(self, dataplane: DataPlane | None = None):
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=False)
        own = None if self.multiprocess else self.registry  # multiprocess: the files are the store
        self.requests = Counter(
            "yyai_http_requests", "HTTP requests by endpoint, model, version and status code.",
            ["endpoint", "model", "version", "code"], registry=own,
        )
        self.latency = Histogram(
            "yyai_http_request_duration_seconds", "HTTP request latency by endpoint and model.",
            ["endpoint", "model"], buckets=LATENCY_BUCKETS, registry=own,
        )
        self.predictions = Counter("yyai_model_predictions", "Prediction calls on the version.",
                                   ["model", "version"], registry=own)
        self.failures = Counter("yyai_model_prediction_errors", "Prediction calls on the version that failed.",
                                ["model", "version"], registry=own)
        self.batch_sizes = Histogram("yyai_model_batch_size", "Sizes of the batches the version ran.",
                                     ["model", "version"], buckets=BATCH_BUCKETS, registry=own)
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        if dataplane is not None:
            self.watch(dataplane)

    def watch(self, dataplane: DataPlane) -> None:
        """Report the model state of ``dataplane`` at scrape time."""
        self.registry.register(RegistryCollector(dataplane))

    def observe(self, endpoint: str, model: str, version: str, code: int, seconds: float) -> None:
        """Record one finished request."""
        self.requests.labels(endpoint, model, version, str(code)).inc()
        self.latency.labels(endpoint, model).observe(seconds)

    # --- the registry's StatsObserver ---------------------------------------------------------

    def prediction(self, model: str, version: int, ok: bool) -> None:
        """One model call finished (``ok``: without an error)."""
        (self.predictions if ok else self.failures).labels(model, str(version)).inc()

    def batch(self, model: str, version: int, size: int) -> None:
        """The version ran one batch of ``size`` rows."""
        self.batch_sizes.labels(model, str(version)).observe(size)

    def render(self) -> bytes:
        """The text exposition of every series."""
        return generate_latest(self.registry)


async def metrics(api: Api, call: Call) -> Reply:
    """GET /metrics: Prometheus text format."""
    return Reply(await api.run(api.metrics.render), media_type=CONTENT_TYPE_LATEST)


# Ray Serve exports its own Prometheus metrics (ray_serve_* at each node's metrics port).
ENDPOINTS = [
    Endpoint("GET", "/metrics", metrics, op("Prometheus metrics", {
        "200": {"description": "Text exposition format.", "content": {"text/plain": {"schema": {"type": "string"}}}},
        **errors(),
    }, tags=["ops"]), metric=None, public="public_metrics", on_ray=False),
]
