"""The ASGI adapter of the endpoint table: yyai's REST API as a Starlette app.

What: :func:`make_app` serves an :class:`~yyai_kernel.api.context.Api`'s endpoints: on the
shared port of each ``--workers`` front end (under uvicorn, ``server/workers/restport.py``)
and in each Ray replica (the table less what cannot run across replicas,
``ray_app/http.py``). Each route reads the request into a
:class:`~yyai_kernel.api.body.BodySink` (the one body rule that the Tornado adapter feeds
too), builds a :class:`~yyai_kernel.api.call.Call`, awaits the endpoint and writes its
:class:`~yyai_kernel.api.call.Reply`, counting the request in ``Api.in_flight`` (a
draining stop waits for it) and in the request metrics when the Api has them. Before any
byte of the body, :class:`TokenAuth` applies ``tokenauth``'s rules: the Host check when
the server has one, the token in constant time, and with no token the refusal of a
browser's cross-origin write. Errors are the same JSON (``api.call.error_body``), so the
servers answer the same request with the same status and body
(``tests/requesttable.py``). Nothing here imports Tornado or Ray.

Why Starlette rather than FastAPI: no route takes typed parameters or needs generated docs
(they would bypass the token), and the bodies are the typed results' own JSON. Large
spooled chunks are written to the upload's file off the event loop. Event loop only:
nothing here locks.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from yyai_kernel.api.body import BodySink
from yyai_kernel.api.call import (
    JSON_TYPE,
    Call,
    Query,
    dumps,
    error_body,
    error_headers,
)
from yyai_kernel.api.context import Api
from yyai_kernel.api.endpoint import Body, Endpoint
from yyai_kernel.api.table import by_path
from yyai_kernel.errors import YyaiError
from yyai_kernel.protocol import tokenauth

log = logging.getLogger("yyai.api")

CHUNK_TO_THREAD = 1024 * 1024  # spooled upload chunks at least this large are written off the loop
BODY_PENDING = "yyai.body_pending"  # in the ASGI scope: True while a refusal would leave the body unread


def make_app(api: Api, token: str | None, *, host_allowed: Callable[[str], bool] | None = None) -> Starlette:
    """The ASGI app of ``api.endpoints``, behind the token (None: no authentication, and
    a browser's cross-origin write is refused) and, when given, the Host check
    (``tokenauth.host_check``)."""
    routes: list[Route] = []
    public: set[str] = set()
    for endpoint_path, methods in by_path(api.endpoints).items():
        pattern = next(iter(methods.values())).pattern()  # one path: one pattern, whatever the method
        routes.append(RawPathRoute(pattern, _route(api, methods), methods=list(methods)))
        if all(e.public and getattr(api.config, e.public) for e in methods.values()):
            public.update((endpoint_path, endpoint_path + "/"))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TokenAuth, token=token, public=tuple(public), host_allowed=host_allowed)],
        exception_handlers={YyaiError: _yyai_error, HTTPException: _http_error, Exception: _unexpected},
    )
    app.router.redirect_slashes = False  # a path the table does not have is a 404, with or without its '/'
    return app


def raw_route_path(scope: Scope) -> str:
    """The request's path as sent, percent-escapes kept, less the root path."""
    raw = scope.get("raw_path")
    path: str = raw.decode("latin-1") if raw else scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


class RawPathRoute(Route):
    """A route matched against the path as sent (``Endpoint.pattern``), its parameters
    unescaped afterwards, as Tornado routes: ``/v2/models/%2e%2e%2fetc/infer`` names the
    model ``../etc`` (refused as a bad name, 400) rather than being the path ``/v2/models/../etc/infer``."""

    def __init__(self, pattern: str, endpoint: Callable[[Request], Awaitable[Response]], methods: list[str]):
        super().__init__("/", endpoint, methods=methods)
        self.raw_pattern = re.compile(pattern)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        found = self.raw_pattern.fullmatch(raw_route_path(scope))
        if found is None:
            return Match.NONE, {}
        child = {"endpoint": self.endpoint,
                 "path_params": {name: unquote(value) for name, value in found.groupdict().items()}}
        return (Match.FULL if self.methods is None or scope["method"] in self.methods else Match.PARTIAL), child


def _route(api: Api, methods: dict[str, Endpoint]) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        endpoint = methods.get(request.method)
        if endpoint is None:  # HEAD, which Starlette adds to every GET route
            raise HTTPException(405)
        started = time.perf_counter()
        status = 500
        api.in_flight += 1
        call = Call(request.method, request.path_params, Query(_multi(request.query_params)), request.headers,
                    base_url=request.scope.get("root_path", "") + "/", tmp_dir=api.tmp_dir)
        try:
            sink = await _read_body(api, endpoint, request)
            try:
                if sink.spooling:
                    call.body_file = sink.spooled()
                else:
                    call.body = sink.body()
                reply = await endpoint(api, call)
            finally:
                sink.discard()
            status = reply.status
            return Response(reply.body, reply.status, headers=reply.headers, media_type=reply.media_type)
        except YyaiError as error:
            status = error.status
            raise
        finally:
            api.in_flight -= 1
            if endpoint.metric is not None and api.metrics is not None:
                _observe(api, endpoint.metric, call, status, time.perf_counter() - started)

    return handle


def _observe(api: Api, metric: str, call: Call, status: int, seconds: float) -> None:
    model, version = call.metric_labels()
    try:
        api.metrics.observe(metric, model, version, status, seconds)
    except Exception:  # metrics must never break a request
        log.exception("recording metrics failed")


async def _read_body(api: Api, endpoint: Endpoint, request: Request) -> BodySink:
    """The body within its limit: 413 from Content-Length before reading, or while reading."""
    config = api.config
    spool = endpoint.body is Body.SPOOL and request.method in ("POST", "PUT")
    sink = BodySink(config.max_archive_bytes, spool_dir=api.tmp_dir) if spool else BodySink(config.max_body_bytes)
    request.scope[BODY_PENDING] = True  # a refusal now leaves the body unread: see _error_reply
    try:
        sink.declared(request.headers.get("content-length"))
        request.scope[BODY_PENDING] = False  # within the drain cap: the server drops the rest and keeps the connection
        if sink.too_large:
            raise sink.error()
        async for chunk in request.stream():
            if spool and len(chunk) >= CHUNK_TO_THREAD:
                await asyncio.to_thread(sink.feed, chunk)
            else:
                sink.feed(chunk)
            if sink.too_large:
                raise sink.error()
    except BaseException:
        sink.discard()
        raise
    return sink


def _multi(params: QueryParams) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in params.multi_items():
        values.setdefault(key, []).append(value)
    return values


# --- errors and auth --------------------------------------------------------------------------


def _error_reply(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None, *,
                 body_pending: bool = False) -> Response:
    """The JSON error reply. ``body_pending``: refused before the body was read, so the
    connection closes after the reply rather than read (and drop) a body nobody wants."""
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = tokenauth.WWW_AUTHENTICATE
    if body_pending:
        headers["Connection"] = "close"
    return Response(dumps(body), status, headers=headers, media_type=JSON_TYPE)


async def _yyai_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, YyaiError)  # the handler of YyaiError only
    return _error_reply(error.status, error_body(error.status, error), error_headers(error),
                        body_pending=request.scope.get(BODY_PENDING, False))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)  # the handler of HTTPException only
    if error.status_code == 404:
        message = f"No such endpoint: {request.method} {request.url.path}. See /openapi.json."
    elif error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    else:
        message = error.detail or HTTPStatus(error.status_code).phrase
    return _error_reply(error.status_code, error_body(error.status_code, None, message), error.headers)


