"""How ``yyai serve`` stops: SIGTERM or SIGINT drains, a second one stops at once.

:class:`GracefulStop` is a part of :class:`~yyai_kernel.server.app.YyaiServer` (``stopper``):
on the first signal it stops listening (REST and gRPC), lets the requests in flight finish
(up to ``drain_timeout``), shuts the dashboard kernels down and stops the loop;
``YyaiServer.stop`` then closes the planes and removes the temporary folders. Everything
runs on the server's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from jupyter_core.utils import ensure_async
from tornado.ioloop import IOLoop


class GracefulStop:
    """The signal handling and draining of one server (see the module docstring)."""

    def __init__(self, server):
        self.server = server
        self.stopping = False

    def on_signal(self, sig) -> None:
        server = self.server
        if self.stopping:
            server.log.warning("Second %s: stopping now.", signal.Signals(sig).name)
            server.ioloop.stop()
            return
        self.stopping = True
        server.log.info("Received %s: shutting down.", signal.Signals(sig).name)
        server.ioloop.add_callback(self._drain)

    async def _drain(self) -> None:
        """Stop listening, let the requests in flight finish (``drain_timeout``), then stop."""
        server = self.server
        for http_server in server.http_servers:
            http_server.stop()
        if server.grpc_server is not None:
            await server.grpc_server.stop(grace=5)
        deadline = IOLoop.current().time() + server.drain_timeout
        if server.rest_api is not None:
            while server.rest_api.in_flight and IOLoop.current().time() < deadline:  # noqa: ASYNC110 - a counter
                await asyncio.sleep(0.05)
        rest_port = server.worker.rest_port if server.worker is not None else None
        if rest_port is not None:  # uvicorn's connections: the replies being written, then closed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(rest_port.closed(), max(0.1, deadline - IOLoop.current().time()))
        try:
            await asyncio.wait_for(ensure_async(server.kernel_manager.shutdown_all()), timeout=20)
        except Exception as error:  # noqa: BLE001 - shut-down goes on; the failure is logged
            server.log.warning("Kernel shut-down: %s", error)
        server.ioloop.stop()
