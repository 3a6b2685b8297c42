"""The base of every yyai REST handler: auth, JSON errors, body limits, off-loop work.

One place maps errors to replies: a :class:`~yyai_kernel.errors.YyaiError` answers with
its own ``.status`` and ``to_dict()``; a ``tornado.web.HTTPError`` with its status and
message; anything else with a bare 500 (the traceback goes to the server log, never to
the client). Every reply is JSON: ``{"error": "..."}``.

Auth is jupyter_server's: the identity provider accepts the token as
``Authorization: token T`` (or ``Bearer T``) or ``?token=T``. A request without a valid
token gets 401 on every method (jupyter_server alone would redirect a GET and fail a POST
on its XSRF check with 403). A browser request that is cookie-authenticated still needs
the XSRF token for POST/PUT/DELETE (403 without it).

Bodies are streamed (``@stream_request_body``) so the size limit is checked on the
declared ``Content-Length`` before any byte is read, and counted while reading chunked
bodies. An oversized body is drained (up to a cap) rather than cut off, so clients read
a clean 413 instead of a reset connection. Archives spool to a temporary file outside the
store; everything else is buffered in memory.

Blocking work (decoding, loads, uploads) runs on bounded thread pools (``run``), and a
batched model call is a Future the IOLoop awaits (``model_call``), so the loop never
waits on TensorFlow, a disk or a lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import responses
from typing import Any, Callable

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.ioloop import IOLoop

from .. import restparse, tokenauth
from ..config import MiB, ServingConfig
from ..dataplane import DataPlane
from ..errors import (INTERNAL_ERROR, InvalidInputError, ModelNotFoundError, PayloadTooLargeError, StoreWriteError,
                      YyaiError)

log = logging.getLogger("yyai.server")

@dataclass
class ServerState:
    """What the handlers share: the data plane, the serving config, the pools and the metrics.

    Lives in the Tornado settings under ``"yyai"``.
    """

    dataplane: DataPlane
    metrics: Any
    tmp_dir: str
    predict_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(32, thread_name_prefix="yyai-predict")
    )
    manage_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(4, thread_name_prefix="yyai-manage")
    )
    started: float = field(default_factory=time.time)

    @property
    def config(self) -> ServingConfig:
        return self.dataplane.config

    def shutdown(self) -> None:
        """Stop the pools: queued work is dropped, running calls finish on their own."""
        self.predict_pool.shutdown(wait=False, cancel_futures=True)
        self.manage_pool.shutdown(wait=False, cancel_futures=True)


class YyaiHandler(APIHandler):
    """Base handler: JSON replies and errors, 401 without a token, pools, metric labels."""

    # label of this endpoint in the request metrics; None: not counted
    metric_endpoint: str | None = None

    def initialize(self, **kwargs) -> None:
        self.metric_model = ""
        self.metric_version = ""
        self._model_confirmed = False
        self._started = time.perf_counter()

    @property
    def state(self) -> ServerState:
        return self.settings["yyai"]

    @property
    def dataplane(self) -> DataPlane:
        return self.state.dataplane

    @property
    def config(self) -> ServingConfig:
        return self.state.config

    # --- auth ---------------------------------------------------------------------------

    def get_login_url(self) -> str:
        """API handlers never redirect to a login page: no valid token is a 401.

        The message tells a wrong token from a missing one: the fix differs.
        """
        raise web.HTTPError(401, tokenauth.refusal(self.request.headers.get("Authorization"),
                                                   self.get_query_argument("token", None)))

    def check_xsrf_cookie(self) -> None:
        """No token is a 401 before any XSRF question; token-authenticated requests pass.

        With auth disabled (``--no-token``), requests from non-browser clients pass, and
        browser requests must come from the server's own origin.
        """
        # jupyter_server has no public way to ask "has prepare() resolved the user yet?": its
        # own check_xsrf_cookie reads this private attribute for exactly that, and so do we.
        if not hasattr(self, "_jupyter_current_user"):
            return None  # called too early; prepare() calls it again once the user is known
        if self.current_user is None:
            self.get_login_url()
        if self.token_authenticated:
            return None
        if not self.identity_provider.auth_enabled:
            if self._same_origin_or_script():
                return None
            raise web.HTTPError(403, "Cross-origin request refused.")
        return super().check_xsrf_cookie()

    def _same_origin_or_script(self) -> bool:
        site = self.request.headers.get("Sec-Fetch-Site")
        if site in ("same-origin", "none"):
            return True
        origin = self.request.headers.get("Origin")
        if site is None and origin is None:
            return True  # not a browser
        if origin is None:
            return False
        host = self.request.headers.get("Host", "")
        return origin.split("://", 1)[-1].rstrip("/") == host

    def require_auth(self) -> None:
        """Raise 401 unless the request is authenticated (for handlers that may be public)."""
        if not self.current_user:
            self.get_login_url()

    # --- replies and errors ---------------------------------------------------------------

    def reply(self, body: Any, status: int = 200) -> None:
        """Send a JSON reply."""
        self.set_status(status)
        self.finish(json.dumps(body, default=_json_default))

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
        """The one place an error becomes a reply: ``{"error": message, ...}``, never a traceback."""
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, YyaiError):
            body = exc.to_dict()
        elif isinstance(exc, web.HTTPError):
            message = exc.log_message % exc.args if exc.log_message and exc.args else exc.log_message
            body = {"error": message or exc.reason or responses.get(status_code, "Error")}
        elif status_code >= 500:
            body = {"error": INTERNAL_ERROR}
        else:
            body = {"error": responses.get(status_code, "Error")}
        if status_code == 401:
            self.set_header("WWW-Authenticate", tokenauth.WWW_AUTHENTICATE)
        if getattr(exc, "retry_after", None):
            self.set_header("Retry-After", str(exc.retry_after))
        if getattr(self, "_body_pending", False):
            # Refused before the body was read: Tornado will close the connection after this
            # reply, so say so, or a keep-alive client may reuse it and meet a reset.
            self.set_header("Connection", "close")
        self.clear_header("Inference-Header-Content-Length")
        self.finish(json.dumps(body))

    # --- metrics ------------------------------------------------------------------------

    def on_finish(self) -> None:
        if self.metric_endpoint is not None and self.state.metrics is not None:
            known = self._model_confirmed
            try:
                self.state.metrics.observe(
                    self.metric_endpoint,
                    self.metric_model if known else "",
                    self.metric_version if known else "",
                    self.get_status(),
                    time.perf_counter() - self._started,
                )
            except Exception:  # metrics must never break a request
                log.exception("recording metrics failed")

    def label_model(self, name: str | None, version: int | str | None = None) -> None:
        """Name the model/version of this request's metrics.

        The labels are only used once a registry call (``run``) got past the name without
        ModelNotFoundError, so names that clients invent never become label values, and
        the IOLoop never asks the registry (whose lock a slow upload may hold).
        """
        if name:
            self.metric_model = name
            self.metric_version = "" if version is None else str(version)

    # --- off-loop work --------------------------------------------------------------------

    async def run(self, fn: Callable, *args, manage: bool = False, inline: bool = False, **kwargs):
        """Run a blocking call on a bounded pool (``manage`` for loads and uploads).

        ``inline`` runs it right here on the IOLoop instead: only for work that takes
        well under a millisecond, where two thread hops would cost more than the work.
        """
        if inline:
            async def here():
                return fn(*args, **kwargs)

            return await self.model_call(here())
        pool = self.state.manage_pool if manage else self.state.predict_pool
        if kwargs:
            return await self.model_call(IOLoop.current().run_in_executor(pool, lambda: fn(*args, **kwargs)))
        return await self.model_call(IOLoop.current().run_in_executor(pool, fn, *args))

    async def model_call(self, pending):
        """Await a call on the model (an awaitable or a concurrent Future, such as
        ``Registry.submit``'s); once the model is known to exist, metrics label it by name."""
        if isinstance(pending, Future):
            pending = asyncio.wrap_future(pending)
        try:
            result = await pending
        except ModelNotFoundError:
            raise
        except Exception:
            self._model_confirmed = bool(self.metric_model)
            raise
        self._model_confirmed = bool(self.metric_model)
        return result

    def json_body(self, body: bytes, *, required: bool = True) -> Any:
        """Parse a JSON request body: 400 when it is not JSON or nests too deep, 413 over 1 MiB."""
        return restparse.json_body(body, required=required)


@web.stream_request_body
class BodyHandler(YyaiHandler):
    """A handler that reads its request body itself, within a size limit.

    ``spool = True`` writes the body to a temporary file (``self.body_path``) in the
    server's temp folder; otherwise it is kept in memory (``self.body``).
    """

    spool = False
    # Set again in prepare(). A request refused before prepare() (a 405 for a method the handler
    # lacks) finishes cleanly, and its reply says the connection closes: the body was never read.
    _spool_file = None
    body_path: str | None = None
    _body_pending = True

    def body_limit(self) -> int:
        return self.config.max_archive_bytes if self.spool else self.config.max_body_bytes

    async def prepare(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._spool_file = None
        self._spool_error: str | None = None
        self.body_path: str | None = None
        self._body_pending = True  # a refusal now leaves the body unread: see write_error
        await super().prepare()
        if self._finished:  # Tornado has no public "finished" flag; prepare() may have answered
            return
        limit = self.body_limit()
        drain_cap = limit + min(limit, 64 * MiB)
        declared = self.request.headers.get("Content-Length")
        if declared is not None:
            try:
                declared_n = int(declared)
            except ValueError:
                raise InvalidInputError("Content-Length is not a number.") from None
            if declared_n > drain_cap:
                raise self._too_large_error(declared_n)
            if declared_n > limit:
                self._too_large = True
        self.request.connection.set_max_body_size(drain_cap)
        if self.spool and not self._too_large and self.request.method in ("POST", "PUT"):
            fd, self.body_path = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.state.tmp_dir)
            self._spool_file = os.fdopen(fd, "wb")
        self._body_pending = False  # from here on Tornado reads the whole body before the method runs

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._too_large:
            return
        if self._size > self.body_limit():
            self._too_large = True
            self._chunks.clear()
            self._discard_spool()
            return
        if self._spool_file is not None:
            try:
                self._spool_file.write(chunk)
            except OSError as exc:  # the temp folder is full: a 507 once the body is read
                self._spool_failed(exc)
        elif self._spool_error is None:
            self._chunks.append(chunk)

    def _too_large_error(self, size: int) -> PayloadTooLargeError:
        return restparse.too_large("archive" if self.spool else "request body", size, self.body_limit())

    @property
    def body(self) -> bytes:
        """The whole request body (413 when it went over the limit)."""
        if self._too_large:
            raise self._too_large_error(self._size)
        return b"".join(self._chunks)

    def spooled_body(self) -> str:
        """The path of the spooled body, closed and complete (413 when over the limit)."""
        if self._spool_error is None and self._spool_file is not None:
            try:
                self._spool_file.close()
            except OSError as exc:
                self._spool_failed(exc)
            self._spool_file = None
        if self._spool_error is not None:
            raise StoreWriteError(
                f"The upload could not be saved to a temporary file ({self._spool_error}); nothing was changed."
            )
        if self._too_large or self.body_path is None:
            raise self._too_large_error(self._size)
        return self.body_path

    def _spool_failed(self, exc: OSError) -> None:
        self._spool_error = exc.strerror or str(exc)
        self._discard_spool()

    def _discard_spool(self) -> None:
        if self._spool_file is not None:
            try:
                self._spool_file.close()
            except OSError:  # flushing into a full disk: the file goes anyway
                pass
            self._spool_file = None
        if self.body_path is not None:
            try:
                os.unlink(self.body_path)
            except FileNotFoundError:
                pass
            self.body_path = None

    def on_finish(self) -> None:
        self._discard_spool()
        super().on_finish()

    def on_connection_close(self) -> None:
        self._discard_spool()
        super().on_connection_close()

    def content_type(self) -> str:
        """The request's media type, lower case, without parameters."""
        return self.request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


class NotFoundHandler(YyaiHandler):
    """JSON 404 for any path under the REST prefixes that no route matches."""

    def _missing(self, *args, **kwargs):
        raise web.HTTPError(404, f"No such endpoint: {self.request.method} {self.request.path}. See /openapi.json.")

    @web.authenticated
    def get(self, *args, **kwargs):
        self._missing()

    post = put = delete = patch = head = get


def public_if(flag_name: str):
    """Mark a GET as reachable without a token when ``ServingConfig.<flag_name>`` is set."""

    def decorate(method):
        @allow_unauthenticated
        def wrapper(self, *args, **kwargs):
            if not getattr(self.config, flag_name):
                self.require_auth()
            return method(self, *args, **kwargs)

        wrapper.__name__ = method.__name__
        wrapper.__doc__ = method.__doc__
        return wrapper

    return decorate


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")

