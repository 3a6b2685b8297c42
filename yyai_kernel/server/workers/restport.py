"""The shared port of a ``--workers`` front end: the REST API on uvicorn, on the front end's loop.

A front end holds no model, so its REST work is HTTP parsing, routing, the token and the
JSON of small tensors. Tornado parses HTTP/1.1 in Python; uvicorn with ``httptools`` parses
it in C (llhttp), which is most of the difference per request (``bench/frontends.py``,
``bench/RESULTS.md``). So the shared port serves the ASGI adapter of the endpoint table
(``api/asgi.py``, the one the Ray replicas serve) with uvicorn, started on the pre-bound
``SO_REUSEPORT`` socket on the loop the front end already runs (Tornado's, for worker 0's
dashboard port, its kernels and gRPC). Nothing else runs another loop or thread for it.

:class:`SharedPort` is the ASGI app of that port, around the REST app: the
``X-Yyai-Worker`` header on every reply, the redirect of any non-REST path (``/``,
``/voila/...``, ``/login``) to worker 0's dashboard port (302, or 307 for a method with a
body), and the access log of ``server/app.py``'s ``access_log`` (successes only at debug
level, a 503 as one info line). :class:`RestPort` is the uvicorn server: it never installs
signal handlers (the server's :class:`~yyai_kernel.server.shutdown.GracefulStop` owns
SIGTERM); :meth:`RestPort.stop` stops accepting, closes idle connections and lets the
requests in flight finish (``drain_timeout``).

Everything runs on the event loop; nothing here locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import Iterator
from urllib.parse import quote

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from yyai_kernel.protocol import tokenauth

KEEP_ALIVE_S = 600  # an idle keep-alive connection is closed after this long (clients pool theirs)
SCRUBBED = re.compile(r"([^&=]*(?:token|auth|key|code|state|xsrf)[^&=]*)=[^&]*", re.IGNORECASE)


class SharedPort:
    """The ASGI app of the shared port: the REST app for REST paths, the redirect for the rest."""

    def __init__(self, rest: ASGIApp, rest_paths: re.Pattern[str], *, worker: tuple[str, str], dashboard_port: int,
                 log: logging.Logger, root_path: str = ""):
        self.rest, self.rest_paths = rest, rest_paths
        self.worker = (worker[0].encode(), worker[1].encode())  # the header that names this worker
        self.dashboard_port = dashboard_port
        self.log, self.root_path = log, root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan, no websockets on this port
            return
        started = time.perf_counter()
        status = 0

        async def named(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), self.worker]
            await send(message)

        raw = scope.get("raw_path")
        if self.rest_paths.fullmatch(raw.decode("latin-1") if raw else scope["path"]):
            if self.root_path:
                scope["root_path"] = self.root_path
            await self.rest(scope, receive, named)
        else:
            await self._redirect(scope, named)
        self._log(scope, status, started)

    async def _redirect(self, scope: Scope, send: Send) -> None:
        """To the same path and query on worker 0's dashboard port."""
        host = b""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
                break
        name = tokenauth.host_name(host.decode("latin-1")) or "127.0.0.1"
        name = f"[{name}]" if ":" in name else name
        raw = scope.get("raw_path")
        target = raw.decode("latin-1") if raw else quote(scope["path"])
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        location = f"{scope.get('scheme', 'http')}://{name}:{self.dashboard_port}{target}"
        # 307 keeps the method and body (a login form's POST); a GET gets the usual 302
        await send({"type": "http.response.start", "status": 302 if scope["method"] in ("GET", "HEAD") else 307,
                    "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    def _log(self, scope: Scope, status: int, started: float) -> None:
        """The access log of ``server/app.py``'s ``access_log``: quiet successes, one line a 503."""
        log = self.log
        if status < 300 and not log.isEnabledFor(logging.DEBUG):
            return
        ms = 1000 * (time.perf_counter() - started)
        if status == 503:
            log.info("503 %s %s (%.1f ms): not ready", scope["method"], scope["path"], ms)
            return
        level = (logging.DEBUG if status < 300 or status == 304 else logging.INFO if status < 400
                 else logging.WARNING if status < 500 else logging.ERROR)
        uri = scope["path"]
        if scope.get("query_string"):
            uri += "?" + SCRUBBED.sub(r"\1=[secret]", scope["query_string"].decode("latin-1"))
        client = scope.get("client") or ("?", 0)
        log.log(level, "%d %s %s (@%s) %.2fms", status, scope["method"], uri, client[0], ms)


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the yyai server's own stop owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class RestPort:
    """uvicorn (httptools) serving ``app`` on pre-bound sockets, on the running loop."""

    def __init__(self, app: ASGIApp, sockets: list[socket.socket], *, drain_timeout: float):
        config = uvicorn.Config(app, http="httptools", ws="none", lifespan="off", interface="asgi3",
                                access_log=False, log_config=None, server_header=False, proxy_headers=False,
                                timeout_keep_alive=KEEP_ALIVE_S, timeout_graceful_shutdown=max(1, int(drain_timeout)))
        self._server = _Server(config)
        self._task = asyncio.ensure_future(self._server.serve(sockets=sockets))

    def stop(self) -> None:
        """Stop accepting; close idle connections; requests in flight finish (see :meth:`closed`)."""
        self._server.should_exit = True

    async def closed(self) -> None:
        """Once stopped: until every connection closed (uvicorn waits ``drain_timeout`` at most)."""
        await asyncio.shield(self._task)
