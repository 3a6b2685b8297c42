"""``yyai serve``: one process serving the Voila dashboard and the REST API.

:class:`YyaiServer` subclasses Voila's standalone app (voila 0.5), which builds its
Tornado application in ``start()`` from ``init_handlers()``. The override puts the REST
handlers *before* Voila's: in single-notebook mode Voila ends its list with a catch-all
``/(.*)`` route and Tornado takes the first match, so a route added after it would never
be reached (``tests/test_server.py`` covers the order). Standalone Voila exposes no
general Jupyter contents or kernels API, so the only code that runs is the dashboard.

At start-up the server builds a :class:`~yyai_kernel.registry.registry.Registry` over the store,
starts listening, and starts TensorFlow and loads the warm set in the background
(``/v2/health/ready`` answers 503 until that is done; a request meanwhile waits for its
model's load); the other defaults warm after that (``registry/registry.py``). Under
``--workers N`` this class is a front end instead: its registry is the model host's
(``host/remote.py``) and it imports no TensorFlow. Token auth is on by default,
through jupyter_server's identity provider: one token for the dashboard and the REST
API (``Authorization: token T``, ``Bearer T`` or ``?token=T``). The dashboard kernel gets
``YYAI_URL`` and ``YYAI_TOKEN`` in its environment (see ``kernels.py``).

With ``--grpc-port P`` the v2 gRPC server (``grpc_server.py``) serves the same data plane
from this process, on the same asyncio loop as Tornado; it binds before the banner is
printed (exit 1 if it cannot) and stops with the HTTP server.

SIGTERM or Ctrl-C stops accepting connections, shuts the kernels down, closes the
registry and removes the server's temporary folders.

Every setting is a traitlets trait, so a config file (``--config yyai_config.py``, with
``c.YyaiServer.max_body_bytes = ...``) can set it; the command line wins over the file.
The token is ``--token``, else ``$YYAI_TOKEN``, else a random one. ``initialize()`` first
checks the argv against the app's aliases, flags and configurable classes
(:func:`yyai_kernel.server.cmdline.check_argv`): an option it does not know, or a positional
word, exits with status 2 before a port is bound or TensorFlow imported.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import shutil
import signal
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jupyter_server.log import log_request
from jupyter_server.utils import url_path_join
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.log import access_log as tornado_access_log
from tornado.netutil import bind_sockets
from traitlets import TraitError, Unicode, default, validate
from traitlets.config import Config
from voila.app import Voila

from yyai_kernel.api.context import Api
from yyai_kernel.config import MiB
from yyai_kernel.runtime import handoff
from yyai_kernel.server import __version__, pages
from yyai_kernel.server.auth import YyaiIdentityProvider
from yyai_kernel.server.cmdline import UnknownOptionError, check_argv
from yyai_kernel.server.rest.handlers import rest_handlers
from yyai_kernel.server.settings import (
    ALIASES,
    FLAGS,
    TOKEN_ENV,
    VOILA_CONFIGURATION,
    ServerSettings,
    kernel_defaults,
)
from yyai_kernel.server.shutdown import GracefulStop
from yyai_kernel.server.startup import TMP_PREFIX, announce_token, sweep_stale_temp_dirs
from yyai_kernel.server.workers.workermode import WorkerRole, serve_on, worker_header

PACKAGE_DIR = Path(__file__).resolve().parent.parent
HOST_WAIT_S = 1.0  # how long a starting front end waits for the model host before it joins the port anyway
POSITIONAL_HINT = "give the dashboard notebook with --notebook FILE"
HELP_HINT = "Try 'yyai serve --help' for help."
def default_notebook() -> str:
    """The dashboard notebook: ``notebooks/dashboard.ipynb`` of the checkout, or the packaged one."""
    for candidate in (PACKAGE_DIR.parent / "notebooks" / "dashboard.ipynb",
                      PACKAGE_DIR / "notebooks" / "dashboard.ipynb"):
        if candidate.is_file():
            return str(candidate)
    return str(PACKAGE_DIR.parent / "notebooks" / "dashboard.ipynb")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False



def start_models(registry, settings) -> dict:
    """Start TensorFlow (``runtime/prime.py``: imports, GPUs, a primer load, ``gc.freeze``), then
    load the registry's warm set; ``{name: error}`` for the versions that did not load."""
    from yyai_kernel.runtime.prime import start_tensorflow

    devices = settings.visible_devices()
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices  # before TensorFlow is imported
    try:
        start_tensorflow(verbose=settings.verbose, devices=settings.device_settings(),
                         warmup_sizes=settings.primer_sizes())
    finally:
        registry.residency.gate.open()  # closed in _local_registry: no load may import TensorFlow beside us
    return registry.warm_up()


