"""The Tornado adapter of the endpoint table: every REST endpoint of ``yyai serve``.

Each path of the table (``yyai_kernel/api/table.py``) becomes one Tornado route whose handler
serves the endpoints of that path, one per method. A handler does only what is HTTP in
Tornado's terms: the auth check, reading the body into a :class:`~yyai_kernel.api.body.BodySink`
as it streams in, building a :class:`~yyai_kernel.api.call.Call`, awaiting the endpoint, writing
its :class:`~yyai_kernel.api.call.Reply` or its error, and recording the request metrics.

Two handler classes, by who may call (``Endpoint.auth``):

* :class:`TokenHandler`, a plain Tornado ``RequestHandler``, for the inference routes
  (``POST /v2/models/{m}/infer``, ``POST /predictions/{m}``), which carry nearly all of the
  traffic from scripts and v2 clients that send a token in a header. jupyter_server's
  ``APIHandler`` runs its identity provider, XSRF, origin and CSP machinery on every
  request, which those clients never need and which cost more than the model call on
  small inputs (``bench/profiles/``). In this order, before any byte of the body is read:
  the Host check against DNS rebinding (loopback names only, unless remote access is
  allowed), 403 otherwise; the token, compared in constant time, from the header or
  ``?token=`` (never a cookie), 401 otherwise; with auth off (``--no-token``), a browser's
  cross-origin POST is 403.
* :class:`SessionHandler`, on jupyter_server's ``APIHandler``, for everything else: the
  token, or the dashboard's login cookie with its XSRF token (browsers need those checks).
  No valid token is a 401 on every method (jupyter_server alone would redirect a GET and
  fail a POST on its XSRF check with 403).

Both share :class:`EndpointHandler`, the role of serving one table row (a mixin because
Tornado's handlers are classes of a framework base, and the two bases differ). Errors are
one mapping (``api.call.error_body``): a ``YyaiError`` answers with its own status; a
refusal before the body was read says ``Connection: close``, so a keep-alive client never
meets a reset. The event loop awaits model calls and pool work; it never runs a blocking
call or takes a lock that a disk write can hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from tornado import web

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
from yyai_kernel.api.endpoint import Auth, Body, Endpoint
from yyai_kernel.errors import YyaiError
from yyai_kernel.protocol import tokenauth
from yyai_kernel.server.auth import token_matches

log = logging.getLogger("yyai.server")

REST_PREFIXES = (r"/v2/.*", r"/models/.*", r"/predictions/?.*", r"/evaluations/.*")


if TYPE_CHECKING:  # a mixin of Tornado handlers: type-checked as the RequestHandler it joins
    _Handler = web.RequestHandler
else:
    _Handler = object


class EndpointHandler(_Handler):
    """Serves the endpoints of one path, one per method (see the module docstring)."""

    endpoints: dict[str, Endpoint]
    _sink: BodySink | None = None
    _call: Call | None = None
    _body_pending = True  # a refusal now leaves the body unread: see write_error

    def initialize(self, endpoints: dict[str, Endpoint]) -> None:
        self.endpoints = endpoints
        self._started = time.perf_counter()
        self._endpoint = endpoints.get(self.request.method or "")
        self._counted = True
        self.api.in_flight += 1

    @property
    def api(self) -> Api:
        return self.settings["yyai"]

    # --- before the body ---------------------------------------------------------------------

    async def prepare(self) -> None:
        self._sink = None
        self._body_pending = True
        framework = super().prepare()  # the framework's own (jupyter_server: identity, XSRF, origin)
        if framework is not None:
            await framework
        if self._finished:  # Tornado has no public "finished" flag; prepare() may have answered
            return
        self.check_auth()
        endpoint = self._endpoint
        if endpoint is None:
            if not self.endpoints:
                raise web.HTTPError(404, f"No such endpoint: {self.request.method} {self.request.path}. "
                                         "See /openapi.json.")
            raise web.HTTPError(405, f"{self.request.method} is not allowed on {self.request.path}.")
        config = self.api.config
        if endpoint.body is Body.SPOOL and self.request.method in ("POST", "PUT"):
            self._sink = BodySink(config.max_archive_bytes, spool_dir=self.api.tmp_dir)
        else:
            self._sink = BodySink(config.max_body_bytes)
        self._sink.declared(self.request.headers.get("Content-Length"))
        self.request.connection.set_max_body_size(self._sink.drain_cap)
        self._body_pending = False  # from here on Tornado reads the whole body before the method runs

    def check_auth(self) -> None:
        """Refuse the request unless its caller may call this endpoint (each handler's own rule)."""
        raise NotImplementedError

    def data_received(self, chunk: bytes) -> None:
        self._sink.feed(chunk)

    # --- serving -------------------------------------------------------------------------------

    async def _serve(self, **path: str) -> None:
        endpoint, sink = self._endpoint, self._sink
        request = self.request
        call = self._call = Call(
            method=request.method, path=path,
            query=Query({k: [v.decode("utf-8", "replace") for v in vs] for k, vs in request.query_arguments.items()}),
            headers=request.headers, base_url=self.settings.get("base_url", "/"), tmp_dir=self.api.tmp_dir)
        if sink.spooling:
            call.body_file = sink.spooled()
        else:
            call.body = sink.body()
        reply = await endpoint(self.api, call)
        self.set_status(reply.status)
        for header, value in reply.headers.items():
            self.set_header(header, value)
        self.send(reply.body, reply.media_type)

    def send(self, body: bytes, media_type: str) -> None:
        self.set_header("Content-Type", media_type)
        self.finish(body)

    async def get(self, **path: str) -> None:
        await self._serve(**path)

    post = put = delete = get

    # --- errors ------------------------------------------------------------------------------------

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Give a YyaiError its own status: tornado would make every non-HTTPError a 500."""
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], YyaiError):
            status_code = exc_info[1].status
        super().send_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb) -> None:
        """Expected refusals log one line; only real failures log a traceback."""
        if isinstance(value, YyaiError):
            log.info("%s %s -> %d %s: %s", self.request.method, self.request.path, value.status,
                     type(value).__name__, value.message)
        elif isinstance(value, web.HTTPError):
            if value.log_message:
                log.info("%s %s -> %d: %s", self.request.method, self.request.path, value.status_code,
                         value.log_message % value.args if value.args else value.log_message)
        else:
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one place an error becomes a reply (see ``api.call.error_body``), with its headers."""
        error = (kwargs.get("exc_info") or (None, None, None))[1]
        message = None
        if isinstance(error, web.HTTPError):
            message = error.log_message % error.args if error.log_message and error.args else error.log_message
            message = message or error.reason
        if status_code == 401:
            self.set_header("WWW-Authenticate", tokenauth.WWW_AUTHENTICATE)
        for header, value in error_headers(error).items():
            self.set_header(header, value)
        if self._body_pending:
            # Refused before the body was read: Tornado will close the connection after this
            # reply, so say so, or a keep-alive client may reuse it and meet a reset.
            self.set_header("Connection", "close")
        self.clear_header("Inference-Header-Content-Length")
        self.send(dumps(error_body(status_code, error, message)), JSON_TYPE)

    # --- after the reply -----------------------------------------------------------------------------

    def on_finish(self) -> None:
        endpoint, metrics = self._endpoint, self.api.metrics
        if endpoint is not None and endpoint.metric is not None and metrics is not None:
            model, version = self._call.metric_labels() if self._call is not None else ("", "")
            try:
                metrics.observe(endpoint.metric, model, version, self.get_status(), time.perf_counter() - self._started)
            except Exception:  # metrics must never break a request
                log.exception("recording metrics failed")
        self._done()
        super().on_finish()

    def on_connection_close(self) -> None:
        self._done()
        super().on_connection_close()

    def _done(self) -> None:
        if self._sink is not None:
            self._sink.discard()
        if self._counted:
            self._counted = False
            self.api.in_flight -= 1


def unauthorized(request) -> web.HTTPError:
    """The 401 for a request without a valid token; the message tells a wrong token from none."""
    query = request.query_arguments.get("token")
    return web.HTTPError(401, tokenauth.refusal(request.headers.get("Authorization"),
                                                query[-1].decode("utf-8", "replace") if query else None))


def same_origin_or_script(request) -> bool:
    """With auth off: scripts (no browser headers) and same-origin browser requests pass."""
    return tokenauth.same_origin_or_script(request.headers.get)


_HOST_CHECKS: dict[tuple, Callable[[str], bool]] = {}


def host_allowed(request, settings: dict) -> bool:
    """The DNS-rebinding check (``tokenauth.host_check``): unless remote access is allowed,
    the Host must name a loopback address or one of ``local_hostnames``."""
    if settings.get("allow_remote_access", False):
        return True
    names = tuple(settings.get("local_hostnames", ["localhost"]))
    check = _HOST_CHECKS.get(names)
    if check is None:
        check = _HOST_CHECKS[names] = tokenauth.host_check(names)
    allowed = check(request.host)
    if not allowed:
        log.warning("Blocking request with non-local 'Host' %s; set allow_remote_access to allow it.", request.host)
    return allowed


def _public(endpoint: Endpoint | None, api: Api) -> bool:
    """Whether the endpoint answers without a token here (its ``public`` flag is set)."""
    return endpoint is not None and endpoint.public is not None and bool(getattr(api.config, endpoint.public))


@web.stream_request_body
class TokenHandler(EndpointHandler, web.RequestHandler):
    """A plain Tornado handler behind the Host check and the token (see the module docstring)."""

    def check_auth(self) -> None:
        if not host_allowed(self.request, self.settings):
            raise web.HTTPError(403, "The Host header names no local address; remote access is off.")
        provider = self.settings["identity_provider"]
        if provider.auth_enabled and not _public(self._endpoint, self.api):
            if not token_matches(provider, self.request):
                raise unauthorized(self.request)
        elif not provider.auth_enabled and self.request.method not in ("GET", "HEAD") \
                and not same_origin_or_script(self.request):
            raise web.HTTPError(403, "Cross-origin request refused.")


@web.stream_request_body
class SessionHandler(EndpointHandler, APIHandler):
    """A jupyter_server API handler: the token, or a login cookie with its XSRF token."""

    def check_auth(self) -> None:
        if not _public(self._endpoint, self.api) and not self.current_user:
            self.get_login_url()

    def send(self, body: bytes, media_type: str) -> None:
        self.finish(body, set_content_type=media_type)  # APIHandler.finish would say JSON

    def get_login_url(self) -> str:
        """API handlers never redirect to a login page: no valid token is a 401.

        The message tells a wrong token from a missing one: the fix differs.
        """
        raise unauthorized(self.request)

    def check_xsrf_cookie(self) -> None:
        """No token is a 401 before any XSRF question; token-authenticated requests pass.

        With auth disabled (``--no-token``), requests from non-browser clients pass, and
        browser requests must come from the server's own origin.
        """
        # jupyter_server has no public way to ask "has prepare() resolved the user yet?": its
        # own check_xsrf_cookie reads this private attribute for exactly that, and so do we.
        if not hasattr(self, "_jupyter_current_user"):
            return None  # called too early; prepare() calls it again once the user is known
        if _public(self._endpoint, self.api):
            return None
        if self.current_user is None:
            self.get_login_url()
        if self.token_authenticated:
            return None
        if not self.identity_provider.auth_enabled:
            if same_origin_or_script(self.request):
                return None
            raise web.HTTPError(403, "Cross-origin request refused.")
        return super().check_xsrf_cookie()

    @allow_unauthenticated  # the checks above decide, per endpoint (some are public)
    async def get(self, **path: str) -> None:
        await self._serve(**path)

    post = put = delete = get


def rest_handlers(endpoints: list[Endpoint], prefix) -> list[tuple[str, type, dict]]:
    """Tornado's routes for the endpoint table (``prefix(path)`` joins the server's base URL),
    then the JSON 404 for any other path under the REST prefixes."""
    routes: dict[str, dict[str, Endpoint]] = {}
    patterns: dict[str, str] = {}
    for endpoint in endpoints:
        routes.setdefault(endpoint.path, {})[endpoint.method] = endpoint
        patterns[endpoint.path] = endpoint.pattern()
    handlers = []
    for path, methods in routes.items():
        kinds = {e.auth for e in methods.values()}
        handler = TokenHandler if kinds == {Auth.TOKEN} else SessionHandler
        handlers.append((prefix(patterns[path]), handler, {"endpoints": methods}))
    # a path with no endpoint: the JSON 404 (after the token check), never Voila's page
    handlers.extend((prefix(p), SessionHandler, {"endpoints": {}}) for p in REST_PREFIXES)
    return handlers
