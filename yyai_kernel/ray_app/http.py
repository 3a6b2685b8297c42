"""yyai's REST API as an ASGI app (Starlette) over a DataPlane: the HTTP face of the Ray ingress.

What: :func:`make_app` builds the routes of ``yyai serve`` that make sense on a cluster, each
a thin adapter: read the path, query, headers and body, call one ``DataPlane`` method, write
the reply. The rules for bodies, flags and media types are ``restparse``'s, the token rule
``tokenauth``'s and the v2 encoding ``v2codec``'s, the same that the Tornado handlers call,
so the two servers refuse the same requests with the same status and the same JSON
(``{"error", "type"}`` for every ``YyaiError``). Paths are written as the route table
(``server/routes.py``) writes them; a test checks that every path of that table is served
here or listed in :data:`NOT_SERVED` with the reason. Nothing here imports Tornado or Ray.

Why Starlette rather than FastAPI: no route takes typed parameters or needs generated
docs (they would bypass the token), and the reply bodies are the typed results' own JSON.

Threads: v2 bodies up to 16 KiB are parsed and queued on the event loop (two thread hops
would cost more); images, uploads and management calls run on two bounded pools (32
threads for predictions, 4 for management), as in ``yyai serve``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus

import orjson
from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from yyai_kernel.errors import INTERNAL_ERROR, InvalidInputError, YyaiError
from yyai_kernel.plane.dataplane import DataPlane
from yyai_kernel.protocol import restparse, tokenauth, v2codec
from yyai_kernel.types import STICKY_HEADER, check_name, parse_version_ref

log = logging.getLogger("yyai.ray")

NOT_SERVED = {
    "/metrics": "Ray Serve exports its own Prometheus metrics (ray_serve_* at each node's metrics port)",
    "/openapi.json": "generated from the Tornado handlers' route table; the paths are the same as yyai serve's",
}
# Evaluation jobs keep their state in one server's folder, which the ingress replicas do not share:
# `yyai evaluate --store PATH` (or a `yyai serve` over the shared store) evaluates instead.
_EVALUATION = "evaluation jobs run in yyai serve or `yyai evaluate --store`, not across ingress replicas"
NOT_SERVED.update({path: _EVALUATION for path in (
    "/models/{name}/evaluate", "/models/{name}/evalsets", "/models/{name}/evalsets/{set}", "/evaluations/{job}",
    "/evaluations/{job}/predictions.csv", "/evaluations/{job}/residuals.png")})
PUBLIC_HEALTH = ("/v2/health/live", "/v2/health/ready")
CHUNK_TO_THREAD = 1024 * 1024  # spooled upload chunks at least this large are written off the loop


@dataclass
class RestApi:
    """What every route shares: the data plane, the token, the temp folder and the pools."""

    plane: DataPlane
    token: str | None
    tmp_dir: str
    predict_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(32, thread_name_prefix="yyai-predict"))
    manage_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(4, thread_name_prefix="yyai-manage"))

    @property
    def config(self):
        return self.plane.config

    async def run(self, fn, *args, manage: bool = False, **kwargs):
        """A blocking call on a bounded pool; a Future it returns (a model call) is awaited too."""
        pool = self.manage_pool if manage else self.predict_pool
        result = await asyncio.get_running_loop().run_in_executor(pool, lambda: fn(*args, **kwargs))
        return await asyncio.wrap_future(result) if isinstance(result, Future) else result

    async def body(self, request: Request, *, what: str = "request body", limit: int | None = None) -> bytes:
        """The whole body, within the limit: 413 from Content-Length before reading, or while reading."""
        limit = self.config.max_body_bytes if limit is None else limit
        _check_declared(request, what, limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise restparse.too_large(what, size, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def spool(self, request: Request) -> str:
        """The body written to a temporary file outside the store (an archive upload)."""
        limit = self.config.max_archive_bytes
        _check_declared(request, "archive", limit)
        fd, path = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.tmp_dir)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise restparse.too_large("archive", size, limit)
                    if len(chunk) >= CHUNK_TO_THREAD:
                        await asyncio.to_thread(out.write, chunk)
                    else:
                        out.write(chunk)
        except BaseException:
            os.unlink(path)
            raise
        return path

    def shutdown(self) -> None:
        self.predict_pool.shutdown(wait=False, cancel_futures=True)
        self.manage_pool.shutdown(wait=False, cancel_futures=True)


def _check_declared(request: Request, what: str, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        size = int(declared)
    except ValueError:
        raise InvalidInputError("Content-Length is not a number.") from None
    if size > limit:
        raise restparse.too_large(what, size, limit)


# --- replies ------------------------------------------------------------------------------------


def reply(body, status: int = 200) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type="application/json")


def error_reply(status: int, body: dict, headers: dict | None = None) -> Response:
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = tokenauth.WWW_AUTHENTICATE
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


async def yyai_error(request: Request, error: YyaiError) -> Response:
    retry = getattr(error, "retry_after", None)
    return error_reply(error.status, error.to_dict(), {"Retry-After": str(retry)} if retry else None)


async def http_error(request: Request, error: HTTPException) -> Response:
    if error.status_code == 404:
        message = f"No such endpoint: {request.method} {request.url.path}."
    else:
        message = error.detail or HTTPStatus(error.status_code).phrase
    return error_reply(error.status_code, {"error": message}, error.headers)


async def unexpected(request: Request, error: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return error_reply(500, {"error": INTERNAL_ERROR})


class TokenAuth:
    """ASGI middleware: 401 for any request without the token (constant-time compare),
    except the health routes when ``public_health`` is on."""

    def __init__(self, app, token: str | None, public: tuple[str, ...] = ()):
        self.app, self.token, self.public = app, token, frozenset(public)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.token is None or scope["path"] in self.public:
            return await self.app(scope, receive, send)
        authorization = Headers(scope=scope).get("authorization")
        query_token = QueryParams(scope.get("query_string", b"")).get("token")
        if tokenauth.same_token(tokenauth.sent_token(authorization, query_token), self.token):
            return await self.app(scope, receive, send)
        refused = error_reply(401, {"error": tokenauth.refusal(authorization, query_token)})
        await refused(scope, receive, send)


def make_app(api: RestApi) -> Starlette:
    """The ASGI app: every route of :func:`routes`, the token check and the JSON errors."""
    from starlette.middleware import Middleware

    public = PUBLIC_HEALTH if api.config.public_health else ()
    return Starlette(
        routes=routes(api),
        middleware=[Middleware(TokenAuth, token=api.token, public=public)],
        exception_handlers={YyaiError: yyai_error, HTTPException: http_error, Exception: unexpected},
    )


def routes(api: RestApi) -> list[Route]:
    """Every route, in matching order (``/models/_status`` before ``/models/{name}``)."""
    from yyai_kernel.ray_app.http_routes import image_routes, management_routes, rollout_routes, v2_routes

    return [*v2_routes(api), *image_routes(api), *rollout_routes(api), *management_routes(api)]


def model_path(request: Request) -> tuple[str, str | None]:
    """The ``{name}`` and optional ``{version}`` of a path, checked: a 400 before any body is read."""
    name, version = request.path_params["name"], request.path_params.get("version")
    check_name(name), parse_version_ref(version)
    return name, version


async def infer(api: RestApi, request: Request) -> Response:
    """POST /v2/models/{m}[/versions/{v}]/infer: JSON tensors or the binary extension."""
    name, version = model_path(request)
    raw = await api.body(request)
    encoding = request.headers.get("content-encoding")
    header_length = request.headers.get("inference-header-content-length")
    limit, plane = api.config.max_body_bytes, api.plane
    sticky = request.headers.get(STICKY_HEADER)

    def submit():
        request_ = v2codec.read_http_request(raw, encoding, header_length, limit)
        return plane.infer(name, version, request_, sticky=sticky)

    if len(raw) <= restparse.INLINE_BODY_BYTES and not encoding:
        result = await asyncio.wrap_future(submit())
        payload, header_out = v2codec.encode_result(result)
    else:
        result = await api.run(submit)
        payload, header_out = await api.run(v2codec.encode_result, result)
    if header_out is None:
        return Response(payload, media_type="application/json")
    return Response(payload, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(header_out)})