def access_log(handler) -> None:
    """jupyter_server's access log (tokens scrubbed from logged URLs), skipped when silent.

    Successes log at debug level; formatting that line costs more than a small
    prediction, so it is built only when debug logging is on. A 503 (not ready yet) is
    an expected state, logged as one info line rather than an error with the headers.
    """
    logger = getattr(handler, "log", tornado_access_log)
    status = handler.get_status()
    if status < 300 and not logger.isEnabledFor(logging.DEBUG):
        return
    if status == 503:  # not ready yet (start-up, a load): expected, so no error with headers
        request = handler.request
        logger.info("503 %s %s (%.1f ms): not ready", request.method, request.path, 1000 * request.request_time())
        return
    log_request(handler, record_prometheus_metrics=False)


def _ours_first(ours: dict, inherited: dict) -> dict:
    """``ours``, then the inherited entries it does not replace: the order ``--help`` lists them in."""
    return {**ours, **{key: value for key, value in inherited.items() if key not in ours}}


class YyaiServer(Voila, ServerSettings):
    """The yyai server: Voila's standalone app with the planes and the REST endpoints.

    It is a Voila app (the dashboard) and the :class:`ServingConfig` it hands to the registry,
    the planes and the endpoints (through :class:`~yyai_kernel.server.settings.ServerSettings`,
    which adds the server's own settings), so settings are set as ``--max-body-bytes``,
    ``c.YyaiServer.x`` or ``c.ServingConfig.x``. Its other parts are composed: the endpoints'
    shared state (``rest_api``, an :class:`~yyai_kernel.api.context.Api`), the draining stop
    (``stopper``) and, under ``--workers N``, its role as one worker (``worker``).
    """

    name = "yyai"
    version = __version__
    description = Unicode(
        """yyai serve [--store DIR] [--host 127.0.0.1] [--port 8866] [--token T | --no-token]

        Serve the dashboard and the REST API (Open Inference Protocol v2, image
        predictions, model management, /metrics, /openapi.json) over a folder of .yyar
        model archives."""
    )
    examples = "yyai serve --store model_archives --port 8866"

    aliases = _ours_first(ALIASES, Voila.aliases)
    flags = _ours_first(FLAGS, Voila.flags)

    # --- auth (the server's own traits are ServerSettings', in settings.py) -----------
    token = Unicode(
        None, allow_none=True,
        help=f"The token clients send ('Authorization: token T' or ?token=T); --token wins over ${TOKEN_ENV}.",
    ).tag(config=True, help_default=f"${TOKEN_ENV}, else a random one printed at start")

    @default("token")
    def _default_token(self):
        return os.environ.get(TOKEN_ENV) or None  # a config file or --token wins over it

    @default("ip")
    def _default_ip(self):
        return "127.0.0.1"

    @default("open_browser")
    def _default_open_browser(self):
        return False

    @default("identity_provider_class")
    def _default_identity_provider_class(self):
        return YyaiIdentityProvider

    @default("auto_token")
    def _default_auto_token(self):
        return True

    @default("port_retries")
    def _default_port_retries(self):
        return 0

    @default("notebook_path")
    def _default_notebook_path(self):
        return default_notebook()

    @validate("notebook_path")
    def _validate_notebook_path(self, proposal):
        if proposal["value"] and not Path(proposal["value"]).is_file():
            raise TraitError(f"--notebook {proposal['value']}: no such file")
        return proposal["value"]

    # --- start-up ----------------------------------------------------------------------

    def initialize(self, argv=None):
        """Apply yyai's defaults for Voila, kernels and Tornado, then the config file, then the CLI."""
        argv = list(sys.argv[1:] if argv is None else argv)
        try:
            check_argv(type(self), argv, command="yyai serve", positional_hint=POSITIONAL_HINT)
        except UnknownOptionError as error:
            print(f"yyai serve: error: {error}\n{HELP_HINT}", file=sys.stderr)
            self.exit(2)
        self._argv = argv  # a supervisor starts its workers with the same arguments
        self.update_config(Config({"VoilaConfiguration": VOILA_CONFIGURATION}))
        config_file = _config_file_from(argv)
        if config_file:
            if not Path(config_file).is_file():
                raise SystemExit(f"yyai: config file {config_file} not found")
            self.load_config_file(os.path.abspath(config_file))
        super().initialize(argv)
        library_log = logging.getLogger("yyai")  # registry, store, runtime: into the server's log
        for handler in self.log.handlers:
            library_log.addHandler(handler)
        library_log.propagate = not self.log.handlers
        self.update_config(kernel_defaults(self))
        settings = dict(self.tornado_settings)
        settings.setdefault("websocket_max_message_size", self.max_body_bytes + MiB)
        self.tornado_settings = settings

    def build_api(self) -> Api:
        """The registry (here, or the model host's under ``--workers``), the planes and the
        endpoints' shared state."""
        from yyai_kernel.api.metrics import ServerMetrics
        from yyai_kernel.api.table import all_endpoints
        from yyai_kernel.plane.planes import Planes

        metrics = ServerMetrics()
        role = self.worker
        link = role.link if role else None
        # evaluation jobs keep their uploads and snapshots in the temporary folder, which every
        # worker shares (see evaluation/jobs.py): a job started on one is followed on any
        shared_tmp = role.spec.tmp_root if role else self.tmp_dir
        registry = self._front_end_registry(role.spec) if role else self._local_registry(metrics)
        planes = Planes.over(registry, self, peers=link, worker=role.spec.index if role else 0,
                             jobs_dir=os.path.join(shared_tmp, "evaluations"))
        metrics.watch(planes.data)
        if role is not None:
            planes.data.health.probe = lambda: registry.host_ready
            link.host = registry
            registry.start()
        return Api(planes, all_endpoints(), self.tmp_dir, metrics=metrics, worker=role.spec.index if role else 0,
                   predict_pool=ThreadPoolExecutor(self.predict_threads, thread_name_prefix="yyai-predict"),
                   manage_pool=ThreadPoolExecutor(self.manage_threads, thread_name_prefix="yyai-manage"))

    def _local_registry(self, metrics):
        """``yyai serve`` alone: the registry in this process, its warm set marked as loading."""
        from yyai_kernel.registry.registry import Registry
        from yyai_kernel.store.store import ModelStore

        registry = Registry(ModelStore(self.store_dir), config=self, observer=metrics)
        registry.mark_loading(_by_name(registry.warm_set()))  # before listening: status says "loading"
        registry.residency.gate.close()  # until TensorFlow has started (start_models)
        return registry

    def _front_end_registry(self, spec):
        """A front end of ``--workers N``: the model host's registry, over its socket."""
        from yyai_kernel.host.placement import Placement
        from yyai_kernel.host.remote import HostRegistry

        return HostRegistry(spec.host_addresses, bytes.fromhex(spec.host_key), self, index=spec.index,
                            on_ready=self._host_ready, placement=Placement.of(spec.devices))

    def start(self):
        """Serve: alone, as a supervisor of N workers (``--workers``), or as one of those workers."""
        from yyai_kernel.server.workers.supervisor import WorkerSpec, worker_count

        spec = WorkerSpec.from_env()
        self.worker = None
        self.stopper = GracefulStop(self)
        self.rest_api = None
        if spec is None:
            try:
                count = worker_count(self.workers)
                devices = self.device_list()
            except ValueError as error:
                self.log.critical("yyai: %s", error)
                self.exit(2)
            sweep_stale_temp_dirs(self.log)
            if count > 1 or len(devices) > 1:  # several GPUs: one model host each, so the supervisor's layout
                from yyai_kernel.server.workers.supervisor import become

                become(self, self._argv, count)  # this process becomes the supervisor: it never returns
            self.tmp_dir = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
        else:
            if self.rest_loop == "uvloop":  # before the loop exists: listen() makes it
                import uvloop

                asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            self.worker = WorkerRole(self, spec)
        self.log.info("Temporary files in %s", self.tmp_dir)
        try:
            self.rest_api = self.build_api()
        except Exception as error:  # noqa: BLE001 - any start-up failure ends the process, with its reason
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            self.log.critical("yyai: cannot start: %s", getattr(error, "message", error))
            self.exit(2)
        super().start()

    def init_settings(self) -> dict:
        settings = super().init_settings()
        # Voila built the identity provider with its own login handler class; yyai's replaces it
        self.identity_provider.login_handler_class = pages.YyaiLoginHandler
        settings["yyai"] = self.rest_api
        remote = self.allow_remote_access
        settings["allow_remote_access"] = (not _is_loopback(self.ip)) if remote is None else remote
        settings["local_hostnames"] = ["localhost"]
        settings["log_function"] = access_log
        return settings

    def setup_template_dirs(self):
        """Voila's template folders with yyai's first, so that its ``index.html.j2`` wins
        (``pages.py``). Only over Voila's ``lab`` template, which yyai's extends."""
        super().setup_template_dirs()
        if self.voila_configuration.template == "lab":
            ours = str(pages.TEMPLATES)
            self.template_paths = [ours] + [p for p in self.template_paths if p != ours]

    def rest_handlers(self) -> list:
        """Every REST endpoint (``api/table.py``), joined to the server's base URL."""
        return rest_handlers(self.rest_api.endpoints,
                             lambda path: url_path_join(self.server_url or self.base_url, path))

    def init_handlers(self) -> list:
        """The REST handlers first, then Voila's (which end with a catch-all route)."""
        return self.rest_handlers() + pages.with_dashboard_page(super().init_handlers())

    def listen(self):
        """Bind, print the URL with its token, load models in the background, run the loop.

        A front end of ``--workers N`` joins the shared port once it reached the model host
        (``_load_models``); worker 0 serves the dashboard on its own port from the start.
        """
        spec = self.worker.spec if self.worker else None
        self.app.add_transform(worker_header(spec.index if spec else 0))
        self.http_servers = []
        if spec is None:
            self.http_servers.append(HTTPServer(self.app, max_body_size=self.max_body_bytes, xheaders=False))
            self.http_servers[0].add_sockets(self._bind())
        elif spec.index == 0:
            self.http_servers.append(serve_on(self.app, self.ip, spec.dashboard_port, self.max_body_bytes))
        token = self.identity_provider.token
        if spec is None:  # the REST API answers from now on (a worker 0 once it joins the shared port)
            self._serve_kernels()
        self.ioloop = IOLoop.current()
        loop = asyncio.get_event_loop()
        self.grpc_server = None
        if spec is None:  # a worker starts gRPC when it joins the shared ports
            if self.grpc_port is not None:
                self.grpc_server = loop.run_until_complete(self._start_grpc(token, self.grpc_port))
            self._banner(token)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopper.on_signal, sig)
        self.ioloop.add_callback(self._load_models)
        # Requests decoded on this loop reach their batcher once per loop iteration, all
        # together (runtime/handoff.py): nothing on this loop waits on a model call.
        handoff.gather_on_loop(loop)
        try:
            self.ioloop.start()
        except KeyboardInterrupt:
            self.log.info("Interrupted")
        finally:
            handoff.stop_gathering_here()
            self.stop()

    async def _start_grpc(self, token: str | None, port: int, *, reuse_port: bool = False):
        """The v2 gRPC server on --host and ``port``, on this loop (exit 1 if it cannot bind)."""
        from yyai_kernel.server.grpc_server import GrpcServer

        server = GrpcServer(self.rest_api, token=token, public_health=self.public_health, reuse_port=reuse_port)
        try:
            self.grpc_port = await server.start(self.ip, port)
        except RuntimeError as error:
            self.log.critical("yyai: cannot serve gRPC on %s port %s: %s", self.ip, port, error)
            self.exit(1)
        return server

    def _serve_kernels(self) -> None:
        """Dashboard kernels may start (the preheated one first): ``YYAI_URL`` answers."""
        self.kernel_manager.serve(self.dashboard_env(self.identity_provider.token))

    def dashboard_env(self, token: str | None) -> dict:
        """What the dashboard kernels call: this server's REST API, or ``--dashboard-api`` (a Ray endpoint)."""
        if self.dashboard_api:
            return {"YYAI_URL": self.dashboard_api.rstrip("/"), "YYAI_TOKEN": self.dashboard_api_token or token or ""}
        return {"YYAI_URL": self.local_url.rstrip("/"), "YYAI_TOKEN": token or ""}

    def _bind(self) -> list:
        last_error = None
        for port in self.random_ports(self.port, self.port_retries + 1):
            try:
                sockets = bind_sockets(port, self.ip)
            except OSError as error:
                if error.errno in (errno.EADDRINUSE, errno.EACCES):
                    last_error = error
                    self.log.info("Port %d is not available (%s).", port, error.strerror)
                    continue
                raise
            self.port = sockets[0].getsockname()[1]
            return sockets
        self.log.critical("yyai: cannot listen on %s port %s: %s", self.ip, self.port, last_error)
        self.exit(1)

    @property
    def local_url(self) -> str:
        return local_url(self.ip, self.port, self.base_url)

    def _banner(self, token: str) -> None:
        names = self.rest_api.planes.registry.names()
        self.log.info("yyai %s serving %d model(s) from %s: %s", __version__, len(names),
                      os.path.abspath(self.store_dir), ", ".join(names) or "(none)")
        shown = self.local_url if self.ip in ("", "0.0.0.0", "::") else self._url(
            f"[{self.ip}]" if ":" in self.ip else self.ip)
        self.log.info("yyai is serving at %s", shown)
        if self.grpc_server is not None:
            host = self.ip if self.ip not in ("", "0.0.0.0", "::") else "127.0.0.1"
            self.log.info("yyai serves v2 gRPC at %s:%d", f"[{host}]" if ":" in host else host, self.grpc_port)
        announce_token(self.log, shown, token, generated=self.identity_provider.token_generated)

    async def _load_models(self) -> None:
        """Alone: start TensorFlow and load the warm set off the loop; then /v2/health/ready answers
        200, the other defaults warm in the background, and the preheated dashboard kernel may
        start (after the models, so that it does not compete with them for the cores).

        A front end of ``--workers``: reach the model host (or give up waiting after a second,
        so that liveness and the dashboard answer at once), then join the shared ports."""
        api = self.rest_api
        registry = api.planes.registry
        if self.worker is not None:
            await IOLoop.current().run_in_executor(api.manage_pool, registry.wait_connected, HOST_WAIT_S)
            if self.stopper.stopping:
                return
            await self.worker.join_shared_port()
            await IOLoop.current().run_in_executor(api.manage_pool, self.worker.link.joined, registry.names())
            if registry.host_ready:
                self._host_ready()
            return
        try:
            errors = await IOLoop.current().run_in_executor(api.manage_pool, start_models, registry, self)
        except Exception:
            self.log.exception("The start-up load failed")
            errors = None
        api.data.mark_ready()
        if errors:
            for name, message in errors.items():
                self.log.error("Model %s did not load: %s", name, message)
        self.log.info("Start-up load finished; the server is ready.")
        registry.start_background()
        self.kernel_manager.release()

    def _host_ready(self) -> None:
        """The model host loaded its warm set (any thread): the preheated dashboard kernel may start."""
        loop = getattr(self, "ioloop", None)
        if loop is not None and self.worker is not None and self.worker.spec.index == 0:
            loop.add_callback(self.kernel_manager.release)

    def stop(self):
        """Close the registry and the pools, shut kernels down, remove temporary folders."""
        if self.rest_api is not None:
            try:
                self.rest_api.planes.close()
            except Exception:
                self.log.exception("Closing the planes failed")
            self.rest_api.shutdown()
        try:
            super().stop()  # removes the connection folder and shuts remaining kernels down
        except Exception as error:  # noqa: BLE001 - shut-down goes on; the failure is logged
            self.log.warning("Voila shut-down: %s", error)
        # Voila removes its connection folder before it shuts the kernels down, so a pool kernel
        # that was starting meanwhile writes its connection file there again: remove it once more,
        # now that every kernel is down.
        for folder in (getattr(self, "connection_dir", None), getattr(self, "tmp_dir", None)):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        self.log.info("yyai stopped.")


def _by_name(versions: list[tuple[str, int]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for name, version in versions:
        grouped.setdefault(name, []).append(version)
    return grouped


def local_url(ip: str, port: int, base_url: str) -> str:
    """The URL a process on this machine (the dashboard kernel) uses to reach the server."""
    host = "127.0.0.1" if ip in ("", "0.0.0.0", "::", "localhost") else ip
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}{base_url}"





def _config_file_from(argv: list[str]) -> str | None:
    """The value of ``--config FILE`` / ``--config=FILE`` in argv, if any."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> None:
    """Run the server: ``main(["--store", "model_archives", "--port", "8866"])``.

    ``yyai serve --help`` lists the options (``YyaiServer.aliases`` and ``flags``); any
    ``--Class.trait=value`` sets a setting. An option it does not know exits with status 2
    before anything starts (see :func:`yyai_kernel.server.cmdline.check_argv`).
    """
    from yyai_kernel.runtime.prime import skip_serving_extras

    skip_serving_extras()  # before TensorFlow and Keras are imported (start_models)
    logging.getLogger("yyai").setLevel(logging.INFO)
    YyaiServer.launch_instance(argv)


if __name__ == "__main__":
    main()
