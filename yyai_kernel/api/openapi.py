"""The OpenAPI 3.0 document of every REST endpoint, served at ``GET /openapi.json``.

The paths and operations come from the endpoint table (``table.all_endpoints``), which the
server hands over in ``Api.endpoints``; the shared schemas from ``spec.py``. Tests validate
the document with openapi-spec-validator and check it against the live routes.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from yyai_kernel.api.call import Call, Reply, reply
from yyai_kernel.api.endpoint import Endpoint
from yyai_kernel.api.spec import SCHEMAS, errors, json_reply, op

if TYPE_CHECKING:
    from yyai_kernel.api.context import Api

INFO = ("Keras model serving with hot reload: Open Inference Protocol v2, image predictions "
        "and model management. Every endpoint needs the server's token: 'Authorization: token <T>' "
        "(or 'Bearer <T>'), or ?token=<T>.")


def build_spec(endpoints: list[Endpoint], server_version: str = "0") -> dict[str, Any]:
    """The OpenAPI document of ``endpoints``, a fresh dict on every call."""
    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = endpoint.operation
    return copy.deepcopy({
        "openapi": "3.0.3",
        "info": {"title": "yyai", "version": server_version, "description": INFO},
        "servers": [{"url": "/"}],
        "security": [{"tokenHeader": []}, {"bearer": []}, {"tokenQuery": []}],
        "tags": [{"name": "v2"}, {"name": "images"}, {"name": "management"}, {"name": "rollout"},
                 {"name": "evaluation"}, {"name": "ops"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "tokenHeader": {"type": "apiKey", "in": "header", "name": "Authorization",
                                "description": "The value is 'token <T>'."},
                "bearer": {"type": "http", "scheme": "bearer"},
                "tokenQuery": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    })


async def openapi_document(api: Api, call: Call) -> Reply:
    """GET /openapi.json."""
    return reply(build_spec(api.endpoints, api.data.version))


ENDPOINTS = [
    Endpoint("GET", "/openapi.json", openapi_document, op(
        "This document", {"200": json_reply({"type": "object"}, "OpenAPI 3.0 document."), **errors()}, tags=["ops"]),
        metric=None),
]
