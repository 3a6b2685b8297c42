"""The dashboard kernels' manager: Voila's kernel manager plus the server's URL and token,
a kernel's end when its page closes, and a quiet log.

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
The pooled kernel then also waits for :meth:`release`, which the server calls once its
models are loaded (the model host's warm set), so that it does not take the cores the
start-up loads need; a visitor who arrives before that does not wait for the models: the
page's request (:meth:`visited`) starts it at once.
The pooled dashboard sees ``VOILA_PREHEAT`` and refreshes nothing until the visitor's
browser shows it. Pooled kernels are never culled (Voila's rule); a used one is replaced a
second after its visit.

**A kernel ends with its page.** jupyter_server culls a kernel only after
``cull_idle_timeout`` seconds without a message from it (every iopub message counts), and
a dashboard whose page closed still refreshes (ipywidgets' view count does not drop when a
tab closes; the dashboard pauses only after ``pause_after``, 15 minutes), so on a server
with traffic each refresh changed the status table and kept the kernel "active". The one
sure sign that a page closed is its kernel websocket closing: jupyter_server counts each
kernel's connections (``notify_connect``/``notify_disconnect``). This manager notes when a
kernel's count falls to zero and shuts the kernel down ``closed_page_grace`` seconds later
unless a websocket reconnected meanwhile (a reload or a brief network loss), checked every
:data:`CHECK_EVERY_S` seconds at most: with the default grace (:data:`CLOSED_PAGE_GRACE_S`)
a kernel ends within 40 s of its page. A kernel whose page never connected (a visit by
curl, a tab that crashed before its websocket opened) still goes by the idle culler.

**A quiet log.** Two lines per visit used to alarm newcomers. "Notebook dashboard.ipynb is
not trusted": trust decides whether a notebook's *stored* outputs show, and Voila shows
only what it runs (it marks every output trusted), so the bundled notebook is signed at
start in an in-memory notary (``kernel_defaults`` sets ``NotebookNotary``; nothing is
written to the user's Jupyter folder). "Kernel is running over TCP without encryption":
kernels bind to 127.0.0.1 and, where the kernel supports it (ipykernel 7 declares it),
their ZeroMQ channels are CurveZMQ-encrypted (``KernelManager.transport_encryption``), so
ipykernel has nothing to warn about; the first kernel's start says once how kernels
listen.

Locking: none; every method runs on the server's event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado.ioloop import PeriodicCallback
from traitlets import Dict, Float

CLOSED_PAGE_GRACE_S = 30.0  # how long a kernel outlives its page by default (ServerSettings.kernel_closed_grace)
CHECK_EVERY_S = 10.0  # the longest wait between two checks for kernels of closed pages

class YyaiKernelManager(AsyncMappingKernelManager):
    """Starts kernels, once the server serves (:meth:`serve`), with ``extra_env`` added;
    shuts a kernel down once its page has been closed for ``closed_page_grace`` seconds."""

    extra_env = Dict({}, help="Variables added to every kernel's environment.")
    closed_page_grace = Float(CLOSED_PAGE_GRACE_S, config=True, help=(
        "Seconds a dashboard kernel outlives its page (its websocket closed) before it is shut down; "
        "a page that reconnects meanwhile keeps it."))

    def __init__(self, **kwargs):
        self._serving = asyncio.Event()  # before Voila's subclass queues its pooled kernel
        self._released = asyncio.Event()  # the models are loaded, or a visitor waits: kernels may start now
        self._closing = False
        self._closed_at: dict[str, float] = {}  # kernel id -> when its last websocket closed (monotonic)
        self._checker: PeriodicCallback | None = None
        self._announced = False
        super().__init__(**kwargs)
        self._trust_bundled_notebook()  # before the pooled kernel's renderer first reads it

    def serve(self, extra_env: dict) -> None:
        """The server answers at ``extra_env["YYAI_URL"]``: kernels may start, with these variables."""
        self.extra_env = extra_env
        self._serving.set()
        if self._checker is None and self.closed_page_grace >= 0:
            every = min(max(self.closed_page_grace / 3, 0.5), CHECK_EVERY_S)
            self._checker = PeriodicCallback(self.shut_down_closed_pages, 1000 * every)
            self._checker.start()

    def release(self) -> None:
        """The server's start-up loads are done: the preheated kernel may start."""
        self._released.set()

    def visited(self) -> None:
        """A visitor asked for the dashboard: start its kernel now, models loaded or not."""
        self._released.set()

    async def start_kernel(self, *, kernel_name=None, **kwargs):  # type: ignore[override]
        await self._serving.wait()
        await self._released.wait()
        if self._closing:
            raise RuntimeError("The server is stopping; no kernel starts.")
        env = kwargs.get("env")
        kwargs["env"] = {**(env if env is not None else os.environ), **self.extra_env}
        kernel_id = await super().start_kernel(kernel_name=kernel_name, **kwargs)
        if not self._announced:
            self._announced = True
            self._announce(kernel_id)
        return kernel_id

    def _announce(self, kernel_id: str) -> None:
        """Say once how dashboard kernels listen (ipykernel would warn on every start otherwise)."""
        kernel = self._kernels.get(kernel_id)
        if kernel is None:
            return
        encrypted = getattr(kernel, "curve_publickey", None) is not None
        channels = ("CurveZMQ-encrypted" if encrypted
                    else "unencrypted but signed (only processes on this machine can reach them)")
        self.log.info("Dashboard kernels: one per page visit, listening on %s %s only, %s; "
                      "a kernel stops %g s after its page closes.",
                      kernel.transport, kernel.ip, channels, self.closed_page_grace)

    # --- a kernel ends with its page ---------------------------------------------------------

    def notify_connect(self, kernel_id):
        super().notify_connect(kernel_id)
        self._closed_at.pop(kernel_id, None)

    def notify_disconnect(self, kernel_id):
        super().notify_disconnect(kernel_id)
        if self._kernel_connections.get(kernel_id) == 0:
            self._closed_at[kernel_id] = time.monotonic()

    async def shut_down_closed_pages(self) -> None:
        """Shut down every kernel whose page has been closed for ``closed_page_grace`` seconds."""
        now = time.monotonic()
        for kernel_id, closed in list(self._closed_at.items()):
            if kernel_id not in self or self._kernel_connections.get(kernel_id):
                self._closed_at.pop(kernel_id, None)  # gone already, or a page reconnected
            elif now - closed >= self.closed_page_grace:
                self._closed_at.pop(kernel_id, None)
                self.log.info("Shutting down dashboard kernel %s: its page closed %.0f s ago.", kernel_id, now - closed)
                try:
                    await self.shutdown_kernel(kernel_id)
                except Exception as error:  # noqa: BLE001 - one kernel's failure must not stop the others
                    self.log.warning("Shutting down kernel %s failed: %s", kernel_id, error)

    async def shutdown_all(self, now: bool = False) -> None:
        self._closing = True  # a start still waiting for serve() or release() gives up (Voila awaits its pool)
        self._serving.set()
        self._released.set()  # a worker that preheats no kernel never released its pool's start
        if self._checker is not None:
            self._checker.stop()
        await super().shutdown_all(now=now)

    # --- a quiet log -------------------------------------------------------------------------

    def _trust_bundled_notebook(self) -> None:
        """Sign yyai's own notebook in the contents manager's notary (Voila reads it on every visit)."""
        app = self.parent
        path = getattr(app, "notebook_path", None)
        contents = getattr(app, "contents_manager", None)
        if not path or contents is None or "notebook_path" not in app.traits():
            return
        if Path(path).resolve() != Path(app.trait_defaults("notebook_path")).resolve():
            return  # a notebook of the user's own (--notebook) keeps the trust it has
        import nbformat

        contents.notary.sign(nbformat.read(path, as_version=4))
