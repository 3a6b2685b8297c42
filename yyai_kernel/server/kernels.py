"""The dashboard kernels' manager: Voila's kernel manager plus the server's URL and token.

The dashboard kernel is thin: it reaches the registry over the REST API on loopback
(``yyai_kernel.client.YyaiClient()``), so it needs the server's URL and token. Voila
already hands the kernel its environment (``VOILA_APP_PORT``, ``VOILA_BASE_URL``, ...);
this manager adds ``YYAI_URL`` and ``YYAI_TOKEN`` to exactly that environment, and to
no other process's.

Kernels are preheated (``VoilaConfiguration.preheat_kernel``, set by ``YyaiServer``): Voila
wraps this class so that a pool of one kernel has already run the dashboard notebook
when a visitor arrives, and the page needs no kernel start and no notebook run. Voila
queues the pooled kernel's start when it builds the manager, before the server knows its
URL, so every start here waits for :meth:`serve`: the server calls it once ``YYAI_URL``
answers (at once when it listens alone; for ``--workers`` only worker 0, which serves the
dashboard, and only once it has joined the shared port). Other processes never start one.
The pooled dashboard sees ``VOILA_PREHEAT`` and refreshes nothing until the visitor's
browser shows it. Pooled kernels are never culled (Voila's rule); a used one is replaced a
second after its visit.
"""

from __future__ import annotations

import asyncio
import os

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from traitlets import Dict


class YyaiKernelManager(AsyncMappingKernelManager):
    """Starts kernels, once the server serves (:meth:`serve`), with ``extra_env`` added."""

    extra_env = Dict({}, help="Variables added to every kernel's environment.")

    def __init__(self, **kwargs):
        self._serving = asyncio.Event()  # before Voila's subclass queues its pooled kernel
        self._closing = False
        super().__init__(**kwargs)

    def serve(self, extra_env: dict) -> None:
        """The server answers at ``extra_env["YYAI_URL"]``: kernels may start, with these variables."""
        self.extra_env = extra_env
        self._serving.set()

    async def start_kernel(self, *, kernel_name=None, **kwargs):  # type: ignore[override]
        await self._serving.wait()
        if self._closing:
            raise RuntimeError("The server is stopping; no kernel starts.")
        env = kwargs.get("env")
        kwargs["env"] = {**(env if env is not None else os.environ), **self.extra_env}
        return await super().start_kernel(kernel_name=kernel_name, **kwargs)

    async def shutdown_all(self, now: bool = False) -> None:
        self._closing = True  # a start still waiting for serve() gives up (Voila awaits its pool)
        self._serving.set()
        await super().shutdown_all(now=now)
