"""ServerSettings: what ``yyai serve`` is told beyond serving limits (store, threads, ports, workers, kernels).

:class:`~yyai_kernel.config.ServingConfig` holds what every serving layer needs (limits,
batching, trust); this class adds what only the server reads. :class:`YyaiServer`
inherits both, so each is set as ``--option``, ``c.YyaiServer.x`` in a config file, or
``c.ServerSettings.x``. Traits only: no behaviour.
"""

from __future__ import annotations

import base64
import os

from jupyter_client.manager import KernelManager
from traitlets import Bool, Enum, Float, Integer, Unicode
from traitlets.config import Config

from yyai_kernel.config import ServingConfig
from yyai_kernel.quiet import VERBOSE_HELP
from yyai_kernel.server import pages
from yyai_kernel.server.kernels import CLOSED_PAGE_GRACE_S

TOKEN_ENV = "YYAI_TOKEN"

# What yyai sets in VoilaConfiguration (the user's config file still wins)
VOILA_CONFIGURATION = {
    "multi_kernel_manager_class": "yyai_kernel.server.kernels.YyaiKernelManager",
    "show_tracebacks": False,
    "file_allowlist": [],
    # a page visit takes a kernel that already ran the notebook (see kernels.py)
    "preheat_kernel": True,
    "default_pool_size": 1,
    **pages.VOILA_CONFIGURATION,
}

HOST_HELP = "The address to listen on: 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)."

# yyai serve's own command-line options, listed first in --help (then Voila's). A (target,
# help) pair gives yyai's own words where the trait's help speaks of Voila or Jupyter.
ALIASES = {
    "store": "YyaiServer.store_dir",
    "host": ("YyaiServer.ip", HOST_HELP),
    "ip": ("YyaiServer.ip", HOST_HELP),
    "port": ("YyaiServer.port", "The port to listen on (0: any free port, printed at start)."),
    "token": "YyaiServer.token",
    "trust": "YyaiServer.trusted",
    "max-batch-size": "YyaiServer.max_batch_size",
    "max-delay-ms": "YyaiServer.max_delay_ms",
    "max-body-bytes": "YyaiServer.max_body_bytes",
    "max-archive-bytes": "YyaiServer.max_archive_bytes",
    "max-image-pixels": "YyaiServer.max_image_pixels",
    "grpc-port": "YyaiServer.grpc_port",
    "workers": "YyaiServer.workers",
    "memory-budget": "YyaiServer.memory_budget",
    "max-loaded": "YyaiServer.max_loaded",
    "warm": "YyaiServer.warm",
    "cold-start-timeout": "YyaiServer.cold_start_timeout",
    "devices": "YyaiServer.devices",
    "gpu-memory-fraction": "YyaiServer.gpu_memory_fraction",
    "dashboard-port": "YyaiServer.dashboard_port",
    "dashboard-api": "YyaiServer.dashboard_api",
    "notebook": ("YyaiServer.notebook_path", "The dashboard notebook to serve (default: yyai's own)."),
    "config": "YyaiServer.config_file",
    # Voila's settings worth a line in --help, in yyai's words (see PASSED_THROUGH)
    "base_url": ("Voila.base_url", "The path every page and route is served under, behind a reverse proxy "
                 "(such as /yyai/)."),
    "theme": ("VoilaConfiguration.theme", "The dashboard's colours: light or dark."),
    "pool_size": ("VoilaConfiguration.default_pool_size",
                  "Dashboard kernels started ahead of page visits, so that a page opens at once."),
}
# The Voila and Jupyter options `yyai serve --help` lists; the others still work, and
# --help-all lists every setting in Voila's and Jupyter's own words.
PASSED_THROUGH = ("base_url", "theme", "pool_size")
FLAGS = {
    "no-token": ({"YyaiServer": {"token": ""}},
                 "Turn authentication off (anyone who reaches the port can manage models)."),
    "watch": ({"YyaiServer": {"watch": True}}, "Watch the store folder and reload when archives appear or change."),
    "no-auto-promote": ({"YyaiServer": {"auto_promote": False}},
                        "Stage every new version: it serves by its number until promoted (yyai default M V)."),
    "auto-promote": ({"YyaiServer": {"auto_promote": True}},
                     "A new version of a model that is not pinned, labelled or under a traffic policy becomes "
                     "the default at once (the default)."),
    "no-batching": ({"YyaiServer": {"batching": False}}, "Run each request on its own (no dynamic batching)."),
    "batching": ({"YyaiServer": {"batching": True}}, "Batch concurrent requests (the default)."),
    "public-health": ({"YyaiServer": {"public_health": True}},
                      "Answer /v2/health/live and /ready (and gRPC ServerLive, ServerReady) without a token "
                      "(Kubernetes/KServe probes)."),
    "verbose": ({"YyaiServer": {"verbose": True}}, VERBOSE_HELP),
}


