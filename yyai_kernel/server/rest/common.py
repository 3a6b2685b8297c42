"""What every yyai REST handler shares, whatever it derives from: replies, errors, bodies, metrics.

Two kinds of handler serve the REST API. Most derive from jupyter_server's ``APIHandler``
(``base.py``): they get its identity provider, XSRF and origin checks, which browsers need.
The two inference routes are plain Tornado handlers (``lean.py``): a token API needs none
of that per-request machinery. Both kinds mix in the classes here, so that the error
mapping, the body limits and the metrics exist once:

* :func:`error_body` and :class:`ErrorReplies`: the one place an error becomes a reply.
  A :class:`~yyai_kernel.errors.YyaiError` answers with its own ``.status`` and
  ``to_dict()``; a ``tornado.web.HTTPError`` with its status and message; anything else
  with a bare 500 (the traceback goes to the server log, never to the client).
* :class:`BodyReader`: bodies are streamed (``@stream_request_body``) so the size limit is
  checked on the declared ``Content-Length`` before any byte is read, and counted while
  reading chunked bodies. An oversized body is drained (up to a cap) rather than cut off,
  so clients read a clean 413 instead of a reset connection. Archives spool to a
  temporary file outside the store; everything else is kept in memory.
* :class:`Metered`: request metrics, JSON replies (orjson, encoded once) and off-loop
  work: blocking calls run on bounded pools (``run``) and a batched model call is a
  Future the IOLoop awaits (``model_call``), so the loop never waits on TensorFlow.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import responses
from typing import Any, Callable

import numpy as np
import orjson
from tornado import web
from tornado.ioloop import IOLoop

from yyai_kernel.config import MiB, ServingConfig
from yyai_kernel.errors import (
    INTERNAL_ERROR,
    InvalidInputError,
    ModelNotFoundError,
    PayloadTooLargeError,
    StoreWriteError,
    YyaiError,
)
from yyai_kernel.plane.dataplane import DataPlane
from yyai_kernel.protocol import restparse, tokenauth

log = logging.getLogger("yyai.server")

JSON_TYPE = "application/json"
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


@dataclass
class ServerState:
    """What the handlers share: the data plane, the serving config, the pools and the metrics.

    Lives in the Tornado settings under ``"yyai"``. ``worker`` is this process's worker
    number (0 when it serves alone).
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
    worker: int = 0
    in_flight: int = 0  # REST requests begun and not finished (IOLoop thread only): drained on SIGTERM

    @property
    def config(self) -> ServingConfig:
        return self.dataplane.config

    def shutdown(self) -> None:
        """Stop the pools: queued work is dropped, running calls finish on their own."""
        self.predict_pool.shutdown(wait=False, cancel_futures=True)
        self.manage_pool.shutdown(wait=False, cancel_futures=True)


def dumps(body: Any) -> bytes:
    """A reply body as JSON bytes: numpy arrays and scalars, sets and paths included."""
    return orjson.dumps(body, default=_json_default, option=_DUMPS_OPTIONS)


def _json_default(value):
    if isinstance(value, (np.ndarray, np.generic)):  # what orjson's numpy option leaves (non-contiguous)
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# --- errors ------------------------------------------------------------------------------


def error_body(status_code: int, exc: BaseException | None) -> dict:
    """The JSON body of an error reply: ``{"error": message, ...}``, never a traceback."""
    if isinstance(exc, YyaiError):
        return exc.to_dict()
    if isinstance(exc, web.HTTPError):
        message = exc.log_message % exc.args if exc.log_message and exc.args else exc.log_message
        return {"error": message or exc.reason or responses.get(status_code, "Error")}
    if status_code >= 500:
        return {"error": INTERNAL_ERROR}
    return {"error": responses.get(status_code, "Error")}


class ErrorReplies:
    """Mixed into a ``RequestHandler``: every error is a JSON reply with the right status."""

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
        """The one place an error becomes a reply (see :func:`error_body`), with its headers."""
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if status_code == 401:
            self.set_header("WWW-Authenticate", tokenauth.WWW_AUTHENTICATE)
        if getattr(exc, "retry_after", None):
            self.set_header("Retry-After", str(exc.retry_after))
        if getattr(self, "_body_pending", False):
            # Refused before the body was read: Tornado will close the connection after this
            # reply, so say so, or a keep-alive client may reuse it and meet a reset.
            self.set_header("Connection", "close")
        self.clear_header("Inference-Header-Content-Length")
        self.set_header("Content-Type", JSON_TYPE)
        self.finish(dumps(error_body(status_code, exc)))


def unauthorized(request) -> web.HTTPError:
    """The 401 for a request without a valid token; the message tells a wrong token from none."""
    query = request.query_arguments.get("token")
    return web.HTTPError(401, tokenauth.refusal(request.headers.get("Authorization"), query[-1].decode("utf-8", "replace") if query else None))


def same_origin_or_script(request) -> bool:
    """With auth off: scripts (no browser headers) and same-origin browser requests pass."""
    site = request.headers.get("Sec-Fetch-Site")
    if site in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if site is None and origin is None:
        return True  # not a browser
    if origin is None:
        return False
    host = request.headers.get("Host", "")
    return origin.split("://", 1)[-1].rstrip("/") == host


