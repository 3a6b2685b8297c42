"""What the Ray replicas serve of yyai's REST API, and why they leave the rest out.

Every replica serves the endpoint table of ``yyai serve`` (``yyai_kernel/api/table.py``)
through the ASGI adapter (``yyai_kernel/api/asgi.py``), over the same planes, so the two
servers answer the same request with the same status and body. An endpoint that cannot
run across replicas is declared ``on_ray=False`` in the table; :data:`NOT_SERVED`
says why, for people and for the test that checks the two lists agree.
"""

from __future__ import annotations

from yyai_kernel.api.endpoint import Endpoint
from yyai_kernel.api.table import all_endpoints

# Evaluation jobs keep their state in one server's folder, which the replicas do not share:
# `yyai evaluate --store PATH` (or a `yyai serve` over the shared store) evaluates instead.
_EVALUATION = "evaluation jobs run in yyai serve or `yyai evaluate --store`, not across Ray replicas"
NOT_SERVED = {
    "/metrics": "Ray Serve exports its own Prometheus metrics (ray_serve_* at each node's metrics port)",
    **dict.fromkeys((
        "/models/{name}/evaluate", "/models/{name}/evalsets", "/models/{name}/evalsets/{set}", "/evaluations/{job}",
        "/evaluations/{job}/predictions.csv", "/evaluations/{job}/residuals.png"), _EVALUATION),
}


def ray_endpoints() -> list[Endpoint]:
    """The endpoints a Ray replica serves: every one the table does not keep off Ray."""
    return [endpoint for endpoint in all_endpoints() if endpoint.on_ray]
