"""The supervisor of ``yyai serve --workers N``: the model host(s) and N front ends, kept alive.

What: the process that ``yyai serve --workers N`` runs (N > 1) loads no model and serves
no request. It reserves the ports, starts the model host (``python -m yyai_kernel.host``:
the one process that imports TensorFlow and holds the models, see ``host/``) and N front
ends (each a ``yyai serve`` process with the REST API, gRPC and, on front end 0, the
dashboard, over a registry that reaches the host), all at once; restarts any that dies;
and on SIGTERM (or Ctrl-C) drains and stops them all, removing its private temporary folder.

* **One port.** The supervisor binds the REST port (the dashboard's, and gRPC's) with
  ``SO_REUSEPORT`` and never listens on it: that reserves the port, even with ``--port 0``,
  while every front end binds the same port with ``SO_REUSEPORT`` and listens. The kernel
  spreads connections over the listening front ends. A front end joins the port once it
  reached the host (or after a second, when the host is not up yet, so that liveness and
  the dashboard answer at once; requests then wait for their model's load or hear 503).
* **The host.** It listens on a Unix socket in the supervisor's private folder (0700)
  and admits only clients that know the key the supervisor drew (``host/spec.py``).
  Predictions from every front end meet in its batchers; management calls go to it and it
  replies once every front end acknowledged the new state. If it dies, front ends answer
  503 with ``Retry-After`` until its replacement listens again; the replacement reloads
  what the store says serves (defaults, labels, traffic sides: the warm set first).
* **One host per GPU.** With several ``--devices`` ids there is a host per id, each
  started with ``CUDA_VISIBLE_DEVICES`` set to its id and its own socket, each the owner
  of the models ``host/placement.py`` gives it; each is restarted on its own, and while
  one is away only its models answer 503. Several ids imply this supervisor even
  without ``--workers`` (one front end).
* **The dashboard** lives on front end 0, on its own port (``--dashboard-port``, default
  the REST port + 1): a page and its kernel's websocket are separate connections, and
  only the front end that started a kernel knows it. On the shared port the dashboard's
  routes redirect there. The dashboard kernel calls the shared REST port.
* **Crashes.** A dead front end or host (even ``kill -9``) is started again, after a
  back-off when it keeps dying young; a front end's processes (dashboard kernels) are
  killed with it, so none is left orphaned. If a process cannot start at all the first
  time, the supervisor stops the others and exits with that process's status.
* **Metrics.** Front ends and the host write prometheus_client multiprocess files into a
  folder of the supervisor's temporary folder (``PROMETHEUS_MULTIPROC_DIR``); ``/metrics``
  on any front end sums them.

Threads: the main thread watches the processes and the stop signal; each Link (one per
process, over an inherited socketpair) has a reader and a small pool that serves that
process's requests (``gather``, ``ready``). ``_lock`` guards the slots (swapped on restart).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field

import psutil

from yyai_kernel.config import ServingConfig
from yyai_kernel.host.channel import sweep_shared
from yyai_kernel.host.spec import HOST_ENV, HostSpec, host_address, new_key
from yyai_kernel.plane.operations import WorkerInfo
from yyai_kernel.server.startup import TMP_PREFIX, announce_token
from yyai_kernel.server.workers.link import Link

WORKER_ENV = "YYAI_WORKER"
SUPERVISOR_ENV = "YYAI_SUPERVISOR"
STOP_TIMEOUT_S = 30.0  # SIGTERM to SIGKILL, per process, on shut-down
YOUNG_S = 10.0  # a worker that dies younger than this is restarted after a growing delay
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class WorkerSpec:
    """What a front end is told about itself (as JSON in ``YYAI_WORKER``): its ports, the
    shared token and temporary folder, and where the model host listens."""

    index: int
    count: int
    fd: int
    port: int
    dashboard_port: int
    grpc_port: int | None
    token: str | None
    tmp_root: str
    host_addresses: list[str]  # one per model host, by index (one per device under --devices)
    host_key: str
    devices: list[str]  # each host's device id, by index (host/placement.py); [] with one host

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> WorkerSpec | None:
        """This process's spec, taken out of the environment (so that kernels do not inherit it)."""
        raw = os.environ.pop(WORKER_ENV, None)
        return None if raw is None else cls(**json.loads(raw))