class ServerSettings(ServingConfig):
    """The server's own settings (see the module docstring)."""

    # --- what to serve (the serving settings are ServingConfig's traits) ----------------
    store_dir = Unicode("model_archives", config=True, help="The folder of .yyar archives to serve.")
    config_file = Unicode("", config=True, help="A traitlets config file (Python or JSON) to load.")
    predict_threads = Integer(32, config=True, help="Threads that run predictions (bounds concurrent model calls).")
    manage_threads = Integer(4, config=True, help="Threads that run loads, reloads and uploads.")
    grpc_port = Integer(None, allow_none=True, config=True,
                        help="Also serve v2 gRPC on this port of --host (0: any free port). Off by default.")

    # --- worker processes: front ends and the model host (supervisor.py, host/) ------------
    workers = Unicode("1", config=True, help="Worker processes sharing the port (SO_REUSEPORT): a number, "
                      "or 'auto' for one per CPU. With more than one, a supervisor starts and restarts them.")
    dashboard_port = Integer(None, allow_none=True, config=True,
                             help="With --workers N > 1: worker 0's port for the dashboard (default: --port + 1).")
    worker_sync_timeout = Float(10.0, config=True,
                                help="With --workers: seconds a management call waits for every front end to "
                                "confirm the new state before it replies (it names any that did not).")
    drain_timeout = Float(20.0, config=True, help="On SIGTERM, seconds to let requests in flight finish.")
    rest_http = Enum(["uvicorn", "tornado"], "uvicorn", config=True,
                     help="With --workers: the HTTP server of the front ends' shared port: uvicorn (HTTP parsed "
                     "in C, the default) or tornado (as a single process serves; bench/frontends.py compares them).")
    rest_loop = Enum(["asyncio", "uvloop"], "asyncio", config=True,
                     help="With --workers: the event loop of the front ends (uvloop: libuv's; bench/frontends.py "
                     "compares them).")

    # --- the accelerator (runtime/devices.py) --------------------------------------------
    devices = Unicode("", config=True,
                      help="The GPUs to serve on (CUDA_VISIBLE_DEVICES ids: '0,1'), one model host each, every model "
                      "owned by one of them; 'all': each id CUDA_VISIBLE_DEVICES lists. Empty: one host that sees what "
                      "CUDA_VISIBLE_DEVICES shows. Several imply the supervisor (--workers, at least one front end).")

    def device_list(self) -> list[str]:
        """The device ids named, one model host each (``host/placement.py``); ValueError for a bad list."""
        from yyai_kernel.host.placement import device_list

        return device_list(self.devices, os.environ.get("CUDA_VISIBLE_DEVICES"))

    def visible_devices(self) -> str | None:
        """What a single model host's CUDA_VISIBLE_DEVICES is set to (None: left as it is)."""
        value = self.devices.strip()
        return None if value in ("", "all") else value

    gpu_memory_fraction = Float(None, allow_none=True, min=0.01, max=1.0, config=True,
                                help="Share of each GPU's memory TensorFlow may take (default: grow as needed).")

    def device_settings(self):
        """How the model host sets up the GPUs it sees."""
        from yyai_kernel.runtime.devices import DeviceSettings

        return DeviceSettings(self.gpu_memory_fraction)

    def primer_sizes(self) -> list[int]:
        """The batch sizes the primer warms (those a version is warmed with)."""
        from yyai_kernel.runtime.runtime import warmup_batch_sizes

        return warmup_batch_sizes(self.batching_for(None)[0]) if self.batching else [1]

    # --- auth and exposure -------------------------------------------------------------
    allow_remote_access = Bool(
        None, allow_none=True, config=True,
        help="Accept any Host header. Default: only when bound to a non-loopback address "
        "(on loopback, a loopback Host is required, which stops DNS-rebinding attacks).",
    )

    # --- dashboard kernels ---------------------------------------------------------------
    kernel_cull_idle_timeout = Integer(600, config=True, help="Seconds before an idle dashboard kernel is culled "
                                       "(a kernel whose page never connected; see kernel_closed_grace).")
    kernel_cull_interval = Integer(60, config=True, help="Seconds between two checks for idle kernels.")
    kernel_closed_grace = Float(CLOSED_PAGE_GRACE_S, config=True,
                                help="Seconds a dashboard kernel outlives its closed page "
                                "(a reload or a brief network loss reconnects meanwhile).")
    cell_timeout = Integer(120, config=True, help="Seconds a dashboard cell may run (VoilaExecutor.timeout).")
    dashboard_api = Unicode("", config=True,
                            help="The REST API the dashboard pages call instead of this server's own, such as "
                            "a `yyai ray` endpoint (http://head:8000); its token is dashboard_api_token.")
    dashboard_api_token = Unicode("", config=True,
                                  help="The token of --dashboard-api (default: this server's token).").tag(
        help_default="this server's token")
    verbose = Bool(False, config=True, help=VERBOSE_HELP)


def kernel_defaults(settings: ServerSettings) -> Config:
    """The dashboard kernels' settings from yyai's, under what the user set in those sections
    (a config file or ``--VoilaExecutor.timeout=...`` wins): the cell timeout; idle culling,
    and the end of a kernel whose page closed (``server/kernels.py``); kernels bound to
    loopback with CurveZMQ-encrypted channels where the kernel supports it (where
    jupyter_client offers it); and an in-memory notary, with a key of this process, in which
    the server signs its bundled notebook (nothing written to the user's Jupyter folder)."""
    kernel_manager = {"ip": "127.0.0.1"}
    if "transport_encryption" in KernelManager.class_traits():  # jupyter_client >= 8.10
        kernel_manager["transport_encryption"] = "auto"  # encrypted where the kernelspec says it can be
    defaults = Config({
        "VoilaExecutor": {"timeout": settings.cell_timeout},
        "MappingKernelManager": {
            "cull_idle_timeout": settings.kernel_cull_idle_timeout,
            "cull_interval": settings.kernel_cull_interval,
        },
        "YyaiKernelManager": {"closed_page_grace": settings.kernel_closed_grace},
        "KernelManager": kernel_manager,
        "NotebookNotary": {"db_file": ":memory:", "secret": base64.b64encode(os.urandom(32))},
    })
    for section in defaults:
        if section in settings.config:
            defaults[section].merge(settings.config[section])
    return defaults
