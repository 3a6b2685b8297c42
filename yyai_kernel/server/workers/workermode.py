"""How one front end (worker) of ``yyai serve --workers N`` serves: the shared port and the worker header.

Every front end serves the REST API on the shared port (``SO_REUSEPORT``, joined once it
reached the model host, or after a second). Worker 0 also serves the whole Voila app, dashboard included, on the
dashboard port: a dashboard page and its kernel's websocket must reach the one process
that started the kernel, and ``SO_REUSEPORT`` spreads connections, not pages. So the
shared port serves the REST routes and sends every other path (``/``, ``/voila/...``,
``/login``) to the dashboard port: with uvicorn over the ASGI adapter (:func:`rest_port`,
``restport.py``; the default), or with Tornado (``--YyaiServer.rest_http=tornado``: the
REST handlers plus :class:`DashboardRedirect`).

:func:`worker_header` is a Tornado output transform that adds ``X-Yyai-Worker: <n>`` to every
reply of an application (``restport.SharedPort`` does the same on uvicorn), Voila's pages
included, so that tests and operators can see which worker answered (a single server
answers as worker 0).

:class:`WorkerRole` is a part of :class:`~yyai_kernel.server.app.YyaiServer` (``worker``) when
it runs as one of those front ends: it takes the supervisor's settings, holds the link to
the supervisor, and joins the shared ports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import signal

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from yyai_kernel.server.rest.handlers import REST_PREFIXES

WORKER_HEADER = "X-Yyai-Worker"


def worker_header(worker: int):
    """An output transform class for ``Application.add_transform``: ``X-Yyai-Worker: <worker>``."""
    value = str(worker)

    class WorkerHeader(web.OutputTransform):
        def transform_first_chunk(self, status_code, headers, chunk, finishing):
            headers[WORKER_HEADER] = value
            return status_code, headers, chunk

    return WorkerHeader


class DashboardRedirect(web.RequestHandler):
    """On the shared port: the dashboard lives on worker 0's port; send the browser there."""

    def initialize(self, dashboard_port: int) -> None:
        self.dashboard_port = dashboard_port

    def _redirect(self, *args) -> None:
        host = self.request.host_name
        host = f"[{host}]" if ":" in host else host
        # 307 keeps the method and body (a login form's POST); a GET gets the usual 302
        self.redirect(f"{self.request.protocol}://{host}:{self.dashboard_port}{self.request.uri}",
                      status=302 if self.request.method in ("GET", "HEAD") else 307)

    get = head = post = put = delete = patch = _redirect


def shared_application(settings: dict, rest_handlers: list, dashboard_port: int, worker: int) -> web.Application:
    """The application of the shared port: the REST routes, then the redirect to the dashboard."""
    app = web.Application(**settings)
    app.add_handlers(".*$", [*rest_handlers, (r"/.*", DashboardRedirect, {"dashboard_port": dashboard_port})])
    app.add_transform(worker_header(worker))
    return app


def serve_on(app: web.Application, host: str, port: int, max_body_bytes: int) -> HTTPServer:
    """Listen on ``port`` beside the other workers (``SO_REUSEPORT``)."""
    server = HTTPServer(app, max_body_size=max_body_bytes, xheaders=False)
    server.add_sockets(bind_sockets(port, host, reuse_port=True))
    return server


def rest_paths(endpoints, base: str) -> re.Pattern[str]:
    """Every path the REST app answers under ``base``: the table's and, for a JSON 404, the REST prefixes."""
    patterns = [re.sub(r"\(\?P<\w+>", "(?:", e.pattern()) for e in endpoints]
    return re.compile(re.escape(base.rstrip("/")) + "(?:" + "|".join([*patterns, *REST_PREFIXES]) + ")")


def rest_port(server, spec):
    """The shared port on uvicorn (``restport.py``): the ASGI adapter of the table behind the token
    and the Host check, the worker header and the redirect to the dashboard port."""
    from yyai_kernel.api.asgi import make_app
    from yyai_kernel.protocol import tokenauth
    from yyai_kernel.server.workers.restport import RestPort, SharedPort

    settings = server.app.settings
    provider = server.identity_provider
    # with auth on, a token nobody sent (a password-only set-up): a request without the token is refused
    token = (provider.token or secrets.token_hex(32)) if provider.auth_enabled else None
    hosts = None if settings.get("allow_remote_access") else tokenauth.host_check(settings["local_hostnames"])
    base = server.server_url or server.base_url
    api = server.rest_api
    app = SharedPort(make_app(api, token, host_allowed=hosts), rest_paths(api.endpoints, base),
                     worker=(WORKER_HEADER, str(spec.index)), dashboard_port=spec.dashboard_port, log=server.log,
                     root_path=base.rstrip("/"))
    return RestPort(app, bind_sockets(spec.port, server.ip, reuse_port=True), drain_timeout=server.drain_timeout)


class _WorkerName(logging.Filter):
    """Adds `` w<n>`` to the logger name of every record a worker logs, to tell workers apart."""

    def __init__(self, worker: int):
        super().__init__()
        self.suffix = f" w{worker}"

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.endswith(self.suffix):
            record.name += self.suffix
        return True


def tag_log(log: logging.Logger, worker: int) -> None:
    """Name this worker in every line its log handlers write."""
    for handler in log.handlers:
        handler.addFilter(_WorkerName(worker))


class WorkerRole:
    """One server as a worker of ``--workers N``: the supervisor's settings, the link, the shared ports."""

    def __init__(self, server, spec) -> None:
        """Take the supervisor's settings: the shared token, temp folders inside its own, the link."""
        from yyai_kernel.server.workers.workerlink import WorkerLink

        self.server, self.spec = server, spec
        server.token = spec.token
        server.port = spec.port
        server.connection_dir_root = spec.tmp_root  # kernels' connection files: removed with the supervisor's folder
        server.tmp_dir = os.path.join(spec.tmp_root, f"worker-{spec.index}-{os.getpid()}")
        os.mkdir(server.tmp_dir)
        tag_log(server.log, spec.index)
        self.link = WorkerLink(spec, on_lost=self._supervisor_lost)
        self.rest_port = None  # the uvicorn server of the shared port, once joined (restport.py)

    def _supervisor_lost(self) -> None:
        server = self.server
        if not server.stopper.stopping and getattr(server, "ioloop", None) is not None:
            server.log.warning("The supervisor is gone; stopping.")
            server.ioloop.add_callback(server.stopper.on_signal, signal.SIGTERM)

    async def join_shared_port(self) -> None:
        """Start serving on the ports this worker shares with the others (REST, and gRPC if asked)."""
        server, spec = self.server, self.spec
        if server.rest_http == "tornado":
            app = shared_application(dict(server.app.settings), server.rest_handlers(), spec.dashboard_port,
                                     spec.index)
            server.http_servers.append(serve_on(app, server.ip, spec.port, server.max_body_bytes))
        else:
            self.rest_port = rest_port(server, spec)
            server.http_servers.append(self.rest_port)
        if spec.grpc_port is not None:
            server.grpc_server = await server._start_grpc(server.identity_provider.token, spec.grpc_port,
                                                          reuse_port=True)
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        server.log.info("Worker %d serves on port %d (%s, %s)%s", spec.index, spec.port, server.rest_http, loop,
                        f" (gRPC {spec.grpc_port})" if spec.grpc_port is not None else "")
        if spec.index == 0:  # the dashboard's kernels call the shared port
            server._serve_kernels()