@dataclass(frozen=True)
class SupervisorSettings:
    """What the supervisor needs of ``yyai serve``'s settings, read once by the server that parsed
    them and handed over as JSON (``YYAI_SUPERVISOR``) when it becomes the supervisor (:func:`become`)."""

    argv: list[str]
    count: int
    ip: str
    port: int
    dashboard_port: int | None
    grpc_port: int | None
    token: str | None
    auto_token: bool
    store_dir: str
    version: str
    base_url: str
    serving: dict  # the ServingConfig traits, for the host
    devices: str | None  # CUDA_VISIBLE_DEVICES of a single host (None: as it is)
    device_ids: list[str]  # one host each, when several (host/placement.py)
    gpu_memory_fraction: float | None
    verbose: bool
    ack_timeout: float

    @classmethod
    def of(cls, app, argv: list[str], count: int) -> SupervisorSettings:
        return cls(list(argv), count, app.ip, app.port, app.dashboard_port, app.grpc_port, app.token,
                   bool(app.auto_token), os.path.abspath(app.store_dir), app.version, app.base_url,
                   {name: getattr(app, name) for name in ServingConfig.class_own_traits(config=True)},
                   app.visible_devices(), app.device_list(), app.gpu_memory_fraction, bool(app.verbose),
                   float(app.worker_sync_timeout))


def become(app, argv: list[str], count: int) -> None:
    """Replace this process (a ``yyai serve`` that parsed its settings, and imported Voila to do
    so) with the lean supervisor: same pid, same output, none of the server's modules in memory."""
    env = {**os.environ, SUPERVISOR_ENV: json.dumps(asdict(SupervisorSettings.of(app, argv, count)))}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "yyai_kernel.server.workers.supervisor"], env)


def main() -> None:
    """``python -m yyai_kernel.server.workers.supervisor``, as :func:`become` runs it."""
    import logging

    settings = SupervisorSettings(**json.loads(os.environ.pop(SUPERVISOR_ENV)))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="[YyaiServer] %(message)s")
    log = logging.getLogger("YyaiServer")
    log.setLevel(logging.INFO)
    sys.exit(Supervisor(settings, log).run())


def worker_count(value: str) -> int:
    """``--workers``: a positive number, or ``auto`` for the CPUs this process may use."""
    if str(value).strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"--workers must be a positive number or 'auto', not {value!r}")
    return count


def reserve_port(host: str, port: int) -> tuple[list[socket.socket], int]:
    """Bind (never listen) ``SO_REUSEPORT`` sockets on every address of ``host``: the port
    stays ours while workers come and go, and no connection is ever queued on these."""
    sockets: list[socket.socket] = []
    for family, kind, proto, _, address in socket.getaddrinfo(host or None, port, socket.AF_UNSPEC,
                                                                socket.SOCK_STREAM, 0, socket.AI_PASSIVE):
        if any(s.family == family for s in sockets):
            continue
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if port == 0 and sockets:
            address = (address[0], sockets[0].getsockname()[1], *address[2:])
        sock.bind(address)
        sockets.append(sock)
    return sockets, sockets[0].getsockname()[1]


@dataclass
class Slot:
    """One process position (a front end, or the host): the process now in it, its link and its history."""

    index: int
    role: str = "worker"  # "worker" (a front end) or "host"
    proc: subprocess.Popen | None = None
    link: Link | None = None
    state: str = "starting"  # starting, serving, restarting
    restarts: int = 0
    started: float = 0.0
    backoff: float = 0.0
    next_start: float = 0.0
    served: bool = False  # it became ready once (a death before that, the first time, is fatal)
    descendants: list = field(default_factory=list)  # psutil.Process of its children, for clean-up

    @property
    def title(self) -> str:
        return f"Model host {self.index}" if self.role == "host" else f"Worker {self.index}"


