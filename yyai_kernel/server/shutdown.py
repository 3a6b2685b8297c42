"""How ``yyai serve`` stops: SIGTERM or SIGINT drains, a second one stops at once.

:class:`GracefulStop` is a part of :class:`~yyai_kernel.server.app.YyaiServer`: on the first
signal it stops listening (REST and gRPC), lets the requests in flight finish (up to
``drain_timeout``), shuts the dashboard kernels down and stops the loop; ``YyaiServer.stop``
then closes the data plane and removes the temporary folders.
"""

from __future__ import annotations

import asyncio
import signal

from jupyter_core.utils import ensure_async
from tornado.ioloop import IOLoop


class GracefulStop:
    """The signal handling and draining of YyaiServer (see the module docstring)."""

    def _on_signal(self, sig) -> None:
        if self._stopping:
            self.log.warning("Second %s: stopping now.", signal.Signals(sig).name)
            self.ioloop.stop()
            return
        self._stopping = True
        self.log.info("Received %s: shutting down.", signal.Signals(sig).name)
        self.ioloop.add_callback(self._graceful_stop)

    async def _graceful_stop(self) -> None:
        """Stop listening, let the requests in flight finish (``drain_timeout``), then stop."""
        for server in self.http_servers:
            server.stop()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=5)
        if self.state is not None:
            deadline = IOLoop.current().time() + self.drain_timeout
            while self.state.in_flight and IOLoop.current().time() < deadline:
                await asyncio.sleep(0.05)
        try:
            await asyncio.wait_for(ensure_async(self.kernel_manager.shutdown_all()), timeout=20)
        except Exception as error:
            self.log.warning("Kernel shut-down: %s", error)
        self.ioloop.stop()
