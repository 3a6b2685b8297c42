"""Prometheus metrics: ``GET /metrics`` in the text exposition format.

Each server owns a ``CollectorRegistry`` (no process-global state, so tests can run
several servers). Two kinds of series:

* HTTP, recorded by the handlers as requests finish:
  ``yyai_http_requests_total{endpoint, model, version, code}`` and
  ``yyai_http_request_duration_seconds{endpoint, model}`` (histogram). The model label is
  only ever a name the registry knows, so unknown names from clients cannot grow the
  label set (they count under ``model=""``).
* Models, read from ``Registry.status()`` at scrape time by a custom collector:
  ``yyai_model_loaded``, ``yyai_model_state``, ``yyai_model_default_version``,
  ``yyai_model_load_seconds``, ``yyai_model_warmup_seconds``,
  ``yyai_model_predictions_total``, ``yyai_model_prediction_errors_total``,
  ``yyai_model_batch_size`` (histogram of the batches the dynamic batcher ran) and
  ``yyai_models_loaded``.

``/metrics`` needs the token like every endpoint (Prometheus sends it with
``authorization: {type: Bearer, credentials: <token>}``), unless the server runs with
``YyaiServer.public_metrics = True``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .base import YyaiHandler, public_if

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STATES = ("available", "loading", "ready", "failed", "unloaded")


class RegistryCollector:
    """Reads the registry's status at scrape time and turns it into metric families."""

    def __init__(self, registry):
        self.registry = registry

    def describe(self):
        return []  # collected lazily; no names reserved up front

    def collect(self):
        status = self.registry.status()
        models = status.get("models", {})
        loaded = GaugeMetricFamily("yyai_model_loaded", "1 when the version is loaded and serving.", labels=["model", "version"])
        state = GaugeMetricFamily("yyai_model_state", "The version's state (1 for the current one).", labels=["model", "version", "state"])
        default = GaugeMetricFamily("yyai_model_default_version", "The version that answers when none is named.", labels=["model"])
        load_s = GaugeMetricFamily("yyai_model_load_seconds", "Time the last load of the version took.", labels=["model", "version"])
        warm_s = GaugeMetricFamily("yyai_model_warmup_seconds", "Time the last warm-up of the version took.", labels=["model", "version"])
        requests = CounterMetricFamily("yyai_model_predictions", "Prediction calls on the version.", labels=["model", "version"])
        errors = CounterMetricFamily("yyai_model_prediction_errors", "Prediction calls on the version that failed.", labels=["model", "version"])
        batches = HistogramMetricFamily("yyai_model_batch_size", "Sizes of the batches the version ran.", labels=["model", "version"])
        count = 0
        for name, model in models.items():
            if model.get("default") is not None:
                default.add_metric([name], model["default"])
            for key, info in model.get("versions", {}).items():
                is_ready = info.get("state") == "ready"
                count += is_ready
                loaded.add_metric([name, key], 1.0 if is_ready else 0.0)
                for s in STATES:
                    state.add_metric([name, key, s], 1.0 if info.get("state") == s else 0.0)
                if info.get("load_time_s") is not None:
                    load_s.add_metric([name, key], info["load_time_s"])
                if info.get("warmup_time_s") is not None:
                    warm_s.add_metric([name, key], info["warmup_time_s"])
                requests.add_metric([name, key], info.get("requests", 0))
                errors.add_metric([name, key], info.get("errors", 0))
                sizes = {int(k): v for k, v in (info.get("batch_sizes") or {}).items()}
                if sizes:
                    buckets, running = [], 0
                    for bound in BATCH_BUCKETS:
                        running = sum(v for k, v in sizes.items() if k <= bound)
                        buckets.append((str(bound), running))
                    buckets.append(("+Inf", sum(sizes.values())))
                    batches.add_metric([name, key], buckets, sum(k * v for k, v in sizes.items()))
        total = GaugeMetricFamily("yyai_models_loaded", "Model versions loaded and serving.", value=count)
        yield from (loaded, state, default, load_s, warm_s, requests, errors, batches, total)


class ServerMetrics:
    """The metrics of one server: HTTP series plus the registry collector."""

    def __init__(self, registry=None):
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "yyai_http_requests", "HTTP requests by endpoint, model, version and status code.",
            ["endpoint", "model", "version", "code"], registry=self.registry,
        )
        self.latency = Histogram(
            "yyai_http_request_duration_seconds", "HTTP request latency by endpoint and model.",
            ["endpoint", "model"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        if registry is not None:
            self.registry.register(RegistryCollector(registry))

    def observe(self, endpoint: str, model: str, version: str, code: int, seconds: float) -> None:
        """Record one finished request."""
        self.requests.labels(endpoint, model, version, str(code)).inc()
        self.latency.labels(endpoint, model).observe(seconds)

    def render(self) -> bytes:
        """The text exposition of every series."""
        return generate_latest(self.registry)


class MetricsHandler(YyaiHandler):
    """GET /metrics: Prometheus text format."""

    @public_if("public_metrics")
    async def get(self):
        payload = await self.run(self.state.metrics.render)
        self.finish(payload, set_content_type=CONTENT_TYPE_LATEST)


def handlers(prefix) -> list:
    """The metrics route."""
    return [(prefix(r"/metrics"), MetricsHandler)]
