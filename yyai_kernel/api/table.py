"""The endpoint table: every REST endpoint, in the order a router must try them.

Each API module (``v2``, ``images``, ``models``, ``rollout``, ``samples``, ``evaluations``,
``metrics``, ``openapi``) lists its :class:`~yyai_kernel.api.endpoint.Endpoint` s in
``ENDPOINTS``; this module gathers them. Both adapters serve this one table.
"""

from __future__ import annotations

from yyai_kernel.api import (
    evaluations,
    images,
    metrics,
    models,
    openapi,
    rollout,
    samples,
    v2,
)
from yyai_kernel.api.endpoint import Endpoint


def all_endpoints() -> list[Endpoint]:
    """Every REST endpoint, in matching order (specific paths before ``{name}`` ones)."""
    endpoints: list[Endpoint] = []
    for module in (v2, images, models, rollout, samples, evaluations, metrics, openapi):
        endpoints.extend(module.ENDPOINTS)
    return endpoints


def by_path(endpoints: list[Endpoint]) -> dict[str, dict[str, Endpoint]]:
    """``{path: {METHOD: endpoint}}``, in the table's order."""
    paths: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    return paths