async def _unexpected(request: Request, error: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return _error_reply(500, error_body(500, error))


class TokenAuth:
    """ASGI middleware, before any byte of the body is read: the Host check when the app has
    one (403); then 401 for any request without the token (constant-time compare), except
    the paths in ``public`` (health checks, when the server makes them public); with no
    token, 403 for a browser's cross-origin write (``tokenauth.same_origin_or_script``)."""

    def __init__(self, app: ASGIApp, token: str | None, public: tuple[str, ...] = (),
                 host_allowed: Callable[[str], bool] | None = None):
        self.app, self.token, self.public = app, token, frozenset(public)
        self.host_allowed = host_allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refused = self._refusal(scope)
        if refused is None:
            return await self.app(scope, receive, send)
        await refused(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        if self.host_allowed is not None and not self.host_allowed(headers.get("host", "")):
            log.warning("Blocking request with non-local 'Host' %s; set allow_remote_access to allow it.",
                        headers.get("host"))
            return _error_reply(403, {"error": "The Host header names no local address; remote access is off."},
                                body_pending=True)
        if self.token is None:
            if scope["method"] in ("GET", "HEAD") or tokenauth.same_origin_or_script(headers.get):
                return None
            return _error_reply(403, {"error": "Cross-origin request refused."}, body_pending=True)
        path, root = scope["path"], scope.get("root_path", "")
        if (path[len(root):] if root and path.startswith(root) else path) in self.public:
            return None
        authorization = headers.get("authorization")
        query_token = QueryParams(scope.get("query_string", b"")).get("token")
        if tokenauth.same_token(tokenauth.sent_token(authorization, query_token), self.token):
            return None
        return _error_reply(401, {"error": tokenauth.refusal(authorization, query_token)}, body_pending=True)