_HOSTS_SEEN: dict[tuple[str, tuple], bool] = {}


def host_allowed(request, settings: dict) -> bool:
    """The DNS-rebinding check: unless remote access is allowed, the Host must be loopback.

    The same rule as jupyter_server's ``check_host`` (a loopback address or one of
    ``local_hostnames``), with the answer remembered per Host value.
    """
    if settings.get("allow_remote_access", False):
        return True
    names = tuple(settings.get("local_hostnames", ["localhost"]))
    key = (request.host, names)
    allowed = _HOSTS_SEEN.get(key)
    if allowed is None:
        host = request.host_name.strip("[]")
        try:
            allowed = ipaddress.ip_address(host).is_loopback
        except ValueError:
            allowed = host in names
        if len(_HOSTS_SEEN) < 256:  # a bounded memo: clients choose the Host header
            _HOSTS_SEEN[key] = allowed
        if not allowed:
            log.warning("Blocking request with non-local 'Host' %s; set allow_remote_access to allow it.",
                        request.host)
    return allowed


# --- metrics, replies and off-loop work ------------------------------------------------------


class Metered:
    """Mixed into a ``RequestHandler``: metric labels, JSON replies, pools and model calls."""

    # label of this endpoint in the request metrics; None: not counted
    metric_endpoint: str | None = None

    def initialize(self, **kwargs) -> None:
        self.metric_model = ""
        self.metric_version = ""
        self._model_confirmed = False
        self._started = time.perf_counter()
        self.state.in_flight += 1
        self._in_flight = True

    def _done(self) -> None:
        if self._in_flight:
            self._in_flight = False
            self.state.in_flight -= 1

    def on_connection_close(self) -> None:
        self._done()
        super().on_connection_close()

    @property
    def state(self) -> ServerState:
        return self.settings["yyai"]

    @property
    def dataplane(self) -> DataPlane:
        return self.state.dataplane

    @property
    def config(self) -> ServingConfig:
        return self.state.config

    def reply(self, body: Any, status: int = 200) -> None:
        """Send a JSON reply."""
        self.set_status(status)
        self.set_header("Content-Type", JSON_TYPE)
        self.finish(dumps(body))

    def reply_managed(self, managed, status: int = 200) -> None:
        """Reply with a management call's result; headers say which workers apply it.

        ``X-Yyai-Applied: 2/2`` counts the workers that serve the new state;
        ``X-Yyai-Not-Applied`` names every one that does not, and why.
        """
        report = managed.report
        self.set_header("X-Yyai-Applied", report.summary())
        if report.not_applied():
            self.set_header("X-Yyai-Not-Applied", report.problems())
        result = managed.result
        if isinstance(result, dict):  # a rescan: {name: status or error}
            self.reply({name: r.to_json() for name, r in result.items()}, status)
        else:
            self.reply(result.to_json(), status)

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
        self._done()
        super().on_finish()

    def label_model(self, name: str | None, version: int | str | None = None) -> None:
        """Name the model/version of this request's metrics.

        The labels are only used once a registry call (``run``) got past the name without
        ModelNotFoundError, so names that clients invent never become label values, and
        the IOLoop never asks the registry (whose lock a slow upload may hold).
        """
        if name:
            self.metric_model = name
            self.metric_version = "" if version is None else str(version)

    def confirm_model(self, found: bool = True) -> None:
        """The registry knows the labelled model (a call got past its name): metrics may name it."""
        self._model_confirmed = found and bool(self.metric_model)

    async def run(self, fn: Callable, *args, manage: bool = False, **kwargs):
        """Run a blocking call on a bounded pool (``manage`` for loads and uploads)."""
        pool = self.state.manage_pool if manage else self.state.predict_pool
        if kwargs:
            return await self.model_call(IOLoop.current().run_in_executor(pool, lambda: fn(*args, **kwargs)))
        return await self.model_call(IOLoop.current().run_in_executor(pool, fn, *args))

    async def manage(self, op):
        """Lead a management operation on the manage pool; its ``Managed`` result and report."""
        return await self.run(self.dataplane.manage, op, manage=True)

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
            self.confirm_model()
            raise
        self.confirm_model()
        return result

    def json_body(self, body: bytes, *, required: bool = True) -> Any:
        """Parse a JSON request body: 400 when it is not JSON or nests too deep, 413 over 1 MiB."""
        return restparse.json_body(body, required=required)


# --- bodies --------------------------------------------------------------------------------


class BodyReader:
    """Mixed into a ``@web.stream_request_body`` handler: it reads its body itself, within a limit.

    ``spool = True`` writes the body to a temporary file (``self.body_path``) in the
    server's temp folder; otherwise it is kept in memory (``self.body``). The handler's
    own ``prepare`` (auth) runs first; the limit is checked after it, before any byte is read.
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
        self.body_path = None
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
        """The whole request body (413 when it went over the limit); one chunk is not copied."""
        if self._too_large:
            raise self._too_large_error(self._size)
        if len(self._chunks) == 1:
            return self._chunks[0]
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
