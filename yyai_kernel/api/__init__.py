"""The REST API as one framework-free endpoint table, and its ASGI adapter.

- ``endpoint.py``: Endpoint (path, method, fn(api, call) -> Reply, body kind, auth, public
  flag, metric label, OpenAPI operation), and the path patterns;
- ``call.py``: Call (a request as an endpoint sees it), Reply, the one error mapping;
- ``body.py``: BodySink, the one body reader both adapters feed (limits, spooling);
- ``context.py``: Api, what every endpoint shares (the planes, the pools, the metrics);
- ``refs.py``: the edge where a path's model reference is parsed, once;
- ``v2.py``, ``images.py``, ``models.py``, ``rollout.py``, ``samples.py``, ``evaluations.py``,
  ``metrics.py``, ``openapi.py``: the endpoints, grouped by API; ``spec.py`` the OpenAPI pieces;
- ``table.py``: every endpoint, in the order a router tries them;
- ``asgi.py``: the table as a Starlette app (what each Ray replica serves).

The Tornado adapter is ``yyai_kernel/server/rest/handlers.py``. Nothing here imports Tornado,
and only ``asgi.py`` imports Starlette.
"""