class Supervisor:
    """Runs the model host and N front ends for one ``YyaiServer`` configuration (see the module docstring)."""

    def __init__(self, settings: SupervisorSettings, log):
        self.app, self.argv, self.count = settings, list(settings.argv), settings.count
        self.log = log
        app = settings
        self.slots = [Slot(i) for i in range(self.count)]
        self.devices = list(settings.device_ids) if len(settings.device_ids) > 1 else []
        self.hosts = [Slot(i, role="host") for i in range(max(1, len(self.devices)))]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._all_ready = threading.Event()
        self._fatal: int | None = None
        self.tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")
        self.metrics_dir = os.path.join(self.tmp, "metrics")
        os.mkdir(self.metrics_dir)
        self.token = app.token if app.token is not None else (secrets.token_hex(24) if app.auto_token else "")
        self.host_key = new_key()
        self.host_addresses = [host_address(self.tmp, slot.index) for slot in self.hosts]

    # --- the whole life ------------------------------------------------------------------------

    def run(self) -> int:
        """Start the host and the front ends, keep them alive until SIGTERM/SIGINT, stop them; the exit status."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        if not os.path.isdir(self.app.store_dir):
            self.log.critical("yyai: cannot start: model store %s is not a folder; create it or pass another "
                              "--store", self.app.store_dir)
            shutil.rmtree(self.tmp, ignore_errors=True)
            return 2
        try:
            self._reserved, self.port = reserve_port(self.app.ip, self.app.port)
            dashboard = self.app.dashboard_port if self.app.dashboard_port is not None else (
                self.port + 1 if self.app.port else 0)
            self._reserved_dashboard, self.dashboard_port = reserve_port(self.app.ip, dashboard)
            self._reserved_grpc, self.grpc_port = ([], None) if self.app.grpc_port is None else reserve_port(
                self.app.ip, self.app.grpc_port)
        except OSError as error:
            self.log.critical("yyai: cannot listen on %s port %s: %s", self.app.ip, self.app.port, error)
            shutil.rmtree(self.tmp, ignore_errors=True)
            return 1
        self.log.info("Starting %s and %d workers on port %d (dashboard on worker 0, port %d)",
                      f"{len(self.hosts)} model hosts (devices {', '.join(self.devices)})" if self.devices
                      else "the model host", self.count, self.port, self.dashboard_port)
        try:
            for slot in [*self.hosts, *self.slots]:
                self._spawn(slot)
            self._watch()
        finally:
            self._shutdown()
        return self._fatal or 0

    def _watch(self) -> None:
        """The main loop: notice deaths and restart, until stopped (or a first start fails)."""
        last_snapshot = 0.0
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for slot in [*self.hosts, *self.slots]:
                if slot.proc is not None and slot.proc.poll() is not None:
                    self._died(slot)
                    if self._fatal is not None:
                        return
                if slot.proc is None and now >= slot.next_start:
                    self._spawn(slot)
            if now - last_snapshot > 2.0:  # who each front end started (dashboard kernels)
                last_snapshot = now
                for slot in self.slots:
                    slot.descendants = _children(slot.proc)

    # --- processes ------------------------------------------------------------------------------

    def _spawn(self, slot: Slot) -> None:
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir}
        if slot.role == "host":
            env[HOST_ENV] = self._host_spec(slot, theirs.fileno()).to_env()
            cmd = [sys.executable, "-m", "yyai_kernel.host"]
        else:
            spec = WorkerSpec(slot.index, self.count, theirs.fileno(), self.port, self.dashboard_port,
                              self.grpc_port, self.token, self.tmp, self.host_addresses, self.host_key,
                              self.devices)
            env[WORKER_ENV] = spec.to_env()
            cmd = [sys.executable, "-m", "yyai_kernel.server.app", *self.argv]
        with self._lock:
            slot.proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], env=env)
            slot.link = Link(ours, lambda message, s=slot: self._handle(s, message), name=f"{slot.role}{slot.index}")
            slot.state = "restarting" if slot.restarts else "starting"
            slot.started = time.monotonic()
        theirs.close()
        self.log.info("%s started (pid %d)", slot.title, slot.proc.pid)

    def _host_spec(self, slot: Slot, fd: int) -> HostSpec:
        app = self.app
        device = self.devices[slot.index] if self.devices else app.devices
        return HostSpec(slot.index, self.host_addresses[slot.index], self.host_key, app.store_dir, self.count, fd,
                        app.serving, device, app.gpu_memory_fraction, app.verbose, app.ack_timeout, self.devices)

    def _died(self, slot: Slot) -> None:
        code = slot.proc.returncode
        pid = slot.proc.pid
        _kill_all(slot.descendants)
        shutil.rmtree(os.path.join(self.tmp, f"worker-{slot.index}-{pid}"), ignore_errors=True)
        sweep_shared(pid)  # tensors it had sent the host in shared memory
        with self._lock:
            link, slot.link, slot.proc = slot.link, None, None
            slot.state = "restarting"
        if link is not None:
            link.close()
        if self._stop.is_set():
            return
        if not slot.served and slot.restarts == 0:
            self.log.critical("%s exited with status %s before it served; stopping.", slot.title, code)
            self._fatal = code if code else 1
            return
        young = time.monotonic() - slot.started < YOUNG_S
        slot.backoff = min(MAX_BACKOFF_S, max(1.0, slot.backoff * 2)) if young else 0.0
        slot.next_start = time.monotonic() + slot.backoff
        slot.restarts += 1
        self.log.warning("%s (pid %d) exited with status %s; restarting it%s.", slot.title, pid, code,
                         f" in {slot.backoff:.0f} s" if slot.backoff else "")

    def _shutdown(self) -> None:
        """SIGTERM the front ends (each drains and stops), then the host; SIGKILL what outlives the
        timeout; clean up."""
        self._stop.set()
        for group in (self.slots, self.hosts):
            running = [s for s in group if s.proc is not None and s.proc.poll() is None]
            for slot in running:
                slot.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for slot in running:
                try:
                    slot.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.log.warning("%s did not stop in %.0f s; killing it.", slot.title, STOP_TIMEOUT_S)
                    slot.proc.kill()
                    slot.proc.wait()
        for slot in [*self.slots, *self.hosts]:
            _kill_all(slot.descendants)
            if slot.link is not None:
                slot.link.close()
        reserved = [getattr(self, name, []) for name in ("_reserved", "_reserved_dashboard", "_reserved_grpc")]
        for sock in [s for group in reserved for s in group]:
            sock.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.log.info("yyai stopped.")

    # --- requests from the processes ------------------------------------------------------------

    def _handle(self, slot: Slot, message: dict) -> dict:
        kind = message.get("type")
        if kind == "gather":
            return {"workers": [info.to_json() for info in self._gather()]}
        if kind == "ready":
            self._ready(slot, message)
            return {"ok": True}
        return {"ok": False, "error": f"unknown request {kind!r}"}

    def _ready(self, slot: Slot, message: dict) -> None:
        """A front end serves on the shared port, or the host loaded its warm set."""
        with self._lock:
            slot.state, slot.served = "serving", True
            all_ready = all(s.state == "serving" for s in self.slots)
        self.log.info("%s is serving", slot.title)
        if all_ready and not self._all_ready.is_set():
            self._all_ready.set()
            self._banner(message.get("models", []))

    def _gather(self) -> list[WorkerInfo]:
        with self._lock:
            slots = [(s.index, s.role, s.proc, s.state, s.restarts) for s in [*self.slots, *self.hosts]]
        return [WorkerInfo(index, proc.pid if proc is not None else None, state, _rss(proc), restarts, role=role)
                for index, role, proc, state, restarts in slots]

    # --- output -------------------------------------------------------------------------------

    def _banner(self, models: list[str]) -> None:
        app = self.app
        host = app.ip if app.ip not in ("", "0.0.0.0", "::", "localhost") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        url = f"http://{host}:{self.port}{app.base_url}"
        dashboard = f"http://{host}:{self.dashboard_port}{app.base_url}"
        self.log.info("yyai %s: %d workers and %s serving %d model(s) from %s: %s", app.version,
                      self.count, f"{len(self.hosts)} model hosts" if self.devices else "a model host", len(models),
                      os.path.abspath(app.store_dir), ", ".join(models) or "(none)")
        self.log.info("yyai is serving at %s", url)
        self.log.info("The dashboard (worker 0) is at %s", dashboard)
        if self.grpc_port is not None:
            self.log.info("yyai serves v2 gRPC at %s:%d", host, self.grpc_port)
        announce_token(self.log, dashboard, self.token, generated=app.token is None)


def _children(proc: subprocess.Popen | None) -> list:
    if proc is None:
        return []
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        return []


def _kill_all(processes: list) -> None:
    """Kill processes a worker started (its dashboard kernels) that outlived it."""
    for process in processes:
        try:
            if process.is_running():  # psutil checks the start time: never a recycled pid
                process.kill()
        except psutil.Error:
            pass


def _rss(proc: subprocess.Popen | None) -> int | None:
    try:
        return psutil.Process(proc.pid).memory_info().rss if proc is not None else None
    except psutil.Error:
        return None


if __name__ == "__main__":
    main()
